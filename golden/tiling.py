"""How a GEMM is cut into array tiles: the order the hardware runs them in, and their padding."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .checks import InputError
from .config import ArrayConfig


@dataclass(frozen=True)
class Tile:
    """One array pass: rows m0:m0+m of A against W[k0:k0+k, n0:n0+n].

    accumulate: add into the output buffer (every K tile but the first of an output block).
    last_k: the output block is complete after this tile and can be read back.
    """

    m0: int
    m: int
    k0: int
    k: int
    n0: int
    n: int
    accumulate: bool
    last_k: bool


def check_gemm_dims(cfg: ArrayConfig, m: int, k: int, n: int) -> None:
    for name, value in (("M", m), ("K", k), ("N", n)):
        if value < 1:
            raise InputError(f"GEMM dimension {name} must be >= 1, got {value}")
    if k > cfg.max_k:
        raise InputError(
            f"GEMM reduction K={k} exceeds ArrayConfig.max_k={cfg.max_k}, the longest sum "
            f"acc_bits={cfg.acc_bits} holds safely"
        )


def plan_gemm(cfg: ArrayConfig, m: int, k: int, n: int) -> list[Tile]:
    """Tiles in execution order: M chunks (act_depth), then N tiles, then K tiles (innermost,
    so partial sums accumulate in the output buffer without leaving the chip)."""
    check_gemm_dims(cfg, m, k, n)
    r, c = cfg.rows, cfg.cols
    tiles = []
    for m0 in range(0, m, cfg.act_depth):
        mm = min(cfg.act_depth, m - m0)
        for n0 in range(0, n, c):
            nn = min(c, n - n0)
            for k0 in range(0, k, r):
                kk = min(r, k - k0)
                tiles.append(Tile(m0, mm, k0, kk, n0, nn, accumulate=k0 > 0, last_k=k0 + r >= k))
    return tiles


def weight_tile(cfg: ArrayConfig, w: np.ndarray, t: Tile) -> np.ndarray:
    """rows x cols ternary codes of W for tile t, zero-padded at the K and N edges."""
    out = np.zeros((cfg.rows, cfg.cols), dtype=np.int8)
    out[: t.k, : t.n] = w[t.k0 : t.k0 + t.k, t.n0 : t.n0 + t.n]
    return out


def act_tile(cfg: ArrayConfig, a: np.ndarray, t: Tile) -> np.ndarray:
    """m x rows activations for tile t, zero-padded at the K edge."""
    out = np.zeros((t.m, cfg.rows), dtype=np.int16)
    out[:, : t.k] = a[t.m0 : t.m0 + t.m, t.k0 : t.k0 + t.k]
    return out


@dataclass(frozen=True)
class Run:
    """One start of a double-buffered ("weight_buffers=2") ws top: K tiles of one output block
    streamed back to back, all with the same m, each accumulating into the block after the
    first (the first accumulates too when an earlier run of the block came before).

    Tile i takes weight slot (slot + i) mod weight_tiles and activation entries
    (act_base + i*m ...) mod act_depth, the ring the RTL reads.
    """

    tiles: tuple[Tile, ...]
    slot: int
    act_base: int

    @property
    def m(self) -> int:
        return self.tiles[0].m

    @property
    def accumulate(self) -> bool:
        return self.tiles[0].accumulate

    @property
    def last_k(self) -> bool:
        return self.tiles[-1].last_k


def run_shape(cfg: ArrayConfig, m: int, k: int) -> tuple[int, int]:
    """(rows per M chunk, K tiles per run) of the double-buffered plan.

    Half the weight slots and half the activation entries hold one run, so the next run's
    weights and activations can be written into the other half while it streams. Among the
    shapes that fit, the one with the fewest busy cycles wins (fewer weight reloads on a tie)."""
    from .cycles import ws_run_cycles  # cycles imports this module

    kt = -(-k // cfg.rows)
    slots = max(1, cfg.weight_tiles // 2)
    entries = max(1, cfg.act_depth // 2)
    best: tuple[int, int, int] | None = None
    for t in range(1, min(kt, slots) + 1):
        mc = min(m, entries // t)
        if mc < 1:
            break
        total = 0
        for mm, mcount in _pieces(m, mc):
            for tt, tcount in _pieces(kt, t):
                total += mcount * tcount * ws_run_cycles(cfg, mm, tt)
        if best is None or total < best[0]:
            best = (total, mc, t)
    assert best is not None
    return best[1], best[2]


def _pieces(total: int, size: int) -> list[tuple[int, int]]:
    full, rest = divmod(total, size)
    return [(size, full)] * (full > 0) + [(rest, 1)] * (rest > 0)


def plan_runs(cfg: ArrayConfig, m: int, k: int, n: int) -> list[Run]:
    """Runs in execution order for weight_buffers=2: M chunks, then N tiles, then runs of
    consecutive K tiles (K innermost, so partial sums stay in the output buffer). Consecutive
    runs alternate between the two halves of the weight slots and activation entries."""
    check_gemm_dims(cfg, m, k, n)
    mc, t = run_shape(cfg, m, k)
    r, c = cfg.rows, cfg.cols
    half_slots, half_entries = cfg.weight_tiles // 2, cfg.act_depth // 2
    runs = []
    for m0 in range(0, m, mc):
        mm = min(mc, m - m0)
        for n0 in range(0, n, c):
            nn = min(c, n - n0)
            k0s = list(range(0, k, r))
            for i in range(0, len(k0s), t):
                tiles = tuple(Tile(m0, mm, k0, min(r, k - k0), n0, nn, accumulate=k0 > 0,
                                   last_k=k0 + r >= k) for k0 in k0s[i : i + t])
                half = len(runs) % 2
                runs.append(Run(tiles, half * half_slots, half * half_entries))
    return runs
