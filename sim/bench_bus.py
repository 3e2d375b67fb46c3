"""The bus-level cocotb bench cases every dataflow's top runs: identification, random and
corner GEMMs against golden, the accumulator's safe limit, bad starts and the counters.

A dataflow's bench module (golden.dataflows: bench) defines a BusBench subclass named BENCH
with its parameters and its step-by-step GEMM, imports these tests so cocotb collects them
there, and adds the tests only its top needs. Results come from golden.ternary_gemm, cycles
and events from the dataflow's golden model. Busy cycles are measured twice per step: by the
top's own counter and by a monitor on the `busy` pin, so a wrong counter cannot hide a wrong
count.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import cocotb
import numpy as np

from ..bus.contract import (
    CTRL_CLEAR,
    CTRL_START,
    MAGIC,
    STATUS_DONE,
    STATUS_ERROR,
    VERSION,
    Csr,
    Program,
)
from ..golden.config import ArrayConfig
from ..golden.cycles import Events
from ..golden.dataflows import dataflow
from ..golden.gemm import ternary_gemm
from ..host.driver import driver_for
from .benchutil import act_values, bench_config, bench_rng, extreme_cases, start
from .bus import BenchDevice, BusMaster, BusyMonitor

COUNTED = ("busy_cycles", "macs", "zero_skips", "tiles")


@dataclass
class Step:
    """One start of a GEMM: queue() adds its ops (and returns what place() needs), want is
    what golden says its counters see, place() puts its results into the GEMM's result."""

    label: str
    queue: Callable[[Program], object]
    want: Events
    place: Callable[[np.ndarray, object, np.ndarray], None]


class BusBench:
    """A dataflow's bench parameters and how it runs a GEMM step by step."""

    def __init__(self, cfg: ArrayConfig) -> None:
        self.cfg = cfg
        self.driver = driver_for(BenchDevice(cfg), cfg)
        self.rm = self.driver.map

    def steps(self, a: np.ndarray, w: np.ndarray) -> Iterator[Step]:
        raise NotImplementedError

    def check_whole(self, a: np.ndarray, w: np.ndarray, total: dict[str, int],
                    label: str) -> None:
        """Checks on the sum of every step's counters."""

    def random_shapes(self) -> list[tuple[int, int, int]]:
        raise NotImplementedError

    def corner_shape(self) -> tuple[int, int, int]:
        raise NotImplementedError

    # The safe-limit GEMM runs K = max_k over the bus; above this K narrow configs cover it.
    def safe_limit_k(self) -> int:
        raise NotImplementedError

    def start_csrs(self) -> tuple[dict[int, int], list[dict[int, int]]]:
        """CSR values of a legal start, and overrides of them that each make a start illegal."""
        raise NotImplementedError

    def bus_master(self, dut) -> BusMaster:
        """The bus master the cases drive (a top with a memory port brings its server)."""
        return BusMaster(dut, self.rm)


def bench_for(cfg: ArrayConfig) -> BusBench:
    return importlib.import_module(dataflow(cfg.dataflow).bench).BENCH(cfg)


async def setup(dut) -> tuple[BusBench, BusMaster, np.random.Generator]:
    bench = bench_for(bench_config())
    await start(dut)
    return bench, bench.bus_master(dut), bench_rng()


async def check_gemm(bench: BusBench, bus: BusMaster, mon: BusyMonitor, a, w,
                     label: str) -> None:
    """Run a GEMM step by step; check each step's busy pin and counters against golden, then
    the whole result."""
    m, n = a.shape[0], w.shape[1]
    expected = ternary_gemm(a, w, bench.cfg.act_bits)
    result = np.zeros((m, n), dtype=np.int64)
    total = dict.fromkeys(COUNTED, 0)
    for step in bench.steps(a, w):
        before = await bus.counters()
        busy_before = mon.count
        prog = Program()
        handle = step.queue(prog)
        status_at = prog.read(bus.rm.csr(Csr.STATUS))
        words = await bus.execute(prog.as_array())
        status = int(words[status_at])
        assert status & STATUS_DONE, f"{label}: {step.label} did not set done"
        assert not status & STATUS_ERROR, f"{label}: {step.label} flagged an error"
        after = await bus.counters()
        want = step.want
        seen = mon.count - busy_before
        assert seen == want.cycles, f"{label}: busy pin high {seen} cycles, golden {want.cycles}"
        got = {name: after[name] - before[name] for name in COUNTED}
        assert got == {"busy_cycles": want.cycles, "macs": want.macs,
                       "zero_skips": want.zero_skips, "tiles": want.tiles}, (
            f"{label}: {step.label}: counters {got} != golden {want.as_dict()}"
        )
        for name in COUNTED:
            total[name] += got[name]
        step.place(words, handle, result)
    bench.check_whole(a, w, total, label)
    bad = np.argwhere(result != expected)
    assert bad.size == 0, (
        f"{label}: {len(bad)} results differ from golden, first at {tuple(bad[0])}: "
        f"{result[tuple(bad[0])]} != {expected[tuple(bad[0])]}"
    )


def weights(rng: np.random.Generator, k: int, n: int, zeros: float = 0.3) -> np.ndarray:
    w = rng.integers(-1, 2, (k, n))
    w[rng.random((k, n)) < zeros] = 0
    return w


@cocotb.test()
async def identification(dut):
    bench, bus, _ = await setup(dut)
    assert await bus.read_csr(Csr.ID) == MAGIC
    assert await bus.read_csr(Csr.VERSION) == VERSION
    assert await bus.read_csr(Csr.DATAFLOW) == dataflow(bench.cfg.dataflow).ident
    for reg, word in zip(bench.rm.config_csrs(), bench.rm.config_words(), strict=True):
        assert await bus.read_csr(reg) == word, reg
    assert await bus.read_csr(Csr.STATUS) == 0


@cocotb.test()
async def random_gemms(dut):
    bench, bus, rng = await setup(dut)
    mon = BusyMonitor(dut)
    for m, k, n in bench.random_shapes():
        a = act_values(rng, (m, k), bench.cfg.act_bits)
        await check_gemm(bench, bus, mon, a, weights(rng, k, n), f"random {m}x{k}x{n}")


@cocotb.test()
async def corner_cases(dut):
    bench, bus, rng = await setup(dut)
    mon = BusyMonitor(dut)
    for label, (a, w) in extreme_cases(bench.cfg, rng, *bench.corner_shape()).items():
        await check_gemm(bench, bus, mon, a, w, label)


@cocotb.test()
async def accumulator_safe_limit(dut):
    """K = max_k, the longest sum the config accepts, at both extremes of the range."""
    bench, bus, rng = await setup(dut)
    cfg = bench.cfg
    if cfg.max_k > bench.safe_limit_k():
        dut._log.info("max_k=%d is long for a bus-driven bench; covered by narrow configs",
                      cfg.max_k)
        return
    mon = BusyMonitor(dut)
    lo = -(2 ** (cfg.act_bits - 1))
    k = cfg.max_k
    a = np.full((2, k), lo)
    w = np.stack([-np.ones(k, int), np.ones(k, int), np.zeros(k, int)], axis=1)  # +max, -max
    expected = ternary_gemm(a, w, cfg.act_bits)
    assert expected.max() == k * 2 ** (cfg.act_bits - 1) <= 2 ** (cfg.acc_bits - 1) - 1
    await check_gemm(bench, bus, mon, a, w, f"K={k} at acc_bits={cfg.acc_bits}")


@cocotb.test()
async def bad_starts_flag_error(dut):
    bench, bus, _ = await setup(dut)
    rm = bus.rm
    good, bads = bench.start_csrs()
    for bad in bads:
        for reg, value in {**good, **bad}.items():
            await bus.write(rm.csr(reg), value)
        await bus.write(rm.csr(Csr.CTRL), CTRL_START)
        status = await bus.read_csr(Csr.STATUS)
        assert status == STATUS_ERROR, f"{bad}: STATUS={status:#x}, expected error only"
    assert (await bus.counters())["tiles"] == 0
    # A good start clears the error.
    for reg, value in good.items():
        await bus.write(rm.csr(reg), value)
    await bus.write(rm.csr(Csr.CTRL), CTRL_START)
    assert await bus.wait_idle() == STATUS_DONE


@cocotb.test()
async def counters_run_and_clear(dut):
    _, bus, _ = await setup(dut)
    first = (await bus.counters())["cycles"]
    second = (await bus.counters())["cycles"]
    assert second > first
    await bus.write(bus.rm.csr(Csr.CTRL), CTRL_CLEAR)
    after = await bus.counters()
    # Reading the ten counter words takes about twenty cycles after the clear.
    assert after["cycles"] < 40 and after["busy_cycles"] == 0 and after["tiles"] == 0


SHARED_TESTS = (identification, random_gemms, corner_cases, accumulator_safe_limit,
                bad_starts_flag_error, counters_run_and_clear)
