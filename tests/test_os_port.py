"""The os top's memory port: golden/os_port.py's timing model on its own, then the RTL served by
the Verilator harness (sim/cpp/mem_port.h) and by the cocotb bench at several latencies,
bandwidths, depths and seeded stall patterns, cycle for cycle against the model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tritium.golden import ArrayConfig, InputError, ternary_gemm
from tritium.golden.os_model import job_beats, stream_gemm_cycles, stream_gemm_events, stream_plan
from tritium.golden.os_port import PortTiming, splitmix64, stalled, start_cycles
from tritium.host.os_driver import OsDriver
from tritium.sim.runner import run_bench

CFG = ArrayConfig(rows=4, cols=6, dataflow="os", acc_bits=14, max_k=63, dram_bytes_per_cycle=8,
                  dram_words=256, weight_packing="base3")
TWO_BIT = ArrayConfig(rows=4, cols=6, dataflow="os", acc_bits=14, max_k=63,
                      dram_bytes_per_cycle=4, dram_words=256)

TIMINGS = {
    "latency1": PortTiming(latency=1),
    "latency6": PortTiming(latency=6),
    "shallow": PortTiming(latency=3, depth=2),          # too few requests in flight
    "slow": PortTiming(bytes_per_cycle=3),               # 3 of 8 bytes a cycle
    "stalls30": PortTiming(stall_ppm=300_000, seed=11),
    "stalls70_latency4": PortTiming(latency=4, stall_ppm=700_000, seed=2),
    "everything": PortTiming(latency=2, bytes_per_cycle=5, stall_ppm=400_000, seed=9, depth=3),
}


# --- the model on its own --------------------------------------------------------------------


def test_splitmix64_reference_values() -> None:
    # The published splitmix64 sequence from state 0 (also what the C++ harness computes).
    assert splitmix64(0) == 0xE220A8397B1DCDAF
    assert splitmix64(0x9E3779B97F4A7C15) == 0x6E789E6AA1B965F4


def test_stall_pattern_is_seeded_and_near_its_rate() -> None:
    t = PortTiming(stall_ppm=250_000, seed=4)
    pattern = [stalled(t, i) for i in range(20_000)]
    assert pattern == [stalled(t, i) for i in range(20_000)]
    assert pattern != [stalled(PortTiming(stall_ppm=250_000, seed=5), i) for i in range(20_000)]
    assert abs(sum(pattern) / len(pattern) - 0.25) < 0.02
    assert not any(stalled(PortTiming(), i) for i in range(1000))


@pytest.mark.parametrize("latency", [0, 1, 2, 7])
def test_closed_form_equals_the_simulation_when_ideal(latency: int) -> None:
    rng = np.random.default_rng(latency)
    timing = PortTiming(latency=latency)
    for _ in range(30):
        beats = [(bool(rng.integers(0, 2)), int(rng.integers(1, 9))) for _ in range(6)]
        beats[0] = (True, beats[0][1])
        assert start_cycles(CFG, beats, timing) == start_cycles(
            CFG, beats, timing, closed_form=False) == sum(c for _, c in beats) + 1 + latency


def test_slower_memory_is_never_faster_and_bandwidth_binds() -> None:
    m, k, n = 2, 40, 30
    ideal = stream_gemm_cycles(CFG, m, k, n)
    for timing in TIMINGS.values():
        assert stream_gemm_cycles(CFG, m, k, n, timing) >= ideal
    reads = sum(c for job in stream_plan(CFG, m, k, n)
                for r, c in job_beats(CFG, k, job) if r)
    slow = stream_gemm_cycles(CFG, m, k, n, PortTiming(bytes_per_cycle=2))
    assert slow >= (reads - 1) * 4        # one 8-byte row per 4 cycles at 2 bytes/cycle


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"latency": -1}, "PortTiming.latency must be an integer >= 0"),
    ({"stall_ppm": 1_000_000}, "stall_ppm must be below"),
    ({"depth": 0}, "PortTiming.depth must be None or an integer >= 1"),
    ({"bytes_per_cycle": 2.5}, "PortTiming.bytes_per_cycle must be None or an integer"),
])
def test_bad_timing_names_its_field(kwargs: dict, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment):
        PortTiming(**kwargs)


# --- RTL behind the Verilator harness ---------------------------------------------------------


@pytest.mark.parametrize("name", TIMINGS)
def test_device_is_cycle_exact_behind_a_slow_or_stalling_memory(name: str) -> None:
    from tritium.sim.verilated import VerilatorDevice

    timing = TIMINGS[name]
    rng = np.random.default_rng(len(name))
    with VerilatorDevice(CFG, port=timing) as dev:
        acc = OsDriver(dev)
        acc.identify()
        for m, k, n in ((1, 1, 1), (1, 63, 2 * CFG.pes + 5), (3, 12, CFG.pes)):
            a = rng.integers(-128, 128, (m, k))
            w = rng.choice([-1, 0, 1], size=(k, n))
            got, events = acc.gemm(a, w)
            np.testing.assert_array_equal(got, ternary_gemm(a, w, 8))
            assert events.as_dict() == stream_gemm_events(CFG, w, m, timing).as_dict(), (m, k, n)


def test_build_does_not_grow_with_the_memory_or_max_k() -> None:
    """The Verilog of a 2x2 os top is the same size whether the memory behind its port holds
    2^10 or 2^20 rows and whether max_k is 256 or 8192 (the activation buffer is a memory,
    its zero fill dropped), and about the size of a 2x2 ws top's; the top with a built-in
    DRAM was 1 MB of Verilog."""
    from tritium.hdl.generate import unit_verilog

    def size(**kw) -> int:
        return len(unit_verilog("top", ArrayConfig(rows=2, cols=2, **kw), "tritium_top"))

    sizes = [size(dataflow="os", max_k=256, dram_words=1024),
             size(dataflow="os", max_k=256, dram_words=2**20),
             size(dataflow="os", max_k=8192)]
    assert max(sizes) < 1.05 * min(sizes), sizes
    assert max(sizes) < 1.2 * size(), (sizes, size())


# --- RTL in the cocotb bench ------------------------------------------------------------------


def test_stream_bench_behind_latency_and_stalls() -> None:
    """Every shared bus-level case and the pass timing on a 2-bit top, latency 2, 35 % stalls."""
    timing = {"latency": 2, "stall_ppm": 350_000, "seed": 21}
    run_bench("stream", TWO_BIT, extra_env={"TRITIUM_PORT": json.dumps(timing)})


# --- the estimate command ---------------------------------------------------------------------


def test_estimate_cli_weight_packing(capsys) -> None:
    """--weight-packing base3 streams base-3 rows on os and prices 1.6-bit weights; a bad
    packing is one line naming the parameter."""
    from tritium.cli import main

    base = ["estimate", "--model", "bitnet-b1.58-2B-4T", "--rows", "32", "--cols", "32",
            "--clock-mhz", "250", "--dram-gbps", "16", "--dataflow", "os", "--prompt-len",
            "8", "--gen-len", "1", "--sparsity", "0.3", "--json", "-"]
    runs = {}
    for packing in ("2bit", "base3"):
        assert main([*base, "--weight-packing", packing]) == 0
        runs[packing] = json.loads(capsys.readouterr().out)
    two, three = runs["2bit"], runs["base3"]
    assert three["config"]["array"]["weight_packing"] == "base3"
    assert three["config"]["memory"]["weight_bits"] == 1.6
    assert two["config"]["memory"]["weight_bits"] == 2.0
    per_token = [r["decode"]["weight_bytes_per_token"] for r in (two, three)]
    assert per_token[1] == pytest.approx(0.8 * per_token[0])
    assert three["decode"]["tokens_per_s"] >= 36.5 > two["decode"]["tokens_per_s"]
    assert main([*base, "--weight-packing", "trits"]) == 1
    err = capsys.readouterr().err
    assert "weight_packing must be one of 2bit, base3, got 'trits'" in err
    assert len(err.strip().splitlines()) == 1
