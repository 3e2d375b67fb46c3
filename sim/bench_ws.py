"""cocotb bench of the weight-stationary top (hdl/ws_top.py): the shared bus-level cases
(sim/bench_bus.py) run tile by tile, golden.tiling's plan, and the buffers' read-back."""

from __future__ import annotations

from collections.abc import Iterator

import cocotb
import numpy as np

from ..bus.ws_regmap import Csr
from ..golden.cycles import Events, tile_events, ws_run_cycles
from ..golden.tiling import plan_gemm, plan_runs, weight_tile
from .bench_bus import SHARED_TESTS, BusBench, Step, setup

# cocotb collects the tests it finds in this module's namespace.
(identification, random_gemms, corner_cases, accumulator_safe_limit, bad_starts_flag_error,
 counters_run_and_clear) = SHARED_TESTS


class WsBench(BusBench):
    def steps(self, a: np.ndarray, w: np.ndarray) -> Iterator[Step]:
        cfg = self.cfg
        (m, k), n = a.shape, w.shape[1]
        if cfg.weight_buffers == 2:
            yield from self.run_steps(a, w)
            return
        for i, t in enumerate(plan_gemm(cfg, m, k, n)):

            def place(words, reads, result, t=t):
                if t.last_k:
                    block = words[reads].view(np.int32).reshape(t.m, t.n)
                    result[t.m0 : t.m0 + t.m, t.n0 : t.n0 + t.n] = block

            yield Step(f"tile {t}",
                       lambda prog, t=t, i=i: self.driver.queue_tile(
                           prog, a, w, t, slot=i % cfg.weight_tiles),
                       tile_events(cfg, weight_tile(cfg, w, t), t.m), place)

    def run_steps(self, a: np.ndarray, w: np.ndarray) -> Iterator[Step]:
        """Double-buffered top: one step per start, a run of K tiles (golden.tiling.plan_runs)
        taking ws_run_cycles."""
        cfg = self.cfg
        (m, k), n = a.shape, w.shape[1]
        for run in plan_runs(cfg, m, k, n):
            want = Events(cycles=ws_run_cycles(cfg, run.m, len(run.tiles)))
            for t in run.tiles:
                ev = tile_events(cfg, weight_tile(cfg, w, t), t.m)
                want.tiles, want.macs = want.tiles + 1, want.macs + ev.macs
                want.zero_skips += ev.zero_skips

            def place(words, reads, result, run=run):
                if run.last_k:
                    t = run.tiles[0]
                    block = words[reads].view(np.int32).reshape(t.m, t.n)
                    result[t.m0 : t.m0 + t.m, t.n0 : t.n0 + t.n] = block

            yield Step(f"run of {len(run.tiles)} from {run.tiles[0]}",
                       lambda prog, run=run: self.driver.queue_run(prog, a, w, run), want, place)

    def random_shapes(self) -> list[tuple[int, int, int]]:
        r, c, d = self.cfg.rows, self.cfg.cols, self.cfg.act_depth
        return [
            (1, r, c),                                   # one tile, decode-shaped
            (d, 2 * r + 1, c + 1),                       # K and N not multiples
            (d + 3, min(3 * r - 1, self.cfg.max_k), 2 * c - 1 if c > 1 else 2),  # M > depth
            (2, 1, 1),
        ]

    def corner_shape(self) -> tuple[int, int, int]:
        cfg = self.cfg
        return min(3, cfg.act_depth), min(cfg.rows + 1, cfg.max_k), cfg.cols + 1

    def safe_limit_k(self) -> int:
        return 64 * self.cfg.rows

    def start_csrs(self) -> tuple[dict[int, int], list[dict[int, int]]]:
        cfg = self.cfg
        bad = [{Csr.M_COUNT: 0}, {Csr.M_COUNT: cfg.act_depth + 1},
               {Csr.W_TILE: cfg.weight_tiles}]
        if cfg.weight_buffers == 1:
            return {Csr.M_COUNT: 1, Csr.W_TILE: 0}, bad
        # the longest legal run fills the activation buffer exactly
        t = cfg.weight_tiles
        good = {Csr.M_COUNT: cfg.act_depth // t, Csr.W_TILE: t - 1, Csr.K_TILES: t,
                Csr.A_BASE: cfg.act_depth - 1}
        return good, [*bad, {Csr.K_TILES: 0}, {Csr.K_TILES: t + 1},
                      {Csr.M_COUNT: cfg.act_depth // t + 1}, {Csr.A_BASE: cfg.act_depth}]


BENCH = WsBench


@cocotb.test()
async def buffers_read_back(dut):
    bench, bus, rng = await setup(dut)
    cfg, rm = bench.cfg, bus.rm
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
