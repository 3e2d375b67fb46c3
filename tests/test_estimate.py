"""golden.memory, host.arch's model shapes and host.estimate: closed forms against explicit
schedules, the 2B-4T numbers and their consistency, and the golden backend's per-layer counts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from tritium.golden import ArrayConfig
from tritium.golden import os_model as stream
from tritium.golden.checks import InputError
from tritium.golden.config import ConfigError
from tritium.golden.cycles import gemm_events, tile_cycles
from tritium.golden.energy import COMPONENTS, EnergyTable
from tritium.golden.memory import (
    MemoryConfig,
    bytes_per_cycle,
    gemm_cost,
    os_bytes_per_cycle,
    ws_gemm_cost,
)
from tritium.golden.tiling import plan_gemm
from tritium.host.arch import MODELS, PROJECTIONS, read_config_json, resolve_model
from tritium.host.estimate import EstimateConfig, estimate

B2 = "bitnet-b1.58-2B-4T"


def ws_timeline(cfg: ArrayConfig, mem: MemoryConfig, m: int, k: int, n: int) -> float:
    """The ws schedule golden.memory describes, walked tile by tile in plan_gemm order."""
    tiles = plan_gemm(cfg, m, k, n)
    bw = mem.dram_bytes_per_cycle
    w = [mem.weight_bytes(t.k * t.n) / bw for t in tiles]
    double = cfg.weight_tiles >= 2
    total = w[0] if double else 0.0
    for i, t in enumerate(tiles):
        act = t.m * t.k * mem.act_bytes / bw
        comp = tile_cycles(cfg, t.m)
        if double:   # the next tile's weights load while this one computes
            total += act + max(comp, w[i + 1] if i + 1 < len(tiles) else 0.0)
        else:
            total += w[i] + act + comp
        if t.last_k:
            total += t.m * t.n * mem.out_bytes / bw
    return total


@pytest.mark.parametrize(("rows", "cols", "depth", "wt", "m", "k", "n", "bw"), [
    (4, 4, 8, 2, 8, 16, 12, 2.0),      # uniform tiles, compute bound
    (4, 4, 8, 2, 1, 16, 12, 0.25),     # uniform, DRAM bound
    (8, 4, 16, 2, 32, 64, 8, 1.5),     # two full M chunks
    (4, 8, 8, 1, 20, 30, 50, 3.0),     # single weight slot: everything serial, any shape
    (32, 32, 64, 2, 1, 2560, 2560, 64.0),
])
def test_ws_closed_form_equals_the_tile_schedule(rows, cols, depth, wt, m, k, n, bw) -> None:
    cfg = ArrayConfig(rows=rows, cols=cols, act_depth=depth, weight_tiles=wt)
    mem = MemoryConfig(bw)
    cost = ws_gemm_cost(cfg, mem, m, k, n, nnz=0)
    assert cost.cycles == pytest.approx(ws_timeline(cfg, mem, m, k, n), rel=1e-12)


@pytest.mark.parametrize(("m", "k", "n", "bw"), [(5, 30, 50, 3.0), (70, 100, 37, 0.5),
                                                 (1, 7, 3, 0.1), (129, 2560, 640, 64.0)])
def test_ws_closed_form_with_edge_tiles_is_close(m, k, n, bw) -> None:
    # With edge tiles the closed form pairs each tile with its own weight load rather than
    # the next tile's; the schedule differs by at most one weight load per size change.
    cfg = ArrayConfig(rows=8, cols=8, act_depth=64)
    mem = MemoryConfig(bw)
    got = ws_gemm_cost(cfg, mem, m, k, n, nnz=0).cycles
    ref = ws_timeline(cfg, mem, m, k, n)
    full_w = mem.weight_bytes(cfg.pes) / bw
    changes = 2 * math.ceil(m / 64) * (math.ceil(n / 8) + 1)
    assert abs(got - ref) <= changes * full_w
    assert got >= ws_gemm_cost(cfg, mem, m, k, n, nnz=0).compute_cycles


@pytest.mark.parametrize(("m", "k", "n"), [(1, 1, 1), (3, 10, 7), (70, 33, 17), (64, 16, 16)])
def test_ws_cost_keeps_the_golden_events(m, k, n) -> None:
    cfg = ArrayConfig(rows=4, cols=4, act_depth=32)
    rng = np.random.default_rng(m * k * n)
    w = rng.choice([-1, 0, 1], size=(k, n))
    nnz = int(np.count_nonzero(w))
    cost = ws_gemm_cost(cfg, MemoryConfig(4.0), m, k, n, nnz)
    ev = gemm_events(cfg, w, m)
    assert (cost.events.tiles, cost.events.cycles, cost.events.macs, cost.events.zero_skips) \
        == (ev.tiles, ev.cycles, ev.macs, ev.zero_skips)
    # traffic: weights once per M chunk at 2 bits, activations once per N tile
    chunks, ntiles = math.ceil(m / 32), math.ceil(n / 4)
    assert cost.dram_weight_bytes == pytest.approx(chunks * k * n / 4)
    assert cost.dram_act_bytes == pytest.approx(ntiles * m * k)
    assert cost.dram_out_bytes == pytest.approx(4 * m * n)
    assert cost.pe_visits == ev.macs + ev.zero_skips


@pytest.mark.parametrize(("m", "k", "n"), [(1, 2560, 2560), (1, 6912, 2560), (3, 100, 37)])
def test_os_cost_is_the_stream_model(m, k, n) -> None:
    cfg = ArrayConfig(rows=32, cols=32)
    mem = MemoryConfig(64.0)
    cost = gemm_cost(cfg, mem, m, k, n, nnz=k * n // 2, dataflow="os")
    ocfg = ArrayConfig(rows=32, cols=32, dataflow="os", dram_bytes_per_cycle=64)
    assert cost.cycles == stream.stream_gemm_cycles(ocfg, m, k, n)
    traffic = stream.stream_traffic(ocfg, m, k, n)
    assert cost.dram_weight_bytes == traffic["weight_bytes"]
    assert cost.dram_bytes == sum(traffic.values())
    assert cost.stall_cycles == 0      # the stream model's cycles include its DRAM time


def test_memory_config_errors() -> None:
    with pytest.raises(ConfigError, match="dram_bytes_per_cycle must be > 0"):
        MemoryConfig(0)
    with pytest.raises(ConfigError, match="weight_bits must be in"):
        MemoryConfig(4, weight_bits=0)
    with pytest.raises(ConfigError, match="dram_gbps must be > 0"):
        bytes_per_cycle(-1, 100)
    with pytest.raises(ConfigError, match="clock_mhz must be > 0"):
        bytes_per_cycle(16, 0)
    assert bytes_per_cycle(16, 250) == pytest.approx(64)
    assert os_bytes_per_cycle(MemoryConfig(12.7e9 / 250e6)) == 48   # 50.8 -> whole rows of 4
    assert os_bytes_per_cycle(MemoryConfig(1.6e9 / 100e6)) == 16    # float noise tolerated
    with pytest.raises(ConfigError, match="below 4"):
        os_bytes_per_cycle(MemoryConfig(3.9))
    with pytest.raises(InputError, match="exceeds ArrayConfig.max_k"):
        ws_gemm_cost(ArrayConfig(max_k=64), MemoryConfig(4), 1, 65, 4, 0)


# --- models ---------------------------------------------------------------------------------


def test_named_models() -> None:
    m = resolve_model(B2)
    assert (m.hidden_size, m.intermediate_size, m.num_hidden_layers, m.num_attention_heads,
            m.num_key_value_heads, m.vocab_size) == (2560, 6912, 30, 20, 5, 128256)
    shapes = {mm.name: (mm.k, mm.n) for mm in m.matmuls()}
    assert shapes == {"q_proj": (2560, 2560), "k_proj": (2560, 640), "v_proj": (2560, 640),
                      "o_proj": (2560, 2560), "gate_proj": (2560, 6912),
                      "up_proj": (2560, 6912), "down_proj": (6912, 2560)}
    assert tuple(shapes) == PROJECTIONS
    assert m.ternary_weights == 30 * 69_468_160
    assert resolve_model("microsoft/BitNet-b1.58-2B-4T") is m
    with pytest.raises(InputError) as info:
        resolve_model("llama-7b")
    assert "unknown model 'llama-7b'" in str(info.value)
    for name in MODELS:
        assert name in str(info.value)


@pytest.mark.parametrize("raw", [
    {"model_type": "bitnet", "hidden_size": 96, "intermediate_size": 160,
     "num_hidden_layers": 3, "num_attention_heads": 6, "num_key_value_heads": 2,
     "vocab_size": 300, "max_position_embeddings": 512},
    # silent on tie_word_embeddings and max_position_embeddings: both readers take the
    # architecture's (transformers') defaults
    {"model_type": "bitnet", "hidden_size": 64, "num_hidden_layers": 2,
     "num_attention_heads": 4, "num_key_value_heads": 2},
    {"model_type": "llama", "hidden_size": 64, "intermediate_size": 100, "num_hidden_layers": 2,
     "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 32,
     "quantization_config": {"quant_method": "bitnet"}},
], ids=["bitnet", "bitnet_defaults", "llama_head_dim"])
def test_config_json_matches_the_runtime_reader(tmp_path: Path, raw) -> None:
    from tritium.host.checkpoint import ModelConfig

    (tmp_path / "config.json").write_text(json.dumps(raw))
    shape = read_config_json(tmp_path)
    runtime = ModelConfig.from_dict(raw)
    assert {n.split(".")[-1]: v for n, v in runtime.linear_shapes().items()} == \
        {mm.name: (mm.n, mm.k) for mm in shape.matmuls()}
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "head_dim", "vocab_size", "max_position_embeddings",
                "tie_word_embeddings"):
        assert getattr(shape, key) == getattr(runtime, key), key
    assert shape.model_type == raw["model_type"]
    assert resolve_model(str(tmp_path)) == shape
    assert resolve_model(tmp_path / "config.json").hidden_size == raw["hidden_size"]
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(InputError, match="not valid JSON"):
        read_config_json(tmp_path)


def test_estimator_rejects_implausible_layer_counts(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(
        {"model_type": "bitnet", "num_hidden_layers": 10**9}))
    with pytest.raises(InputError, match="num_hidden_layers=1000000000 is implausible"):
        resolve_model(tmp_path)


# --- the estimate ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def table() -> EnergyTable:
    return EnergyTable.load()


def run_2b(df: str = "auto", **kw) -> dict:
    cfg = ArrayConfig(rows=32, cols=32, clock_mhz=250.0)
    return estimate(resolve_model(B2), EstimateConfig(cfg, 16.0, dataflow=df, **kw))


@pytest.fixture(scope="module")
def est() -> dict:
    return run_2b()


def test_json_keys_and_consistency(est: dict) -> None:
    for key in ("prefill", "decode", "energy", "layers", "assumptions", "config", "lm_head",
                "totals", "model"):
        assert key in est
    d, p, e = est["decode"], est["prefill"], est["energy"]
    f = 250e6
    assert d["tokens_per_s"] == pytest.approx(f / d["cycles_per_token"])
    assert p["tokens_per_s"] == pytest.approx(128 * f / p["cycles"])
    weight_bytes = 30 * 69_468_160 * 2 / 8
    assert d["weight_bytes_per_token"] == weight_bytes
    assert d["roofline_tokens_per_s"] == pytest.approx(16e9 / weight_bytes)
    assert d["roofline_fraction"] == pytest.approx(d["tokens_per_s"] / d["roofline_tokens_per_s"])
    assert 0 < d["utilization"] <= 1 and 0 < p["utilization"] <= 1
    assert d["utilization"] == pytest.approx(30 * 69_468_160 / (1024 * d["cycles_per_token"]))
    # per-layer and per-matmul numbers add up to the totals
    assert len(est["layers"]) == 30
    for ph, key in (("prefill", "cycles"), ("decode", "cycles_per_token")):
        assert sum(lay[ph]["cycles"] for lay in est["layers"]) == pytest.approx(est[ph][key])
        assert sum(lay[ph]["energy_j"] for lay in est["layers"]) == pytest.approx(
            e[f"{ph}_j_per_token"] * (128 if ph == "prefill" else 1))
        assert sum(lay[ph]["dram_bytes"] for lay in est["layers"]) == pytest.approx(
            est[ph]["dram_bytes"])
        lay0 = est["layers"][0]
        assert sum(lay0["matmuls"][mm][ph]["cycles"] for mm in PROJECTIONS) == pytest.approx(
            lay0[ph]["cycles"])
    assert tuple(e["decode_breakdown_j_per_token"]) == COMPONENTS
    assert sum(e["decode_breakdown_j_per_token"].values()) == pytest.approx(
        e["decode_j_per_token"])
    assert sum(e["prefill_groups_j_per_token"].values()) == pytest.approx(
        e["prefill_j_per_token"])
    assert e["total_j"] == pytest.approx(e["prefill_j_per_token"] * 128
                                         + 128 * e["decode_j_per_token"])
    assert est["config"]["memory"]["dram_bytes_per_cycle"] == pytest.approx(64)
    assert est["lm_head"]["on"] == "cpu" and est["lm_head"]["bf16_bytes"] == 2560 * 128256 * 2
    assert any("LM head" in a for a in est["assumptions"])
    json.dumps(est)      # JSON-ready


def test_decode_target_and_auto_choice(est: dict) -> None:
    d = est["decode"]
    assert d["roofline_fraction"] >= 0.90, d
    assert d["dataflows"] == {"os": 210}
    assert est["prefill"]["dataflows"] == {"ws": 210}
    ws, os_ = run_2b("ws"), run_2b("os")
    for ph, key in (("prefill", "cycles"), ("decode", "cycles_per_token")):
        assert est[ph][key] == pytest.approx(min(ws[ph][key], os_[ph][key]))
    assert ws["decode"]["utilization"] < 0.02      # DESIGN.md: about 1 % on ws


def test_ws_only_estimate_and_options() -> None:
    ws = run_2b("ws")
    assert ws["decode"]["dataflows"] == {"ws": 210}
    # TL2-style packing moves fewer weight bytes: a higher roofline, never a slower ws decode
    tl2 = run_2b("ws", weight_bits=1.6)
    assert tl2["decode"]["roofline_tokens_per_s"] == pytest.approx(
        ws["decode"]["roofline_tokens_per_s"] * 2 / 1.6)
    assert tl2["decode"]["tokens_per_s"] >= ws["decode"]["tokens_per_s"]
    # sparsity changes MACs vs skips and energy, not cycles
    dense = run_2b("ws", zero_fraction=0.0)
    assert dense["decode"]["cycles_per_token"] == ws["decode"]["cycles_per_token"]
    assert dense["decode"]["zero_skips"] < ws["decode"]["zero_skips"]
    assert dense["energy"]["decode_breakdown_j_per_token"]["pe_adds"] > \
        ws["energy"]["decode_breakdown_j_per_token"]["pe_adds"]
    # a smaller node costs less logic energy, the same DRAM energy
    t7 = estimate(resolve_model(B2), EstimateConfig(ArrayConfig(rows=32, cols=32,
                                                                clock_mhz=250.0), 16.0,
                                                    dataflow="ws"),
                  EnergyTable.load().at_node(7))
    b45 = ws["energy"]["decode_breakdown_j_per_token"]
    b7 = t7["energy"]["decode_breakdown_j_per_token"]
    assert b7["dram"] == pytest.approx(b45["dram"])
    assert b7["pe_adds"] == pytest.approx(b45["pe_adds"] * 0.094)


def test_estimate_input_errors() -> None:
    model = resolve_model(B2)
    with pytest.raises(InputError, match="raise --max-k to at least 6912"):
        estimate(model, EstimateConfig(ArrayConfig(max_k=4096), 16.0))
    with pytest.raises(ConfigError, match="dram_gbps .* must be > 0"):
        EstimateConfig(ArrayConfig(), 0.0)
    with pytest.raises(ConfigError, match="dataflow must be one of auto, ws, os"):
        EstimateConfig(ArrayConfig(), 16.0, dataflow="is")
    with pytest.raises(InputError, match="prompt_len must be an integer >= 1"):
        EstimateConfig(ArrayConfig(), 16.0, prompt_len=0)
    with pytest.raises(InputError, match="exceed .*max_position_embeddings=4096"):
        estimate(model, EstimateConfig(ArrayConfig(), 16.0, prompt_len=4000, gen_len=200))
    with pytest.raises(ConfigError, match="below 4"):
        estimate(model, EstimateConfig(ArrayConfig(clock_mhz=250.0), 0.5, dataflow="os"))
        # auto falls back to ws and says why
        r = estimate(model, EstimateConfig(ArrayConfig(clock_mhz=250.0), 0.5))
        assert r["decode"]["dataflows"] == {"ws": 210}
        assert any("auto did not consider os" in a for a in r["assumptions"])
