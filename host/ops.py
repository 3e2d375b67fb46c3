"""The CPU side of a ternary decoder's forward pass, in NumPy float32.

Each op follows transformers' `models/bitnet/modeling_bitnet.py` and `models/llama/
modeling_llama.py` operation by operation (same
order of float32 roundings where NumPy allows it), because the per-token int8 activation
quantisation that feeds every BitLinear rounds at half-integers: a float op done in another
order can move a value across a rounding tie and change an int8 code.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .weights import FloatMatrix

_POOL: ThreadPoolExecutor | None = None


def threads() -> int:
    """Worker threads for the big loops: $TRITIUM_THREADS, else one per core."""
    env = os.environ.get("TRITIUM_THREADS", "")
    return max(1, int(env)) if env.isdigit() else (os.cpu_count() or 1)


def parallel(tasks: list[Callable[[], None]]) -> None:
    """Run independent tasks on a shared thread pool. NumPy releases the GIL inside the
    copies and einsum loops these tasks spend their time in, so they use every core."""
    global _POOL
    if len(tasks) == 1:
        tasks[0]()
        return
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=threads(), thread_name_prefix="tritium")
    for f in [_POOL.submit(t) for t in tasks]:
        f.result()


def split(n: int, parts: int) -> list[tuple[int, int]]:
    """[start, stop) ranges cutting range(n) into at most `parts` near-equal pieces."""
    parts = max(1, min(parts, n))
    return [(i * n // parts, (i + 1) * n // parts) for i in range(parts)]


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """BitNetRMSNorm (= LlamaRMSNorm): x * rsqrt(mean(x^2) + eps), then times the weight,
    all in float32."""
    x = x.astype(np.float32, copy=False)
    variance = np.mean(np.square(x), axis=-1, keepdims=True, dtype=np.float32)
    inv = np.float32(1.0) / np.sqrt(variance + np.float32(eps))
    return weight * (x * inv)


def rope_inv_freq(head_dim: int, theta: float) -> np.ndarray:
    """1 / theta^(2i/d) as BitNetRotaryEmbedding.compute_default_rope_parameters (float32)."""
    exponent = np.arange(0, head_dim, 2, dtype=np.float32) / np.float32(head_dim)
    return (np.float32(1.0) / (np.float32(theta) ** exponent)).astype(np.float32)


def rope_cos_sin(positions: np.ndarray, inv_freq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin [T, head_dim] for the given absolute positions (HF's cat(freqs, freqs) layout).

    The angles are float32 as in transformers; cos and sin are taken in float64 and rounded
    once, so they are the correctly rounded float32 values whatever libm NumPy uses.
    """
    freqs = positions.astype(np.float32)[:, None] * inv_freq[None, :]
    emb = np.concatenate([freqs, freqs], axis=-1).astype(np.float64)
    return np.cos(emb).astype(np.float32), np.sin(emb).astype(np.float32)


def rotate_half(x: np.ndarray) -> np.ndarray:
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def apply_rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """x [heads, T, head_dim] rotated: x * cos + rotate_half(x) * sin."""
    return (x * cos) + (rotate_half(x) * sin)


def softmax(x: np.ndarray) -> np.ndarray:
    m = np.max(x, axis=-1, keepdims=True)
    e = np.exp(x - m)
    return e / np.sum(e, axis=-1, keepdims=True)


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, start: int,
              scaling: float) -> np.ndarray:
    """Causal grouped-query attention as HF's eager_attention_forward.

    q [H, T, D] for positions start..start+T-1; k, v [KV, S, D] for positions 0..S-1 (the cache,
    S = start + T). Query head h reads KV head h // (H // KV), HF's repeat_kv order. Returns
    [T, H * D] (heads concatenated, as attn_output.reshape).
    """
    h, t, d = q.shape
    kv, s, _ = k.shape
    g = h // kv
    # [KV, G*T, D] @ [KV, D, S]: each KV head serves its G query heads without copying K/V
    qg = q.reshape(kv, g * t, d)
    scores = np.matmul(qg, k.transpose(0, 2, 1)) * np.float32(scaling)
    scores = scores.reshape(kv, g, t, s)
    # query i (absolute start + i) sees keys 0..start + i
    masked = np.arange(s)[None, :] > (start + np.arange(t))[:, None]
    if masked.any():
        scores = np.where(masked, np.float32(-np.inf), scores)
    probs = softmax(scores).reshape(kv, g * t, s)
    out = np.matmul(probs, v).reshape(h, t, d)
    return out.transpose(1, 0, 2).reshape(t, h * d)


def relu2(x: np.ndarray) -> np.ndarray:
    """transformers' ReLUSquaredActivation: square(relu(x))."""
    return np.square(np.maximum(x, np.float32(0.0)))


def silu(x: np.ndarray) -> np.ndarray:
    """torch's silu, x * sigmoid(x), as x / (1 + exp(-x)) in float32 (exp overflowing to inf
    for very negative x gives the right limit, -0)."""
    with np.errstate(over="ignore"):
        return x / (np.float32(1.0) + np.exp(-x))


class KVCache:
    """Per-layer keys and values [KV, capacity, D]; grows by doubling, so decode appends are
    amortised O(1) and a step's attention reads a view, not a copy."""

    def __init__(self, layers: int, kv_heads: int, head_dim: int, capacity: int = 16) -> None:
        self.length = 0
        self._shape = (kv_heads, max(capacity, 1), head_dim)
        self.k = [np.zeros(self._shape, np.float32) for _ in range(layers)]
        self.v = [np.zeros(self._shape, np.float32) for _ in range(layers)]

    def update(self, layer: int, k: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Append k, v [KV, T, D] at the current length; return all keys/values so far.
        The caller advances `length` once per forward pass (after the last layer)."""
        t = k.shape[1]
        end = self.length + t
        if end > self.k[layer].shape[1]:
            cap = max(end, 2 * self.k[layer].shape[1])
            for buf in (self.k, self.v):
                grown = np.zeros((self._shape[0], cap, self._shape[2]), np.float32)
                grown[:, : self.length] = buf[layer][:, : self.length]
                buf[layer] = grown
        self.k[layer][:, self.length : end] = k
        self.v[layer][:, self.length : end] = v
        return self.k[layer][:, :end], self.v[layer][:, :end]


class LMHead:
    """logits = h @ W^T over the vocabulary in row blocks, so a bf16 [vocab, hidden] matrix is
    widened to float32 one block at a time into a reused buffer (never a whole float32 copy).

    For a few rows of h (decode) each block is reduced with einsum rather than BLAS: a GEMV
    gains nothing from BLAS, and OpenBLAS's spinning threads cost several times more than the
    GEMV itself whenever another process shares the cores.
    """

    def __init__(self, matrix: FloatMatrix, block_rows: int = 1024, einsum_max_rows: int = 4
                 ) -> None:
        self.matrix = matrix
        self.block_rows = max(1, min(block_rows, matrix.shape[0]))
        self.einsum_max_rows = einsum_max_rows
        self._bufs: list[np.ndarray] = []

    def _dot(self, h: np.ndarray, block: np.ndarray, out: np.ndarray) -> None:
        if h.shape[0] <= self.einsum_max_rows:
            np.einsum("tk,vk->tv", h, block, out=out)
        else:
            np.matmul(h, block.T, out=out)

    def _rows(self, h: np.ndarray, out: np.ndarray, start: int, stop: int, buf: int) -> None:
        for r0 in range(start, stop, self.block_rows):
            r1 = min(stop, r0 + self.block_rows)
            if self.matrix.dtype == "F32":
                block = self.matrix.raw[r0:r1]
            else:
                # zeroed once: bf16 blocks only ever write the high halves of its words
                block = self.matrix.block_into(r0, r1, self._bufs[buf][: r1 - r0],
                                               low_zeroed=True)
            self._dot(h, block, out[:, r0:r1])

    def __call__(self, h: np.ndarray) -> np.ndarray:
        vocab, hidden = self.matrix.shape
        h = np.ascontiguousarray(h, dtype=np.float32)
        out = np.empty((h.shape[0], vocab), np.float32)
        # BLAS threads itself for many rows; a GEMV over the vocabulary is split by hand
        parts = split(vocab, threads() if h.shape[0] <= self.einsum_max_rows else 1)
        while len(self._bufs) < len(parts):
            self._bufs.append(np.zeros((self.block_rows, hidden), np.float32))
        parallel([lambda i=i, a=a, b=b: self._rows(h, out, a, b, i)
                  for i, (a, b) in enumerate(parts)])
        return out
