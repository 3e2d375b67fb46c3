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
