"""Cycle and event model of the RTL, exact per tile (checked against the Verilator-run RTL).

Weight-stationary tile of m activation vectors on an R x C array:
  load   R cycles     one weight row per cycle from the weight buffer into row r's PEs
  stream m + R + C - 2 cycles: vector j enters row 0 at cycle j, is skewed one cycle per row,
                       and the result of column c is written into output bank c at cycle
                       j + (R - 1) + c; the last write ends the tile.
Total 2R + C + m - 2: SCALE-Sim v2's stall-free weight-stationary count for one fold.

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
from .tiling import Tile, plan_gemm, weight_tile


def tile_cycles(cfg: ArrayConfig, m: int) -> int:
    """Busy cycles of one tile that streams m vectors."""
    return 2 * cfg.rows + cfg.cols + m - 2


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
    return sum(tile_cycles(cfg, t.m) for t in plan_gemm(cfg, m, k, n))


@dataclass
class GemmEvents(Events):
    per_tile: list[tuple[Tile, Events]] = field(default_factory=list)


def ws_gemm_events(cfg: ArrayConfig, w: np.ndarray, m: int) -> GemmEvents:
    """"ws" events, with the events of each tile listed."""
    w = check_ternary("weights", w)
    k, n = w.shape
    total = GemmEvents()
    for t in plan_gemm(cfg, m, k, n):
        ev = tile_events(cfg, weight_tile(cfg, w, t), t.m)
        total += ev
        total.per_tile.append((t, ev))
    return total


def ws_gemm_events_from_nnz(cfg: ArrayConfig, m: int, k: int, n: int, nnz: int) -> Events:
    """"ws" totals from the non-zero count (every M chunk streams each of its vectors past
    every tile once)."""
    tiles_per_chunk = math.ceil(k / cfg.rows) * math.ceil(n / cfg.cols)
    total = Events()
    for m0 in range(0, m, cfg.act_depth):
        mm = min(cfg.act_depth, m - m0)
        total.tiles += tiles_per_chunk
        total.cycles += tiles_per_chunk * tile_cycles(cfg, mm)
    total.macs = m * nnz
    total.zero_skips = m * tiles_per_chunk * cfg.pes - total.macs
    return total
