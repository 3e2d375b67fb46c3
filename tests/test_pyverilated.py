"""tritium.sim.pyverilated: the PE and a 2x2 top driven through pyverilator against golden, and
its build cache."""

from __future__ import annotations

import dataclasses
import importlib
import itertools

import numpy as np
import pytest

from tritium.golden import ArrayConfig, gemm_cycles, ternary_gemm
from tritium.golden.cycles import column_latency, gemm_events
from tritium.hdl.pe import update as pe_update
from tritium.host.driver import driver_for
from tritium.sim import pyverilated
from tritium.sim.pyverilated import PyVerilatedDevice

# Narrow accumulators so the PE's psum edges wrap; act_depth 4 so a GEMM spans M chunks.
CFG = ArrayConfig(rows=2, cols=2, acc_bits=16, max_k=255, act_depth=4)


def signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >> (bits - 1) else value


def unsigned(value: int, bits: int) -> int:
    return value & ((1 << bits) - 1)


@pytest.fixture(scope="module")
def pe():
    return pyverilated("pe", CFG)


def test_pe_every_code_and_edge_against_golden(pe) -> None:
    a_bits, acc = CFG.act_bits, CFG.acc_bits
    acts = [-(2 ** (a_bits - 1)), -1, 0, 1, 2 ** (a_bits - 1) - 1]
    psums = [-(2 ** (acc - 1)), -1, 0, 1, 2 ** (acc - 1) - 1]
    for code in range(4):  # 00 zero, 01 +1, 11 -1, and 10, which must act as zero
        pe.io.w_in, pe.io.w_load = code, 1
        pe.clock.tick()
        pe.io.w_load, pe.io.w_in = 0, 0
        assert pe.internals.code == code  # a signal inside the PE, read by name
        for act, psum in itertools.product(acts, psums):
            pe.io.act_in, pe.io.psum_in = unsigned(act, a_bits), unsigned(psum, acc)
            want = pe_update(psum, act, code, acc)
            got = signed(pe.io.sum, acc)
            assert got == want, f"code {code:02b}, act {act}, psum {psum}: sum {got} != {want}"
            pe.clock.tick()
            assert signed(pe.io.psum_out, acc) == want, f"code {code:02b}: psum_out not registered"
            assert signed(pe.io.act_out, a_bits) == act
            assert pe.internals.code == code, "the weight changed without w_load"


def test_array_streams_against_golden() -> None:
    """Weights latched row by row, activation vectors streamed one per cycle: each column's
    result appears column_latency cycles after its vector, equal to golden's GEMM."""
    sim = pyverilated("array", CFG)
    rows, cols, a_bits, acc = CFG.rows, CFG.cols, CFG.act_bits, CFG.acc_bits
    rng = np.random.default_rng(3)
    w = np.array([[1, -1], [-1, 0]])
    a = rng.integers(-(2 ** (a_bits - 1)), 2 ** (a_bits - 1), (5, rows))
    a[0] = -(2 ** (a_bits - 1))
    a[1] = 2 ** (a_bits - 1) - 1
    for r in range(rows):  # a weight's 2-bit code is its two's complement
        sim.io.w_row = sum((int(w[r, c]) & 3) << (2 * c) for c in range(cols))
        sim.io.w_sel, sim.io.w_en = r, 1
        sim.clock.tick()
    sim.io.w_en = 0
    want = ternary_gemm(a, w, a_bits)
    seen: dict[int, list[tuple[int, int]]] = {c: [] for c in range(cols)}
    for t in range(len(a) + column_latency(CFG, cols - 1) + 2):
        if t < len(a):
            sim.io.act = sum(unsigned(int(x), a_bits) << (a_bits * r) for r, x in enumerate(a[t]))
        sim.io.act_valid = int(t < len(a))
        for c in range(cols):
            if sim.io.out_valid >> c & 1:
                seen[c].append((t, signed(sim.io.out >> (acc * c) & ((1 << acc) - 1), acc)))
        sim.clock.tick()
    for c in range(cols):
        lat = column_latency(CFG, c)
        assert seen[c] == [(lat + i, int(want[i, c])) for i in range(len(a))], f"column {c}"


@pytest.mark.parametrize("dataflow", ["ws", "os"])
def test_top_through_its_bus_against_golden(dataflow: str) -> None:
    """Weights and activations written, start, busy polled, results and counters read: every
    bus operation one pyverilator signal write and clock edge at a time."""
    cfg = dataclasses.replace(CFG, dataflow=dataflow)
    dev = PyVerilatedDevice(pyverilated("top", cfg), cfg)
    acc = driver_for(dev, cfg)
    acc.identify()
    rng = np.random.default_rng(7)
    lo, hi = -(2 ** (cfg.act_bits - 1)), 2 ** (cfg.act_bits - 1) - 1
    for m, k, n in ((1, 2, 2), (cfg.act_depth + 1, 5, 3)):  # one tile; M chunks, K and N odd
        a = rng.integers(lo, hi + 1, (m, k))
        a[0, :2] = lo, hi
        w = rng.integers(-1, 2, (k, n))
        w[rng.random((k, n)) < 0.3] = 0
        before = dev.cycles
        out, events = acc.gemm(a, w)
        np.testing.assert_array_equal(out, ternary_gemm(a, w, cfg.act_bits),
                                      err_msg=f"{dataflow} {m}x{k}x{n}")
        want = gemm_events(cfg, w, m)
        assert events.cycles == gemm_cycles(cfg, m, k, n) == want.cycles
        assert (events.tiles, events.macs, events.zero_skips) == (
            want.tiles, want.macs, want.zero_skips), f"{dataflow} {m}x{k}x{n}: {events}"
        # Every busy cycle was a clock ticked from Python, and every bus operation one more.
        assert dev.cycles - before > events.cycles


def test_build_is_cached_and_simulations_are_independent(tmp_path, monkeypatch) -> None:
    # The package's `pyverilated` attribute is the function; the module is reached by name.
    mod = importlib.import_module("tritium.sim.pyverilated")
    compiles = []
    real = mod._compile
    monkeypatch.setattr(mod, "_compile", lambda src, work: (compiles.append(work), real(src, work)))
    first = pyverilated("pe", CFG, build_root=tmp_path)
    library = next((first.build_dir / "obj").glob("Vtritium_pe"))
    stamp = library.stat().st_mtime_ns
    second = pyverilated("pe", CFG, build_root=tmp_path)
    assert len(compiles) == 1, "the second call rebuilt the PE"
    assert second.build_dir == first.build_dir
    assert library.stat().st_mtime_ns == stamp
    # Each simulation loads its own copy of the library, so their states never mix.
    first.io.w_in, first.io.w_load = 1, 1
    first.clock.tick()
    assert (first.internals.code, second.internals.code) == (1, 0)
    other = ArrayConfig(rows=2, cols=2, acc_bits=18, max_k=255, act_depth=4)
    assert mod._build_dir("pe", other, "", None) != mod._build_dir("pe", CFG, "", None)


def test_trace_writes_a_vcd(tmp_path) -> None:
    with pytest.raises(ValueError, match="trace: folder .* does not exist"):
        pyverilated("pe", CFG, trace=tmp_path / "missing" / "pe.vcd")
    sim = pyverilated("pe", CFG, trace=tmp_path / "pe.vcd")
    sim.io.w_in, sim.io.w_load, sim.io.act_in = 1, 1, 5
    sim.clock.tick()
    sim.io.w_load = 0
    sim.clock.tick()
    sim.stop_vcd_trace()
    text = (tmp_path / "pe.vcd").read_text()
    assert "$var" in text and " sum " in text and " code " in text
    traced = pyverilated("pe", CFG, trace=True)
    assert traced.vcd_filename.startswith(str(traced.build_dir))
    traced.stop_vcd_trace()


def test_unknown_unit_is_one_line() -> None:
    with pytest.raises(ValueError, match=r"unknown unit 'alu'; expected one of pe, array") as e:
        pyverilated("alu", CFG)
    assert "\n" not in str(e.value)
