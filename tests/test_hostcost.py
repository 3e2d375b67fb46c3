"""host/hostcost.py: the host's share of a token, and the end_to_end section of the estimate.

The byte and flop counts below are worked out by hand from a tiny BitNet shape (hidden 8,
intermediate 12, 2 layers, 2 query heads and 1 KV head of width 4, vocabulary 16), one term
per line, from what each op must read and write in host/ops.py's dtypes. No test here asserts
a timing: the calibration is checked for its shape and its caching, the benchmark
(benchmarks/bench_hostcost.py) checks it against measured time.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path

import pytest

from tritium.cli import main
from tritium.golden.checks import InputError
from tritium.golden.config import ArrayConfig
from tritium.golden.models import Matmul, ModelShape
from tritium.host import hostcost
from tritium.host.arch import resolve_model
from tritium.host.estimate import EstimateConfig, estimate
from tritium.host.hostcost import (
    CALIBRATION_FILE,
    CALIBRATION_VERSION,
    CALLS,
    PASSES,
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
ONE = HostParams(memory_gbps=1, compute_gflops=1, link_gbps=1, dispatch_us=0, threads=1)
BASE = ["estimate", "--model", "bitnet-b1.58-2B-4T", "--dram-gbps", "16",
        "--host-gbps", "10", "--host-gflops", "20", "--link-gbps", "4"]


def test_decode_bytes_and_flops_by_hand() -> None:
    ops = {op.name: op for op in op_costs(TINY, context=5)}
    # embedding: one bf16 row read (from DRAM), widened to one float32 row
    assert ops["embedding"].bytes == 8 * 2 + 8 * 4
    assert ops["embedding"].stream_bytes == 8 * 2
    # norms per layer: input, attn_sub, post_attention (8 wide) and ffn_sub (12 wide); each
    # reads x and its weight and writes the result (3 float32 passes); then the final norm
    assert ops["norms"].bytes == 2 * 3 * 4 * (8 + 8 + 8 + 12) + 3 * 4 * 8 == 960
    assert sorted(ops["norms"].invocations) == sorted(
        [("rms_norm", 2, 8)] * 3 + [("rms_norm", 2, 12), ("rms_norm", 1, 8)])
    # RoPE on q (2 heads x 4) and k (1 x 4): read x, cos, sin, write: 16 bytes each
    assert ops["rope"].bytes == 2 * (2 * 4 + 1 * 4) * 16 == 384
    assert ops["rope"].invocations == (("rope", 2, 8), ("rope", 2, 4))
    # attention at L = 5: K and V of 5 positions streamed from DRAM and the new k, v written
    # (1 KV head x 4 floats each); 2 heads x 5 scores written and read back (in cache)
    stream = 4 * (2 * 4 * 5) + 4 * (2 * 4 * 1)
    assert ops["attention"].stream_bytes == 2 * stream == 384
    assert ops["attention"].bytes == 2 * (stream + 4 * 2 * (2 * 5)) == 544
    # QK^T and AV: 2 flops per (head, key, dim) each, in BLAS
    assert ops["attention"].flops == 2 * (2 * 2 * 5 * 4 + 2 * 2 * 5 * 4) == 320
    # per layer: one call over 10 scores, and one BLAS stream each for K and V of the KV head;
    # decode has no future key, so no mask
    assert ops["attention"].invocations == (("attention", 2, 10), ("stream_start", 2 * 2, 0))
    # quantisation: the distinct inputs (q/k/v share 8, o 8, gate/up share 8, down 12) read
    # as float32 and written as int8; every output (8+4+4+8+12+12+8 = 56) read as int32 and
    # written as float32
    assert ops["quantisation"].bytes == 2 * (5 * (8 + 8 + 8 + 12) + 8 * 56) == 1256
    assert sorted(ops["quantisation"].invocations) == sorted(
        [("quantize", 2, 8), ("quantize", 2, 8), ("quantize", 2, 8), ("quantize", 2, 12),
         ("dequantize", 2, 8), ("dequantize", 2, 4), ("dequantize", 2, 4),
         ("dequantize", 2, 8), ("dequantize", 2, 12), ("dequantize", 2, 12),
         ("dequantize", 2, 8)])
    # the rest of each block: two residual adds over 8 (read two, write one) and relu2(g) * u
    # over 12 (maximum, square, multiply: about a read and a write each); argmax over 16
    assert ops["elementwise"].bytes == 2 * 4 * (2 * 3 * 8 + 3 * 2 * 12) + 4 * 16
    assert ops["elementwise"].invocations == (
        ("elementwise", 2 * 2, 8), ("elementwise", 3 * 2, 12), ("elementwise", 1, 16))
    # LM head: 16 x 8 bf16 weights streamed, the hidden state read, 16 logits written; the
    # widened float32 block stays in cache
    assert ops["lm_head"].stream_bytes == 16 * 8 * 2
    assert ops["lm_head"].bytes == 16 * 8 * 2 + 8 * 4 + 16 * 4 == 352
    assert ops["lm_head"].flops == 2 * 16 * 8 and ops["lm_head"].lm_head
    # link: int8 activations in (K bytes), int32 results out (4N bytes), every BitLinear
    link = (8 + 32) + (8 + 16) + (8 + 16) + (8 + 32) + (8 + 48) + (8 + 48) + (12 + 32)
    assert ops["link"].bytes == 2 * link == 568 and ops["link"].on == "link"


def test_prefill_attention_scores_every_pair_and_masks() -> None:
    # ops.attention computes all T x S scores and masks the future ones afterwards
    att = {op.name: op for op in op_costs(TINY, context=3, tokens=3)}["attention"]
    scores = 2 * 3 * 3
    per_layer = 4 * 2 * 4 * 3 + 4 * 2 * 4 * 3 + 4 * 2 * scores
    assert att.bytes == 2 * per_layer
    assert att.flops == 2 * (4 * 4 * scores)
    assert ("attention_mask", 2, scores) in att.invocations


def test_seconds_by_hand() -> None:
    ops = {op.name: op for op in op_costs(TINY, context=5)}
    lm = ops["lm_head"]
    assert lm.seconds(ONE) == pytest.approx(256e-9)                       # 256 bytes, 256 flops
    assert lm.seconds(replace(ONE, head_gbps=0.5)) == pytest.approx(512e-9)   # widen-bound
    assert lm.seconds(replace(ONE, head_gbps=4.0)) == pytest.approx(256e-9)   # memory still
    fast = replace(ONE, memory_gbps=1000)
    assert lm.seconds(fast) == pytest.approx(256e-9)                     # compute-bound
    # the head splits over its threads: wall time divides, CPU time does not
    four = replace(ONE, threads=4, dispatch_us=2)
    assert lm.cpu_seconds(four) == pytest.approx(256e-9 + 3 * 2e-6)       # one 3-call block
    assert lm.seconds(four) == pytest.approx(lm.cpu_seconds(four) / 4)
    # uncalibrated elementwise work: PASSES float32 reads and writes at memory_gbps
    norms = ops["norms"]
    elements = 2 * (8 + 8 + 8 + 12) + 8
    assert norms.seconds(ONE) == pytest.approx(elements * PASSES["rms_norm"] * 8e-9)
    # calibrated: the measured fixed cost per call and cost per element
    cal = replace(ONE, fixed_us={"rms_norm": 3.0}, element_ns={"rms_norm": 0.5})
    assert norms.seconds(cal) == pytest.approx(9 * 3e-6 + elements * 0.5e-9)
    # attention: K/V stream (384 bytes) against 320 BLAS flops, then per call 10 scores and
    # per KV head two stream starts
    att = ops["attention"]
    cal = replace(ONE, fixed_us={"attention": 5.0, "stream_start": 1.0},
                  element_ns={"attention": 2.0})
    assert att.seconds(cal) == pytest.approx(384e-9 + 2 * (5e-6 + 10 * 2e-9) + 4 * 1e-6)
    assert att.seconds(replace(cal, compute_gflops=0.1)) == pytest.approx(
        3200e-9 + 2 * (5e-6 + 10 * 2e-9) + 4 * 1e-6)
    assert ops["link"].seconds(replace(ONE, link_gbps=2, dispatch_us=5)) == \
        pytest.approx(568 / 2e9)


def test_attention_grows_with_the_cache_as_its_stream() -> None:
    """Each extra key costs its K and V bytes at the bandwidth plus its scores."""
    m = resolve_model("bitnet-b1.58-2B-4T")
    p = replace(ONE, memory_gbps=10, compute_gflops=1000,
                element_ns={"attention": 1.0}, fixed_us={"attention": 7.0})
    a1, a2 = ({o.name: o for o in op_costs(m, L)}["attention"].seconds(p) for L in (100, 1100))
    per_key = 30 * (2 * 5 * 128 * 4 / 10e9 + 20 * 1e-9)
    assert (a2 - a1) / 1000 == pytest.approx(per_key)


def test_combine_states_the_overlap() -> None:
    per_op = {"norms": 1.0, "lm_head": 2.0, "link": 0.5}
    assert combine(4.0, per_op, ONE) == 7.5
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
    host = HostParams(memory_gbps=10, compute_gflops=20, link_gbps=4, dispatch_us=1,
                      threads=1)
    r = _estimate(host, context=1024)
    e, d, p = r["end_to_end"], r["decode"], r["prefill"]
    assert e["context"] == 1024 and e["host"]["memory_gbps"] == 10
    assert e["host_source"] == "given"
    # serial: the token costs the accelerator plus every host op plus the link
    total = d["seconds_per_token"] + sum(e["host_seconds_per_token"].values())
    assert e["decode_tokens_per_s"] == pytest.approx(1 / total)
    assert e["decode_tokens_per_s"] < d["tokens_per_s"]
    # the bf16 head (128,256 x 2,560) at 10 GB/s outweighs the 2-bit weights at 16
    assert e["bottleneck"] == "host: lm_head"
    head = 128256 * 2560 * 2 / 10e9
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
    ({"head_gbps": 0}, "head_gbps must be a finite number > 0"),
    ({"threads": 0}, "threads must be an integer >= 1"),
    ({"element_ns": {"softmax": 1.0}}, "element_ns['softmax'] must name one of"),
    ({"fixed_us": {"rms_norm": -1.0}}, "fixed_us['rms_norm'] must name one of"),
])
def test_bad_host_params(kw, message) -> None:
    with pytest.raises(InputError, match=re.escape(message)):
        HostParams(**{"memory_gbps": 1, "compute_gflops": 1, "link_gbps": 1, **kw})


def test_bad_context() -> None:
    with pytest.raises(InputError, match="context .* must be an integer >= 1"):
        op_costs(TINY, context=0)
    with pytest.raises(InputError, match="context=5000 exceeds"):
        _estimate(ONE, context=5000)


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


def test_calibration_measures_every_parameter() -> None:
    """One real calibration (a few seconds): every parameter the model prices with is
    measured, in range; its values are the benchmark's business, not this test's."""
    p = hostcost.calibrate_host_subprocess(link_gbps=3.0)
    assert p.source == "calibrated" and p.link_gbps == 3.0
    for name in ("memory_gbps", "compute_gflops", "dispatch_us", "head_gbps"):
        assert 0 < getattr(p, name) < 1e6, name
    priced = {f for op in op_costs(TINY, 3, 3) for f, _, _ in op.invocations}
    # the embedding and each LM head block fall back to CALLS x dispatch_us
    assert priced - set(p.fixed_us) <= {"lm_head_block"}
    assert set(p.fixed_us) == set(p.element_ns) <= set(CALLS)
    assert all(v >= 0 for v in p.fixed_us.values()) and all(
        v >= 0 for v in p.element_ns.values())


def test_head_threads_are_at_most_the_cores(monkeypatch) -> None:
    monkeypatch.setenv("TRITIUM_THREADS", str(10 * (os.cpu_count() or 1)))
    assert hostcost.default_threads() == (os.cpu_count() or 1) == HostParams().threads
    monkeypatch.setenv("TRITIUM_THREADS", "1")
    assert HostParams().threads == 1


FAKE = HostParams(memory_gbps=11.0, compute_gflops=22.0, dispatch_us=1.0, threads=4,
                  head_gbps=3.0, fixed_us={"rms_norm": 4.0}, element_ns={"rms_norm": 0.5},
                  source="calibrated")


@pytest.fixture()
def fake_calibration(tmp_path: Path, monkeypatch) -> list[int]:
    """No measuring: calibrate_host_subprocess returns FAKE and counts its calls."""
    monkeypatch.setenv("TRITIUM_BUILD", str(tmp_path))
    monkeypatch.setenv("TRITIUM_THREADS", "1")
    calls: list[int] = []

    def fake(link_gbps: float = 4.0) -> HostParams:
        calls.append(1)
        return replace(FAKE, link_gbps=link_gbps)

    monkeypatch.setattr(hostcost, "calibrate_host_subprocess", fake)
    return calls


def test_calibration_is_cached_per_machine_and_version(tmp_path: Path, fake_calibration
                                                       ) -> None:
    first = cached_calibration()
    assert first.memory_gbps == 11.0 and len(fake_calibration) == 1
    path = tmp_path / CALIBRATION_FILE
    stored = json.loads(path.read_text())
    assert stored["version"] == CALIBRATION_VERSION
    # the cache is used as it is, with this process's threads
    stored["params"]["memory_gbps"] = 123.0
    stored["params"]["threads"] = 5
    path.write_text(json.dumps(stored))
    again = cached_calibration()
    assert again.memory_gbps == 123.0 and again.source.startswith("calibrated (cached")
    assert again.threads == 1 and again.fixed_us == {"rms_norm": 4.0}
    assert len(fake_calibration) == 1
    # another machine's cache, an older format (version 1 had no "version" and other
    # parameters), a damaged file: each is measured again and rewritten
    v1 = {"key": stored["key"], "params": {"memory_gbps": 9.0, "compute_gflops": 9.0,
                                            "fixed_us": {"lm_head": 3.0}}}
    for text in (json.dumps(stored | {"key": "another machine"}), json.dumps(v1),
                 json.dumps(stored | {"version": CALIBRATION_VERSION - 1}), "{not json",
                 json.dumps(stored | {"params": {"memory_gbps": -1}})):
        path.write_text(text)
        n = len(fake_calibration)
        assert cached_calibration().memory_gbps == 11.0
        assert len(fake_calibration) == n + 1
        assert json.loads(path.read_text())["version"] == CALIBRATION_VERSION
    cached_calibration(force=True)
    assert len(fake_calibration) == 7


def test_library_estimate_does_not_calibrate(fake_calibration, tmp_path: Path) -> None:
    r = _estimate(None)
    assert r["end_to_end"]["host_source"].startswith("nominal")
    assert r["end_to_end"]["host"]["memory_gbps"] == HostParams().memory_gbps
    assert not fake_calibration and not (tmp_path / CALIBRATION_FILE).exists()


def test_cli_calibrates_by_default(fake_calibration, capsys) -> None:
    cmd = ["estimate", "--model", "bitnet-b1.58-2B-4T", "--dram-gbps", "16", "--json", "-"]
    assert main(cmd) == 0
    e = json.loads(capsys.readouterr().out)["end_to_end"]
    assert e["host_source"] == "calibrated" and e["host"]["memory_gbps"] == 11.0
    assert e["host"]["threads"] == 1 and len(fake_calibration) == 1
    assert main(cmd) == 0                   # the second run reads the cache
    e = json.loads(capsys.readouterr().out)["end_to_end"]
    assert e["host_source"].startswith("calibrated (cached") and len(fake_calibration) == 1
    # --calibrate-host measures again; a given --host-gbps replaces the calibrated value
    assert main([*cmd, "--calibrate-host", "--host-gbps", "7"]) == 0
    e = json.loads(capsys.readouterr().out)["end_to_end"]
    assert len(fake_calibration) == 2
    assert e["host"]["memory_gbps"] == 7 and "given: memory_gbps" in e["host_source"]
    assert e["host"]["head_gbps"] == 3.0
