"""The energy model prices a saturating accumulator's clamp on every add it guards."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tritium.golden import ArrayConfig
from tritium.golden.energy import COMPONENTS, EnergyEvents, EnergyTable, energy_of, group
from tritium.golden.memory import MemoryConfig, gemm_cost
from tritium.host.arch import resolve_model
from tritium.host.estimate import EstimateConfig, estimate
from tritium.host.hostcost import HostParams

# acc_bits=12 with max_k=256 overflows, so only wrap and saturate are valid; 16 is safe
BASE = ArrayConfig(rows=4, cols=4, acc_bits=12, max_k=256, acc_overflow="wrap",
                   weight_tiles=2, act_depth=8)


def test_clamp_is_derived_from_the_adder_per_bit() -> None:
    t = EnergyTable.load()
    # 16 -> 17 bits lies on the table's 16..32-bit adder line
    per_bit = (t.ops["int_add_32"] - t.ops["int_add_16"]) / 16
    assert t.saturate_pj(16) == pytest.approx(t.ops["int_add_16"] + per_bit)
    assert t.saturate_pj(12) == pytest.approx(t.add_pj(13))
    ev = EnergyEvents(pe_adds=100, output_adds=7, add_bits=16, saturating_adds=107)
    e = energy_of(t, ev)
    assert tuple(e) == COMPONENTS
    assert e["saturation"] == pytest.approx(107 * t.saturate_pj(16) * 1e-12)
    assert group(e)["pe_adds"] == pytest.approx(e["pe_adds"] + e["output_adds"]
                                                + e["saturation"])


@pytest.mark.parametrize("dataflow", ["ws", "os"])
def test_saturate_costs_its_clamps_and_nothing_else(dataflow: str) -> None:
    t = EnergyTable.load()
    mem = MemoryConfig(8.0)
    # K = 20 spans several 4-row K tiles on ws, so output adds are clamped too
    m, k, n, nnz = 3, 20, 9, 120
    wrap = gemm_cost(BASE, mem, m, k, n, nnz, dataflow)
    sat_cfg = replace(BASE, acc_overflow="saturate")
    sat = gemm_cost(sat_cfg, mem, m, k, n, nnz, dataflow)
    ew, es = energy_of(t, wrap.energy_events(BASE)), energy_of(t, sat.energy_events(sat_cfg))
    assert ew["saturation"] == 0.0
    clamps = sat.events.macs + sat.output_adds
    assert clamps > sat.events.macs if dataflow == "ws" else clamps == sat.events.macs
    assert es["saturation"] == pytest.approx(clamps * t.saturate_pj(BASE.acc_bits) * 1e-12)
    assert {c: es[c] for c in COMPONENTS if c != "saturation"} == \
        {c: ew[c] for c in COMPONENTS if c != "saturation"}
    safe = ArrayConfig(rows=4, cols=4, acc_bits=16, max_k=64, weight_tiles=2, act_depth=8)
    assert energy_of(t, gemm_cost(safe, mem, m, k, n, nnz, dataflow)
                     .energy_events(safe))["saturation"] == 0.0


def test_estimate_reports_the_clamps() -> None:
    cfg = ArrayConfig(rows=32, cols=32, clock_mhz=250.0, acc_bits=24, max_k=8192,
                      acc_overflow="saturate")
    host = HostParams(20.0, 50.0, 4.0, source="given")
    r = estimate(resolve_model("bitnet-b1.58-2B-4T"),
                 EstimateConfig(cfg, 16.0, prompt_len=8, gen_len=4, host=host))
    d = r["energy"]["decode_breakdown_j_per_token"]
    t = EnergyTable.load()
    macs = r["decode"]["macs"]
    assert d["saturation"] >= macs * t.saturate_pj(24) * 1e-12 * (1 - 1e-9)
    assert any("acc_overflow=saturate" in a for a in r["assumptions"])
