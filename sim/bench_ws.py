"""cocotb bench: the accelerator top, driven over its bus like a host, against golden.

Results come from golden.ternary_gemm, tile order and padding from golden.tiling, busy cycles
and event counts from golden.cycles. Busy cycles are measured twice: by the top's own counter
and by a monitor that watches the `busy` pin, so a wrong counter cannot hide a wrong count.
"""

from __future__ import annotations

import cocotb
import numpy as np

from ..golden.cycles import tile_events
from ..golden.gemm import ternary_gemm
from ..golden.tiling import plan_gemm, weight_tile
from ..hdl import regmap
from ..hdl.regmap import Csr, RegMap
from ..host.driver import Accelerator, Program
from .benchutil import act_values, bench_config, bench_rng, extreme_cases, start
from .bus import BenchDevice, BusMaster, BusyMonitor


async def setup(dut):
    cfg = bench_config()
    await start(dut)
    bus = BusMaster(dut, RegMap(cfg))
    return cfg, bus, bench_rng()


async def check_gemm(dut, cfg, bus: BusMaster, mon: BusyMonitor, a, w, label: str) -> None:
    """Run a tiled GEMM tile by tile; check each tile's cycles and events, then the result."""
    m, k = a.shape
    n = w.shape[1]
    expected = ternary_gemm(a, w, cfg.act_bits)
    result = np.zeros((m, n), dtype=np.int64)
    driver = Accelerator(BenchDevice(cfg), cfg)
    for i, t in enumerate(plan_gemm(cfg, m, k, n)):
        before = await bus.counters()
        busy_before = mon.count
        prog = Program()
        reads = driver.queue_tile(prog, a, w, t, slot=i % cfg.weight_tiles)
        status_at = prog.read(bus.rm.csr(Csr.STATUS))
        words = await bus.execute(prog.as_array())
        status = int(words[status_at])
        assert status & regmap.STATUS_DONE, f"{label}: tile {t} did not set done"
        assert not status & regmap.STATUS_ERROR, f"{label}: tile {t} flagged an error"
        after = await bus.counters()
        want = tile_events(cfg, weight_tile(cfg, w, t), t.m)
        seen = mon.count - busy_before
        assert seen == want.cycles, f"{label}: busy pin high {seen} cycles, golden {want.cycles}"
        got = {name: after[name] - before[name] for name in ("busy_cycles", "macs",
                                                             "zero_skips", "tiles")}
        assert got == {"busy_cycles": want.cycles, "macs": want.macs,
                       "zero_skips": want.zero_skips, "tiles": 1}, (
            f"{label}: tile {t}: counters {got} != golden {want.as_dict()}"
        )
        if t.last_k:
            block = words[reads].view(np.int32).reshape(t.m, t.n)
            result[t.m0 : t.m0 + t.m, t.n0 : t.n0 + t.n] = block
    bad = np.argwhere(result != expected)
    assert bad.size == 0, (
        f"{label}: {len(bad)} results differ from golden, first at {tuple(bad[0])}: "
        f"{result[tuple(bad[0])]} != {expected[tuple(bad[0])]}"
    )


@cocotb.test()
async def identification(dut):
    cfg, bus, _ = await setup(dut)
    assert await bus.read_csr(Csr.ID) == regmap.MAGIC
    assert await bus.read_csr(Csr.VERSION) == regmap.VERSION
    c0, c1 = bus.rm.config_words()
    assert await bus.read_csr(Csr.CONFIG0) == c0
    assert await bus.read_csr(Csr.CONFIG1) == c1
    assert await bus.read_csr(Csr.STATUS) == 0


@cocotb.test()
async def random_gemms(dut):
    cfg, bus, rng = await setup(dut)
    mon = BusyMonitor(dut)
    r, c, d = cfg.rows, cfg.cols, cfg.act_depth
    shapes = [
        (1, r, c),                                   # one tile, decode-shaped
        (d, 2 * r + 1, c + 1),                       # K and N not multiples
        (d + 3, min(3 * r - 1, cfg.max_k), 2 * c - 1 if c > 1 else 2),  # M over act_depth
        (2, 1, 1),
    ]
    for m, k, n in shapes:
        a = act_values(rng, (m, k), cfg.act_bits)
        w = rng.integers(-1, 2, (k, n))
        w[rng.random((k, n)) < 0.3] = 0
        await check_gemm(dut, cfg, bus, mon, a, w, f"random {m}x{k}x{n}")


@cocotb.test()
async def corner_cases(dut):
    cfg, bus, rng = await setup(dut)
    mon = BusyMonitor(dut)
    m, k, n = min(3, cfg.act_depth), min(cfg.rows + 1, cfg.max_k), cfg.cols + 1
    cases = extreme_cases(cfg, rng, m, k, n)
    for label, (a, w) in cases.items():
        await check_gemm(dut, cfg, bus, mon, a, w, label)


@cocotb.test()
async def accumulator_safe_limit(dut):
    """K = max_k, the longest sum the config accepts, at both extremes of the range."""
    cfg, bus, rng = await setup(dut)
    if cfg.max_k > 64 * cfg.rows:
        dut._log.info("max_k=%d is long for a bus-driven bench; covered by narrow configs",
                      cfg.max_k)
        return
    mon = BusyMonitor(dut)
    lo = -(2 ** (cfg.act_bits - 1))
    k = cfg.max_k
    a = np.full((2, k), lo)
    w = np.stack([-np.ones(k, int), np.ones(k, int)], axis=1)  # +max and -max sums
    expected = ternary_gemm(a, w, cfg.act_bits)
    assert expected.max() == k * 2 ** (cfg.act_bits - 1) <= 2 ** (cfg.acc_bits - 1) - 1
    await check_gemm(dut, cfg, bus, mon, a, w, f"K={k} at acc_bits={cfg.acc_bits}")


@cocotb.test()
async def bad_starts_flag_error(dut):
    cfg, bus, rng = await setup(dut)
    rm = bus.rm
    for m_count, w_tile in ((0, 0), (cfg.act_depth + 1, 0), (1, cfg.weight_tiles)):
        await bus.write(rm.csr(Csr.M_COUNT), m_count)
        await bus.write(rm.csr(Csr.W_TILE), w_tile)
        await bus.write(rm.csr(Csr.CTRL), regmap.CTRL_START)
        status = await bus.read_csr(Csr.STATUS)
        assert status == regmap.STATUS_ERROR, (
            f"M_COUNT={m_count}, W_TILE={w_tile}: STATUS={status:#x}, expected error only"
        )
    assert (await bus.counters())["tiles"] == 0
    # A good start clears the error.
    await bus.write(rm.csr(Csr.M_COUNT), 1)
    await bus.write(rm.csr(Csr.W_TILE), 0)
    await bus.write(rm.csr(Csr.CTRL), regmap.CTRL_START)
    status = await bus.wait_idle()
    assert status == regmap.STATUS_DONE


@cocotb.test()
async def buffers_read_back(dut):
    cfg, bus, rng = await setup(dut)
    rm = bus.rm
    writes = []
    for tile in range(cfg.weight_tiles):
        for row in range(cfg.rows):
            for word in range(rm.weight_words):
                writes.append((rm.weight_addr(tile, row, word), int(rng.integers(0, 2**32))))
    for mm in range(cfg.act_depth):
        for word in range(rm.act_words):
            writes.append((rm.act_addr(mm, word), int(rng.integers(0, 2**32))))
    await bus.write_many(writes)
    for addr, word in writes:
        got = await bus.read(addr)
        assert got == word, f"address {addr:#x}: read {got:#x}, wrote {word:#x}"


@cocotb.test()
async def counters_run_and_clear(dut):
    cfg, bus, rng = await setup(dut)
    first = (await bus.counters())["cycles"]
    second = (await bus.counters())["cycles"]
    assert second > first
    await bus.write(bus.rm.csr(Csr.CTRL), regmap.CTRL_CLEAR)
    after = await bus.counters()
    # Reading the ten counter words takes about twenty cycles after the clear.
    assert after["cycles"] < 40 and after["busy_cycles"] == 0 and after["tiles"] == 0
