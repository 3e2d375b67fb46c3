"""Cycle and event model of the RTL, exact per tile (checked against the Verilator-run RTL).

Weight-stationary tile of m activation vectors on an R x C array:
  load   R cycles     one weight row per cycle from the weight buffer into row r's PEs
  stream m + R + C - 2 cycles: vector j enters row 0 at cycle j, is skewed one cycle per row,
                       and the result of column c is written into output bank c at cycle
                       j + (R - 1) + c; the last write ends the tile.
Total 2R + C + m - 2: SCALE-Sim v2's stall-free weight-stationary count for one fold.

Double-buffered weights (ArrayConfig.weight_buffers=2): each PE has a shadow weight register.
One start runs T K tiles of m vectors (golden.tiling.plan_runs). Tile u's weight rows are
written into the shadow registers one row per cycle from cycle L_u; its vector 0 enters row 0
at S_u, and a copy wave moves the shadow into PE (r, c) in cycle S_u - 1 + r + c, riding one
cycle ahead of the tile's first vector. So, counting busy cycles from 0:
  L_0 = 0, S_0 = 2
  L_u+1 = max(L_u + R, S_u + C - 2)   the loader is free, and the wave has left row 0's shadow
  S_u+1 = max(S_u + m, L_u+1 + 2)     the previous tile has entered, and row 0 is loaded
  busy  = S_T-1 + m + R + C - 2       the last vector's result leaves column C-1
With m >= R and m >= C the tiles stream back to back: T*m + R + C cycles for the run.

Events are counted where vectors enter the array: every injected vector makes each PE with a
non-zero weight issue one add/subtract (a "MAC") and each zero-weight PE hold (a "skip").
Padded rows and columns of edge tiles hold zero weights, so they count as skips.

gemm_cycles, gemm_events and gemm_events_from_nnz follow cfg.dataflow through the dataflow
registry (golden/dataflows.py), so callers need not know the dataflow; the ws_* functions are
the "ws" model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .checks import check_ternary
from .config import ArrayConfig
from .tiling import Tile, check_gemm_dims, plan_gemm, plan_runs, run_shape, weight_tile


def tile_cycles(cfg: ArrayConfig, m: int) -> int:
    """Busy cycles of one tile that streams m vectors."""
    return 2 * cfg.rows + cfg.cols + m - 2


def ws_run_cycles(cfg: ArrayConfig, m: int, tiles: int) -> int:
    """Busy cycles of one double-buffered run of `tiles` K tiles streaming m vectors each."""
    r, c = cfg.rows, cfg.cols
    load, start = 0, 2
    for _ in range(tiles - 1):
        load = max(load + r, start + c - 2)
        start = max(start + m, load + 2)
    return start + m + r + c - 2


def load_cycles(cfg: ArrayConfig) -> int:
    return cfg.rows


def column_latency(cfg: ArrayConfig, col: int) -> int:
    """Cycles from a vector entering the array to column col's result (array bench timing)."""
    return cfg.rows - 1 + col


def scalesim_ws_cycles(rows: int, cols: int, m: int, k: int, n: int) -> int:
    """Published SCALE-Sim v2 weight-stationary count, for comparison."""
    return math.ceil(k / rows) * math.ceil(n / cols) * (2 * rows + cols + m - 2)


@dataclass
class Events:
    """Counts the RTL's performance counters report (busy cycles, tiles, MACs, zero skips)."""

    tiles: int = 0
    cycles: int = 0
    macs: int = 0
    zero_skips: int = 0

    def __iadd__(self, other: Events) -> Events:
        self.tiles += other.tiles
        self.cycles += other.cycles
        self.macs += other.macs
        self.zero_skips += other.zero_skips
        return self

    def as_dict(self) -> dict[str, int]:
        return {"tiles": self.tiles, "cycles": self.cycles, "macs": self.macs,
                "zero_skips": self.zero_skips}


def tile_events(cfg: ArrayConfig, codes: np.ndarray, m: int) -> Events:
    """Events of one tile given its padded rows x cols weight codes."""
    nnz = int(np.count_nonzero(codes))
    return Events(tiles=1, cycles=tile_cycles(cfg, m), macs=m * nnz,
                  zero_skips=m * (cfg.pes - nnz))


def _model(cfg: ArrayConfig):
    from .dataflows import dataflow  # the registry imports this module

    return dataflow(cfg.dataflow).model


def gemm_cycles(cfg: ArrayConfig, m: int, k: int, n: int) -> int:
    """Busy cycles of a whole M x K x N GEMM on cfg's dataflow (needs only the shape)."""
    return _model(cfg).gemm_cycles(cfg, m, k, n)


def gemm_events(cfg: ArrayConfig, w: np.ndarray, m: int) -> Events:
    """Events of an M x K x N GEMM with weights w [K, N] on cfg's dataflow; MACs and skips
    depend on the zeros."""
    return _model(cfg).gemm_events(cfg, w, m)


def gemm_events_from_nnz(cfg: ArrayConfig, m: int, k: int, n: int, nnz: int) -> Events:
    """Same totals as gemm_events, from the weight's non-zero count alone, so runtimes need
    not re-tile W."""
    return _model(cfg).gemm_events_from_nnz(cfg, m, k, n, nnz)


def ws_gemm_cycles(cfg: ArrayConfig, m: int, k: int, n: int) -> int:
    """Sum of the tiles' (or runs') cycles in plan order, counted by size class."""
    check_gemm_dims(cfg, m, k, n)
    return ws_gemm_events_from_nnz(cfg, m, k, n, 0).cycles


@dataclass
class GemmEvents(Events):
    per_tile: list[tuple[Tile, Events]] = field(default_factory=list)


def ws_gemm_events(cfg: ArrayConfig, w: np.ndarray, m: int) -> GemmEvents:
    """"ws" events, with the events of each tile listed."""
    w = check_ternary("weights", w)
    k, n = w.shape
    total = GemmEvents()
    if cfg.weight_buffers == 2:
        for run in plan_runs(cfg, m, k, n):
            for t in run.tiles:
                ev = tile_events(cfg, weight_tile(cfg, w, t), t.m)
                ev.cycles = 0
                total += ev
                total.per_tile.append((t, ev))
            total.cycles += ws_run_cycles(cfg, run.m, len(run.tiles))
        return total
    for t in plan_gemm(cfg, m, k, n):
        ev = tile_events(cfg, weight_tile(cfg, w, t), t.m)
        total += ev
        total.per_tile.append((t, ev))
    return total


def ws_gemm_events_from_nnz(cfg: ArrayConfig, m: int, k: int, n: int, nnz: int) -> Events:
    """"ws" totals from the non-zero count (every M chunk streams each of its vectors past
    every tile once)."""
    kt, nt = math.ceil(k / cfg.rows), math.ceil(n / cfg.cols)
    tiles_per_chunk = kt * nt
    total = Events()
    if cfg.weight_buffers == 2:
        mc, t = run_shape(cfg, m, k)
        full, rest = divmod(kt, t)
        for m0 in range(0, m, mc):
            mm = min(mc, m - m0)
            total.tiles += tiles_per_chunk
            total.cycles += nt * (full * ws_run_cycles(cfg, mm, t)
                                  + (ws_run_cycles(cfg, mm, rest) if rest else 0))
        total.macs = m * nnz
        total.zero_skips = m * tiles_per_chunk * cfg.pes - total.macs
        return total
    for m0 in range(0, m, cfg.act_depth):
        mm = min(cfg.act_depth, m - m0)
        total.tiles += tiles_per_chunk
        total.cycles += tiles_per_chunk * tile_cycles(cfg, mm)
    total.macs = m * nnz
    total.zero_skips = m * tiles_per_chunk * cfg.pes - total.macs
    return total
