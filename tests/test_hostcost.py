"""host/hostcost.py: the host's share of a token, and the end_to_end section of the estimate.

The byte and flop counts below are worked out by hand from a tiny BitNet shape (hidden 8,
intermediate 12, 2 layers, 2 query heads and 1 KV head of width 4, vocabulary 16), one term
per line, from what each op must read and write in host/ops.py's dtypes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tritium.cli import main
from tritium.golden.checks import InputError
from tritium.golden.config import ArrayConfig
from tritium.golden.models import Matmul, ModelShape
from tritium.host.arch import resolve_model
from tritium.host.estimate import EstimateConfig, estimate
from tritium.host.hostcost import (
    CALIBRATION_FILE,
    HostParams,
    bottleneck,
    cached_calibration,
    combine,
    op_costs,
)

TINY = ModelShape(
    name="tiny", hidden_size=8, intermediate_size=12, num_hidden_layers=2,
    num_attention_heads=2, num_key_value_heads=1, vocab_size=16, head_dim=4,
    max_position_embeddings=64, tie_word_embeddings=False, model_type="bitnet",
    layer=(Matmul("q_proj", 8, 8), Matmul("k_proj", 8, 4), Matmul("v_proj", 8, 4),
           Matmul("o_proj", 8, 8), Matmul("gate_proj", 8, 12), Matmul("up_proj", 8, 12),
           Matmul("down_proj", 12, 8)))
# 1 GB/s and 1 GFLOP/s: a byte costs a nanosecond, a flop a nanosecond; no dispatch cost
UNIT = HostParams(memory_gbps=1, compute_gflops=1, link_gbps=1, dispatch_us=0)
BASE = ["estimate", "--model", "bitnet-b1.58-2B-4T", "--dram-gbps", "16",
        "--host-gbps", "10", "--host-gflops", "20", "--link-gbps", "4"]


def test_decode_bytes_and_flops_by_hand() -> None:
    ops = {op.name: op for op in op_costs(TINY, context=5)}
    # embedding: one bf16 row read, widened to one float32 row
    assert ops["embedding"].bytes == 8 * 2 + 8 * 4
    # norms per layer: input, attn_sub, post_attention (8 wide) and ffn_sub (12 wide); each
    # reads x and its weight and writes the result (3 float32 passes), 4 flops per element;
    # then the final norm (8 wide)
    assert ops["norms"].bytes == 2 * 3 * 4 * (8 + 8 + 8 + 12) + 3 * 4 * 8 == 960
    assert ops["norms"].flops == 2 * 4 * (8 + 8 + 8 + 12) + 4 * 8 == 320
    # RoPE on q (2 heads x 4) and k (1 x 4): read x, cos, sin, write: 16 bytes, 3 flops each
    assert ops["rope"].bytes == 2 * (2 * 4 + 1 * 4) * 16 == 384
    assert ops["rope"].flops == 2 * (2 * 4 + 1 * 4) * 3 == 72
    # attention at L = 5: K and V of 5 positions read, the new k, v written (1 KV head x 4
    # floats each), 2 heads x 5 scores written and read back
    per_layer_bytes = 4 * (2 * 4 * 5) + 4 * (2 * 4 * 1) + 4 * 2 * (2 * 5)
    assert ops["attention"].bytes == 2 * per_layer_bytes == 544
    # QK^T and AV: 2 flops per (head, key, dim) each; softmax 5 flops per score
    assert ops["attention"].flops == 2 * (2 * 2 * 5 * 4 + 2 * 2 * 5 * 4 + 5 * 2 * 5) == 420
    # quantisation: the distinct inputs (q/k/v share 8, o 8, gate/up share 8, down 12) read
    # as float32 and written as int8; every output (8+4+4+8+12+12+8 = 56) read as int32 and
    # written as float32
    assert ops["quantisation"].bytes == 2 * (5 * (8 + 8 + 8 + 12) + 8 * 56) == 1256
    assert ops["quantisation"].flops == 2 * (4 * 36 + 2 * 56) == 512
    # LM head: 16 x 8 bf16 weights widened to float32 (written and read back), 16 logits out
    assert ops["lm_head"].bytes == 16 * 8 * (2 + 4 + 4) + 16 * 4 == 1344
    assert ops["lm_head"].flops == 2 * 16 * 8
    # link: int8 activations in (K bytes), int32 results out (4N bytes), every BitLinear
    link = (8 + 32) + (8 + 16) + (8 + 16) + (8 + 32) + (8 + 48) + (8 + 48) + (12 + 32)
    assert ops["link"].bytes == 2 * link == 568 and ops["link"].on == "link"


def test_prefill_attention_is_causal() -> None:
    att = {op.name: op for op in op_costs(TINY, context=3, tokens=3)}["attention"]
    pairs = 1 + 2 + 3          # query i sees keys 0..i
    per_layer = 4 * 2 * 4 * 3 + 4 * 2 * 4 * 3 + 4 * 2 * 2 * pairs
    assert att.bytes == 2 * per_layer
    assert att.flops == 2 * (2 * 2 * 4 * pairs * 2 + 5 * 2 * pairs)


def test_seconds_are_a_roofline_plus_dispatch() -> None:
    ops = {op.name: op for op in op_costs(TINY, context=5)}
    lm = ops["lm_head"]
    assert lm.seconds(UNIT) == pytest.approx(1344e-9)                   # memory-bound
    fast_mem = HostParams(memory_gbps=1000, compute_gflops=1, link_gbps=1, dispatch_us=0)
    assert lm.seconds(fast_mem) == pytest.approx(256e-9)                # compute-bound
    slow_calls = HostParams(memory_gbps=1, compute_gflops=1, link_gbps=1, dispatch_us=2)
    assert lm.seconds(slow_calls) == pytest.approx(1344e-9 + lm.calls * 2e-6)
    assert lm.calls == 3                                  # one 1024-row block of 3 calls
    assert ops["link"].seconds(HostParams(1, 1, link_gbps=2, dispatch_us=5)) == \
        pytest.approx(568 / 2e9)


def test_combine_states_the_overlap() -> None:
    per_op = {"norms": 1.0, "lm_head": 2.0, "link": 0.5}
    assert combine(4.0, per_op, UNIT) == 7.5
    overlapped = HostParams(1, 1, 1, 0, overlap=True)
    assert combine(4.0, per_op, overlapped) == 4.0
    assert combine(1.0, per_op, overlapped) == 3.0       # host total 1 + 2


def test_bottleneck_names_the_largest_term() -> None:
    assert bottleneck(3.0, "DRAM", {"lm_head": 2.0, "link": 1.0}) == "DRAM"
    assert bottleneck(1.0, "DRAM", {"lm_head": 2.0, "attention": 2.5}) == "host: attention"
    assert bottleneck(1.0, "accelerator compute", {"lm_head": 0.5, "link": 4}) == "link"


def _estimate(host: HostParams, **kw) -> dict:
    cfg = ArrayConfig(rows=32, cols=32, clock_mhz=250.0, max_k=8192, dataflow="ws",
                      dram_bytes_per_cycle=64)
    return estimate(resolve_model("bitnet-b1.58-2B-4T"),
                    EstimateConfig(cfg, 16, prompt_len=64, gen_len=1, host=host, **kw))


def test_end_to_end_on_2b4t() -> None:
    host = HostParams(memory_gbps=10, compute_gflops=20, link_gbps=4, dispatch_us=1)
    r = _estimate(host, context=1024)
    e, d, p = r["end_to_end"], r["decode"], r["prefill"]
    assert e["context"] == 1024 and e["host"]["memory_gbps"] == 10
    assert e["host_source"] == "given"
    # serial: the token costs the accelerator plus every host op plus the link
    total = d["seconds_per_token"] + sum(e["host_seconds_per_token"].values())
    assert e["decode_tokens_per_s"] == pytest.approx(1 / total)
    assert e["decode_tokens_per_s"] < d["tokens_per_s"]
    # the bf16 head (128,256 x 2,560, widened) at 10 GB/s outweighs the 2-bit weights at 16
    assert e["bottleneck"] == "host: lm_head"
    head = 128256 * 2560 * 10 / 10e9
    assert e["host_seconds_per_token"]["lm_head"] == pytest.approx(head, rel=0.01)
    # the JSON keys of issue 11
    ternary = 30 * (2 * 2560 * 2560 + 2 * 2560 * 640 + 3 * 2560 * 6912)
    assert d["weight_bytes_per_token"] == ternary * 2 / 8
    assert p["peak_tokens_per_s"] == pytest.approx(32 * 32 * 250e6 / ternary)
    assert 0 < p["tokens_per_s"] <= p["peak_tokens_per_s"]
    assert 0 < e["prefill_tokens_per_s"] < p["tokens_per_s"]
    assert "roofline_tokens_per_s" in d and "tokens_per_s" in d


def test_fast_host_leaves_dram_and_a_slow_link_is_named() -> None:
    fast = HostParams(memory_gbps=1e6, compute_gflops=1e6, link_gbps=1e6, dispatch_us=0)
    r = _estimate(fast)
    assert r["end_to_end"]["bottleneck"] == "DRAM"      # 2B-4T decode is DRAM-bound
    assert r["end_to_end"]["context"] == 64             # default: the prompt length
    slow_link = HostParams(memory_gbps=1e6, compute_gflops=1e6, link_gbps=0.001, dispatch_us=0)
    assert _estimate(slow_link)["end_to_end"]["bottleneck"] == "link"


@pytest.mark.parametrize(("kw", "message"), [
    ({"memory_gbps": 0}, "memory_gbps must be a finite number > 0"),
    ({"link_gbps": float("nan")}, "link_gbps must be a finite number > 0"),
    ({"dispatch_us": -1}, "dispatch_us must be a finite number > 0 (or 0)"),
])
def test_bad_host_params(kw, message) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        HostParams(**{"memory_gbps": 1, "compute_gflops": 1, "link_gbps": 1, **kw})


def test_bad_context() -> None:
    with pytest.raises(InputError, match="context .* must be an integer >= 1"):
        op_costs(TINY, context=0)
    with pytest.raises(InputError, match="context=5000 exceeds"):
        _estimate(UNIT, context=5000)


def test_cli_reports_end_to_end(capsys) -> None:
    assert main([*BASE, "--context", "512"]) == 0
    out = capsys.readouterr().out
    assert "end to end" in out and "bottleneck host: lm_head" in out
    assert "accelerator-only" in out and "context 512" in out
    assert main([*BASE, "--json", "-"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["end_to_end"]["context"] == 128 and r["end_to_end"]["host_source"] == "given"
    assert r["end_to_end"]["host"]["link_gbps"] == 4
    for key in ("decode_tokens_per_s", "bottleneck", "prefill_tokens_per_s"):
        assert key in r["end_to_end"]
    assert "weight_bytes_per_token" in r["decode"] and "peak_tokens_per_s" in r["prefill"]


@pytest.mark.parametrize(("argv", "message"), [
    (["--host-gbps", "0"], "--host-gbps must be > 0, got 0"),
    (["--host-gflops", "-2"], "--host-gflops must be > 0, got -2"),
    (["--link-gbps", "0"], "--link-gbps must be > 0, got 0"),
    (["--context", "0"], "--context must be >= 1, got 0"),
    (["--context", "9999"], "context=9999 exceeds bitnet-b1.58-2B-4T's max_position"),
])
def test_cli_bad_host_input(argv, message, capsys) -> None:
    args = list(BASE)
    if argv[0] in args:
        args[args.index(argv[0]) + 1] = argv[1]
    else:
        args += argv
    assert main(args) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_calibration_is_cached_per_machine(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("TRITIUM_BUILD", str(tmp_path))
    # the cache file from a "previous run" of this machine is used as it is
    first = cached_calibration(force=True)
    assert first.source == "calibrated" and first.memory_gbps > 0 and first.compute_gflops > 0
    stored = json.loads((tmp_path / CALIBRATION_FILE).read_text())
    stored["params"]["memory_gbps"] = 123.0
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps(stored))
    again = cached_calibration()
    assert again.memory_gbps == 123.0 and again.source.startswith("calibrated (cached")
    # another machine's cache is measured again
    stored["key"] = "another machine"
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps(stored))
    assert cached_calibration().memory_gbps != 123.0
    # the CLI: a given --host-gbps replaces the (cached) calibrated value
    assert main(["estimate", "--model", "bitnet-b1.58-2B-4T", "--dram-gbps", "16",
                 "--host-gbps", "7", "--json", "-"]) == 0
    e = json.loads(capsys.readouterr().out)["end_to_end"]
    assert e["host"]["memory_gbps"] == 7 and "given: memory_gbps" in e["host_source"]
