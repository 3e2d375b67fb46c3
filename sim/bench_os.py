"""cocotb bench of the "os" top (hdl/os_top.py): the shared bus-level cases (sim/bench_bus.py)
run start by start (golden.os_model.stream_plan), pass timing, and the DRAM's read-back."""

from __future__ import annotations

from collections.abc import Iterator

import cocotb
import numpy as np

from ..bus.os_regmap import OsCsr
from ..golden.os_model import (
    stream_gemm_events,
    stream_load_cycles,
    stream_passes,
    stream_plan,
    stream_tile_cycles,
)
from .bench_bus import SHARED_TESTS, BusBench, Step, check_gemm, setup, weights
from .benchutil import act_values
from .bus import BusyMonitor

# cocotb collects the tests it finds in this module's namespace.
(identification, random_gemms, corner_cases, accumulator_safe_limit, bad_starts_flag_error,
 counters_run_and_clear) = SHARED_TESTS


def pass_structure_cycles(cfg, m: int, k: int, n: int) -> int:
    """Busy cycles of one start, built from the per-pass model: each row loads, then runs
    stream_tile_cycles for each of its passes."""
    return m * (stream_load_cycles(cfg, k) + sum(
        count * stream_tile_cycles(cfg, k, cols) for cols, count in stream_passes(cfg, n)))


class OsBench(BusBench):
    def steps(self, a: np.ndarray, w: np.ndarray) -> Iterator[Step]:
        cfg, driver = self.cfg, self.driver
        (m, k), n = a.shape, w.shape[1]
        packed = driver.pack(w)
        loaded = None
        for job in stream_plan(cfg, m, k, n):
            load = job.n0 != loaded
            loaded = job.n0

            def queue(prog, job=job, load=load):
                if load:
                    driver.queue_weights(prog, packed, job)
                return driver.queue_job(prog, a, job)

            def place(words, reads, result, job=job):
                block = self.rm.results_of(words[reads], job.n)
                result[job.m0 : job.m0 + job.m, job.n0 : job.n0 + job.n] = block

            want = stream_gemm_events(cfg, w[:, job.n0 : job.n0 + job.n], job.m)
            assert want.cycles == pass_structure_cycles(cfg, job.m, k, job.n)
            yield Step(str(job), queue, want, place)

    def check_whole(self, a, w, total, label) -> None:
        whole = stream_gemm_events(self.cfg, w, a.shape[0])
        assert total == {"busy_cycles": whole.cycles, "macs": whole.macs,
                         "zero_skips": whole.zero_skips, "tiles": whole.tiles}, (label, total)

    def random_shapes(self) -> list[tuple[int, int, int]]:
        cfg = self.cfg
        p = cfg.pes
        k_max = min(cfg.max_k, 40)
        return [
            (1, 1, 1),
            (1, k_max, p),                                  # decode: one full pass
            (1, min(k_max, 2 * cfg.dram_bytes_per_cycle + 3), 2 * p + 1),  # K, N not multiples
            (3, min(k_max, 13), p + max(1, p // 2)),        # M > 1, a partial last pass
            (2, 1, 3 * p - 1 if p > 1 else 3),
        ]

    def corner_shape(self) -> tuple[int, int, int]:
        return 2, min(self.cfg.max_k, 9), self.cfg.pes + 1

    def safe_limit_k(self) -> int:
        return 1024

    def start_csrs(self) -> tuple[dict[int, int], list[dict[int, int]]]:
        return ({OsCsr.M_COUNT: 1, OsCsr.K_COUNT: 1, OsCsr.N_COUNT: 1},
                [{OsCsr.M_COUNT: 0}, {OsCsr.K_COUNT: 0}, {OsCsr.K_COUNT: self.cfg.max_k + 1},
                 {OsCsr.N_COUNT: 0}])


BENCH = OsBench


@cocotb.test()
async def pass_timing(dut):
    """Busy cycles of single starts, pass by pass: one pass of every width 1..P (and K across
    the activation-row boundary), so each term of stream_tile_cycles is exercised alone."""
    bench, bus, rng = await setup(dut)
    cfg = bench.cfg
    mon = BusyMonitor(dut)
    b = cfg.dram_bytes_per_cycle
    widths = sorted({1, 2, cfg.pes // 2, cfg.pes - 1, cfg.pes} - {0})
    for n in widths:
        for k in sorted({1, b - 1, b, b + 1} & set(range(1, cfg.max_k + 1)))[:3]:
            a = act_values(rng, (1, k), cfg.act_bits)
            await check_gemm(bench, bus, mon, a, weights(rng, k, n), f"pass {k}x{n}")


@cocotb.test()
async def dram_read_back(dut):
    """Every word of a spread of DRAM rows (first, last, and random ones) reads back."""
    _, bus, rng = await setup(dut)
    rm = bus.rm
    rows = sorted({0, 1, rm.dram_words - 1, *rng.integers(0, rm.dram_words, 12).tolist()})
    writes = [(rm.dram_addr(r, j), int(rng.integers(0, 2**32)))
              for r in rows for j in range(rm.row_words)]
    await bus.write_many(writes)
    for addr, word in writes:
        got = await bus.read(addr)
        assert got == word, f"address {addr:#x}: read {got:#x}, wrote {word:#x}"
    for reg, value in ((OsCsr.K_COUNT, 7), (OsCsr.N_COUNT, 70000),
                       (OsCsr.O_BASE, rm.dram_words - 1)):
        await bus.write(rm.csr(reg), value)
        assert await bus.read_csr(reg) == value, reg
