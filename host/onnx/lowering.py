"""Accelerator nodes lowered to the integer GEMM every backend runs: int8 codes [M, K] times a
ternary weight [K, N] (host/backends.py), then the rescale ONNX defines for the node.

- MatMul-like (MatMulInteger, MatMul, Gemm): the activation's leading axes flatten into M.
- Conv-like (ConvInteger, Conv): im2col. Each output pixel's receptive field (channels of one
  group x kernel taps, dilated, strided, zero-padded in the code domain) becomes one row of
  the [N*out_pixels, C/group*kernel] activation matrix; one GEMM per group.

The activations reach the array as exact integers:
- integer ops: x - x_zero_point, which the partition admits only when it fits int8;
- float ops fed by a QONNX Quant: x / scale, which recovers the Quant's integer codes exactly
  (|code| < 2**22, so the float32 product code*scale divided back rounds to the code); each
  call checks code * scale == x in float32, so a tensor off the grid is an error, never a
  silently different result.
The float rescale is done in float64 on the exact int32 sums and rounded once to the output
dtype: the value ONNX defines (sum of the products of the quantised operands, times alpha,
plus beta * C or the bias), correctly rounded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...golden.checks import InputError
from ..model import ProjStats as NodeStats


@dataclass(frozen=True)
class Grid:
    """How an activation tensor's values map to int8 codes."""

    zero_point: int = 0                # integer ops: code = x - zero_point
    scale: float | None = None         # Quant-fed float ops: code = x / scale
    lo: int = -128
    hi: int = 127
    source: str = ""                   # the Quant node that set the grid (for errors)

    def codes(self, x: np.ndarray, node: str) -> np.ndarray:
        if self.scale is None:
            c = x.astype(np.int16) - np.int16(self.zero_point)
            return c.astype(np.int8)
        s = np.float32(self.scale)
        c = np.rint(x.astype(np.float64) / np.float64(s))
        if c.size and not (np.all(np.isfinite(c)) and c.min() >= self.lo and c.max() <= self.hi
                           and np.array_equal(c.astype(np.float32) * s,
                                              x.astype(np.float32))):
            raise InputError(f"node {node}: its input is not on the grid of {self.source} "
                             f"(codes {self.lo}..{self.hi} times scale {self.scale!r}); "
                             "cannot run it exactly on the accelerator")
        return c.astype(np.int8)


@dataclass(frozen=True)
class ConvGeom:
    """A Conv's geometry over its spatial axes (1-D, 2-D or 3-D)."""

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads: tuple[int, ...]          # begins then ends, as ONNX orders them
    auto_pad: str
    group: int

    def resolved_pads(self, spatial: tuple[int, ...]) -> tuple[list[int], list[int]]:
        d = len(spatial)
        if self.auto_pad == "VALID":
            return [0] * d, [0] * d
        if self.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            begin, end = [], []
            for size, k, s, dil in zip(spatial, self.kernel, self.strides, self.dilations,
                                       strict=True):
                out = -(-size // s)
                total = max(0, (out - 1) * s + (k - 1) * dil + 1 - size)
                small, big = total // 2, total - total // 2
                begin.append(small if self.auto_pad == "SAME_UPPER" else big)
                end.append(big if self.auto_pad == "SAME_UPPER" else small)
            return begin, end
        return list(self.pads[:d]), list(self.pads[d:])

    def out_spatial(self, spatial: tuple[int, ...]) -> tuple[int, ...]:
        begin, end = self.resolved_pads(spatial)
        return tuple((size + b + e - ((k - 1) * dil + 1)) // s + 1
                     for size, b, e, k, s, dil in zip(spatial, begin, end, self.kernel,
                                                      self.strides, self.dilations, strict=True))


def im2col(codes: np.ndarray, geom: ConvGeom) -> tuple[np.ndarray, tuple[int, ...]]:
    """int8 codes [N, C, *spatial] -> patches [group, N*prod(out), C/group*prod(kernel)]
    (row = output pixel, column = (channel, kernel tap) in the weight's order) and the output
    spatial shape. Padding is code 0: x_zero_point for ConvInteger, 0.0 for a Quant-fed Conv."""
    n, c = codes.shape[:2]
    spatial = codes.shape[2:]
    d = len(spatial)
    begin, end = geom.resolved_pads(spatial)
    xp = np.pad(codes, [(0, 0), (0, 0), *zip(begin, end, strict=True)])
    out = geom.out_spatial(spatial)
    span = tuple((k - 1) * dil + 1 for k, dil in zip(geom.kernel, geom.dilations, strict=True))
    win = np.lib.stride_tricks.sliding_window_view(xp, span, axis=tuple(range(2, 2 + d)))
    # [N, C, *positions, *span] -> strided output positions, dilated taps
    sel = (slice(None), slice(None),
           *(slice(None, o * s, s) for o, s in zip(out, geom.strides, strict=True)),
           *(slice(None, None, dil) for dil in geom.dilations))
    win = win[sel]
    # -> [N, *out, C, *kernel]
    perm = (0, *range(2, 2 + d), 1, *range(2 + d, 2 + 2 * d))
    cols = win.transpose(perm).reshape(n * int(np.prod(out, dtype=np.int64)), c,
                                       int(np.prod(geom.kernel, dtype=np.int64)))
    cg = c // geom.group
    groups = np.stack([cols[:, g * cg:(g + 1) * cg].reshape(cols.shape[0], -1)
                       for g in range(geom.group)])
    return np.ascontiguousarray(groups), out


@dataclass
class AccelNode:
    """One ONNX node the accelerator runs: its weight(s) as ternary [K, N] matrices (one per
    conv group), how to read its activation, and how to rescale the int32 sums."""

    name: str
    op: str                          # the ONNX op type
    act: str                         # activation tensor
    grid: Grid
    weights: list[np.ndarray]        # int8 ternary [K, N_group]
    output: str
    out_scale: np.ndarray | None = None   # float64 [N] (None: integer op, int32 out)
    bias: str | None = None               # Gemm C / Conv B tensor
    beta: float = 1.0
    trans_a: bool = False
    conv: ConvGeom | None = None
    prepared: list[Any] = field(default_factory=list)

    @property
    def k(self) -> int:
        return int(self.weights[0].shape[0])

    @property
    def n(self) -> int:
        return sum(int(w.shape[1]) for w in self.weights)

    def prepare(self, backend: Any) -> None:
        self.prepared = [backend.prepare(w, name=f"{self.name}" + (f"/group{g}"
                                                                   if len(self.weights) > 1
                                                                   else ""))
                         for g, w in enumerate(self.weights)]

    def gemm_shapes(self, act_shape: tuple[int, ...]) -> list[tuple[int, int, int, int]]:
        """(M, K, N, nnz) of each GEMM one call runs, for an activation of act_shape."""
        if self.conv is not None:
            pixels = int(np.prod(self.conv.out_spatial(tuple(act_shape[2:])), dtype=np.int64))
            m = int(act_shape[0]) * pixels
        elif self.trans_a:
            m = int(act_shape[1])
        else:
            m = int(np.prod(act_shape[:-1], dtype=np.int64)) if len(act_shape) > 1 else 1
        return [(m, int(w.shape[0]), int(w.shape[1]), int(np.count_nonzero(w)))
                for w in self.weights]

    def _gemm(self, backend: Any, a: np.ndarray, g: int, stats: NodeStats) -> np.ndarray:
        t0 = time.perf_counter()
        acc, events = backend.matmul(a, self.prepared[g])
        stats.add(events, time.perf_counter() - t0)
        return acc

    def run(self, backend: Any, x: np.ndarray, bias: np.ndarray | None,
            stats: NodeStats) -> np.ndarray:
        codes = self.grid.codes(x, self.name)
        if self.conv is not None:
            cols, out = im2col(codes, self.conv)
            parts = [self._gemm(backend, cols[g], g, stats) for g in range(self.conv.group)]
            acc = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
            # [N*pixels, M] -> [N, M, *out]
            acc = acc.reshape(x.shape[0], *out, acc.shape[1])
            acc = np.moveaxis(acc, -1, 1)
        else:
            if self.trans_a:
                codes = codes.T
            lead = codes.shape[:-1]
            a = codes.reshape(-1, codes.shape[-1]) if codes.ndim != 2 else codes
            acc = self._gemm(backend, np.ascontiguousarray(a), 0, stats)
            acc = acc.reshape(*lead, acc.shape[-1])
        if self.out_scale is None:
            return acc
        scale = self.out_scale.reshape((-1,) + (1,) * (acc.ndim - 2)) if self.conv is not None \
            else self.out_scale
        y = (acc.astype(np.float64) * scale).astype(x.dtype)
        if bias is not None:
            b = bias.astype(x.dtype)
            if self.conv is not None:
                b = b.reshape((-1,) + (1,) * (acc.ndim - 2))
            elif self.beta != 1.0:
                b = b * x.dtype.type(self.beta)
            y = y + b
        return y
