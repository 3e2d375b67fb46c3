"""cocotb bench: the "os" top (hdl/stream_top.py), driven over its bus like a host, against golden.

Programs come from the host driver (host/stream_driver.py), results from golden.ternary_gemm,
busy cycles and event counts from golden.stream. Busy cycles are measured twice per start: by
the top's own counter and by a monitor that watches the `busy` pin.
"""

from __future__ import annotations

import cocotb
import numpy as np

from ..golden.gemm import ternary_gemm
from ..golden.stream import (
    stream_gemm_events,
    stream_load_cycles,
    stream_passes,
    stream_plan,
    stream_tile_cycles,
)
from ..hdl import stream_regmap as srm
from ..hdl.stream_regmap import StreamCsr, StreamRegMap
from ..host.driver import Program
from ..host.stream_driver import StreamAccelerator
from .benchutil import act_values, bench_config, bench_rng, extreme_cases, start
from .bus import BenchDevice, BusMaster, BusyMonitor


async def setup(dut):
    cfg = bench_config()
    await start(dut)
    bus = BusMaster(dut, StreamRegMap(cfg))
    return cfg, bus, bench_rng()


def pass_structure_cycles(cfg, m: int, k: int, n: int) -> int:
    """Busy cycles of one start, built from the per-pass model: each row loads, then runs
    stream_tile_cycles for each of its passes."""
    return m * (stream_load_cycles(cfg, k) + sum(
        count * stream_tile_cycles(cfg, k, cols) for cols, count in stream_passes(cfg, n)))


async def check_gemm(dut, cfg, bus: BusMaster, mon: BusyMonitor, a, w, label: str) -> None:
    """Run a GEMM start by start (golden.stream.stream_plan); check each start's busy cycles
    and events, then the result."""
    m, k = a.shape
    n = w.shape[1]
    expected = ternary_gemm(a, w, cfg.act_bits)
    result = np.zeros((m, n), dtype=np.int64)
    driver = StreamAccelerator(BenchDevice(cfg), cfg)
    packed = driver.pack(w)
    loaded = None
    total = {"busy_cycles": 0, "macs": 0, "zero_skips": 0, "tiles": 0}
    for job in stream_plan(cfg, m, k, n):
        prog = Program()
        if job.n0 != loaded:
            driver.queue_weights(prog, packed, job)
            loaded = job.n0
        before = await bus.counters()
        busy_before = mon.count
        reads = driver.queue_job(prog, a, job)
        status_at = prog.read(bus.rm.csr(StreamCsr.STATUS))
        words = await bus.execute(prog.as_array())
        status = int(words[status_at])
        assert status & srm.STATUS_DONE, f"{label}: {job} did not set done"
        assert not status & srm.STATUS_ERROR, f"{label}: {job} flagged an error"
        after = await bus.counters()
        want = stream_gemm_events(cfg, w[:, job.n0 : job.n0 + job.n], job.m)
        assert want.cycles == pass_structure_cycles(cfg, job.m, k, job.n)
        seen = mon.count - busy_before
        assert seen == want.cycles, f"{label}: busy pin high {seen} cycles, golden {want.cycles}"
        got = {name: after[name] - before[name] for name in total}
        assert got == {"busy_cycles": want.cycles, "macs": want.macs,
                       "zero_skips": want.zero_skips, "tiles": want.tiles}, (
            f"{label}: {job}: counters {got} != golden {want.as_dict()}"
        )
        for name in total:
            total[name] += got[name]
        block = driver.map.results_of(words[reads], job.n)
        result[job.m0 : job.m0 + job.m, job.n0 : job.n0 + job.n] = block
    whole = stream_gemm_events(cfg, w, m)
    assert total == {"busy_cycles": whole.cycles, "macs": whole.macs,
                     "zero_skips": whole.zero_skips, "tiles": whole.tiles}, (label, total)
    bad = np.argwhere(result != expected)
    assert bad.size == 0, (
        f"{label}: {len(bad)} results differ from golden, first at {tuple(bad[0])}: "
        f"{result[tuple(bad[0])]} != {expected[tuple(bad[0])]}"
    )


def _weights(rng, k: int, n: int, zeros: float = 0.3) -> np.ndarray:
    w = rng.integers(-1, 2, (k, n))
    w[rng.random((k, n)) < zeros] = 0
    return w


@cocotb.test()
async def identification(dut):
    cfg, bus, _ = await setup(dut)
    assert await bus.read_csr(StreamCsr.ID) == srm.MAGIC
    assert await bus.read_csr(StreamCsr.VERSION) == srm.VERSION
    assert await bus.read_csr(StreamCsr.DATAFLOW) == srm.DATAFLOW_OS
    for reg, word in zip((StreamCsr.CONFIG0, StreamCsr.CONFIG1, StreamCsr.CONFIG2),
                         bus.rm.config_words(), strict=True):
        assert await bus.read_csr(reg) == word, reg
    assert await bus.read_csr(StreamCsr.STATUS) == 0


@cocotb.test()
async def random_gemms(dut):
    cfg, bus, rng = await setup(dut)
    mon = BusyMonitor(dut)
    p = cfg.pes
    k_max = min(cfg.max_k, 40)
    shapes = [
        (1, 1, 1),
        (1, k_max, p),                                  # decode: one full pass
        (1, min(k_max, 2 * cfg.dram_bytes_per_cycle + 3), 2 * p + 1),   # K, N not multiples
        (3, min(k_max, 13), p + max(1, p // 2)),        # M > 1, a partial last pass
        (2, 1, 3 * p - 1 if p > 1 else 3),
    ]
    for m, k, n in shapes:
        a = act_values(rng, (m, k), cfg.act_bits)
        await check_gemm(dut, cfg, bus, mon, a, _weights(rng, k, n), f"random {m}x{k}x{n}")


@cocotb.test()
async def pass_timing(dut):
    """Busy cycles of single starts, pass by pass: one pass of every width 1..P (and K across
    the activation-row boundary), so each term of stream_tile_cycles is exercised alone."""
    cfg, bus, rng = await setup(dut)
    mon = BusyMonitor(dut)
    b = cfg.dram_bytes_per_cycle
    widths = sorted({1, 2, cfg.pes // 2, cfg.pes - 1, cfg.pes} - {0})
    for n in widths:
        for k in sorted({1, b - 1, b, b + 1} & set(range(1, cfg.max_k + 1)))[:3]:
            a = act_values(rng, (1, k), cfg.act_bits)
            await check_gemm(dut, cfg, bus, mon, a, _weights(rng, k, n), f"pass {k}x{n}")


@cocotb.test()
async def corner_cases(dut):
    cfg, bus, rng = await setup(dut)
    mon = BusyMonitor(dut)
    m, k, n = 2, min(cfg.max_k, 9), cfg.pes + 1
    cases = extreme_cases(cfg, rng, m, k, n)
    for label, (a, w) in cases.items():
        await check_gemm(dut, cfg, bus, mon, a, w, label)


@cocotb.test()
async def accumulator_safe_limit(dut):
    """K = max_k, the longest sum the config accepts, at both extremes of the range."""
    cfg, bus, rng = await setup(dut)
    if cfg.max_k > 1024:
        dut._log.info("max_k=%d is long for a bus-driven bench; covered by narrow configs",
                      cfg.max_k)
        return
    mon = BusyMonitor(dut)
    lo = -(2 ** (cfg.act_bits - 1))
    k = cfg.max_k
    a = np.full((1, k), lo)
    w = np.stack([-np.ones(k, int), np.ones(k, int), np.zeros(k, int)], axis=1)
    expected = ternary_gemm(a, w, cfg.act_bits)
    assert expected.max() == k * 2 ** (cfg.act_bits - 1) <= 2 ** (cfg.acc_bits - 1) - 1
    await check_gemm(dut, cfg, bus, mon, a, w, f"K={k} at acc_bits={cfg.acc_bits}")


@cocotb.test()
async def bad_starts_flag_error(dut):
    cfg, bus, rng = await setup(dut)
    rm = bus.rm
    good = {StreamCsr.M_COUNT: 1, StreamCsr.K_COUNT: 1, StreamCsr.N_COUNT: 1}
    for reg, bad in ((StreamCsr.M_COUNT, 0), (StreamCsr.K_COUNT, 0),
                     (StreamCsr.K_COUNT, cfg.max_k + 1), (StreamCsr.N_COUNT, 0)):
        for r, v in {**good, reg: bad}.items():
            await bus.write(rm.csr(r), v)
        await bus.write(rm.csr(StreamCsr.CTRL), srm.CTRL_START)
        status = await bus.read_csr(StreamCsr.STATUS)
        assert status == srm.STATUS_ERROR, (
            f"{reg.name}={bad}: STATUS={status:#x}, expected error only")
    assert (await bus.counters())["tiles"] == 0
    # A good start clears the error.
    for r, v in good.items():
        await bus.write(rm.csr(r), v)
    await bus.write(rm.csr(StreamCsr.CTRL), srm.CTRL_START)
    assert await bus.wait_idle() == srm.STATUS_DONE


@cocotb.test()
async def dram_read_back(dut):
    """Every word of a spread of DRAM rows (first, last, and random ones) reads back."""
    cfg, bus, rng = await setup(dut)
    rm = bus.rm
    rows = sorted({0, 1, rm.dram_words - 1, *rng.integers(0, rm.dram_words, 12).tolist()})
    writes = [(rm.dram_addr(r, j), int(rng.integers(0, 2**32)))
              for r in rows for j in range(rm.row_words)]
    await bus.write_many(writes)
    for addr, word in writes:
        got = await bus.read(addr)
        assert got == word, f"address {addr:#x}: read {got:#x}, wrote {word:#x}"
    for reg, value in ((StreamCsr.K_COUNT, 7), (StreamCsr.N_COUNT, 70000),
                       (StreamCsr.O_BASE, rm.dram_words - 1)):
        await bus.write(rm.csr(reg), value)
        assert await bus.read_csr(reg) == value, reg


@cocotb.test()
async def counters_run_and_clear(dut):
    cfg, bus, rng = await setup(dut)
    first = (await bus.counters())["cycles"]
    second = (await bus.counters())["cycles"]
    assert second > first
    await bus.write(bus.rm.csr(StreamCsr.CTRL), srm.CTRL_CLEAR)
    after = await bus.counters()
    assert after["cycles"] < 40 and after["busy_cycles"] == 0 and after["tiles"] == 0
