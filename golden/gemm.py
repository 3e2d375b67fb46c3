"""Bit-exact integer GEMM: signed activations x ternary weights -> int32."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .checks import InputError, check_int_range, check_matmul_shapes, check_ternary
from .config import ArrayConfig, safe_k

# float32 sums of integers are exact while every partial sum stays below 2**24, and float64
# below 2**53; BLAS float matmul is far faster than NumPy's integer matmul, so pick the
# narrowest float type that is still exact for this K.
_F32_EXACT = 2**24


def ternary_gemm(a: object, w: object, act_bits: int = 8, *, check: bool = True) -> np.ndarray:
    """int32 [M, N] = a [M, K] (signed act_bits) @ w [K, N] (ternary)."""
    if check:
        a = check_int_range("activations", a, act_bits)
        w = check_ternary("weights", w)
        check_matmul_shapes("activations", a, "weights", w)
    a = np.asarray(a)
    w = np.asarray(w)
    k = a.shape[1]
    dtype = np.float32 if k * 2 ** (act_bits - 1) < _F32_EXACT else np.float64
    out = a.astype(dtype) @ w.astype(dtype)
    return out.astype(np.int32)


def code_value(bits: int) -> int:
    """Ternary value of a 2-bit hardware weight code: bit 0 "non-zero", bit 1 "negate".

    Valid codes are the two's complement of the value (00, 01, 11); 10 acts as zero.
    """
    if not bits & 1:
        return 0
    return -1 if bits & 2 else 1


def wrap_signed(value: int, bits: int) -> int:
    """value wrapped to a two's complement integer of `bits` bits, as a register holds it."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def saturate_signed(value: int, bits: int) -> int:
    """value clamped to the range of a `bits`-bit two's complement integer."""
    top = 1 << (bits - 1)
    return min(max(value, -top), top - 1)


def overflow_signed(value: int, bits: int, mode: str) -> int:
    """What a `bits`-bit accumulator holds after an add whose exact result is value:
    saturated for mode "saturate", wrapped otherwise ("wrap", and "safe", where it never
    overflows)."""
    return saturate_signed(value, bits) if mode == "saturate" else wrap_signed(value, bits)


def _wrap_array(x: np.ndarray, bits: int) -> np.ndarray:
    top = np.int64(1) << (bits - 1)
    return ((x + top) & ((top << 1) - 1)) - top


def saturating_sum(terms: np.ndarray, bits: int) -> np.ndarray:
    """[M, N] sums over axis 1 of int terms [M, L, N], added in order into a `bits`-bit
    accumulator that starts at zero and clamps after every add.

    Where no prefix sum leaves the range no clamp ever acts and the plain sum is exact, so only
    the (m, n) whose running sum overflows are walked term by term.
    """
    terms = np.asarray(terms, dtype=np.int64)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    prefix = np.cumsum(terms, axis=1)
    out = prefix[:, -1, :].copy() if terms.shape[1] else np.zeros(
        (terms.shape[0], terms.shape[2]), np.int64)
    bad_m, bad_n = np.nonzero(((prefix < lo) | (prefix > hi)).any(axis=1))
    if bad_m.size:
        run = np.zeros(bad_m.size, np.int64)
        for t in terms[bad_m, :, bad_n].T:      # [L, B]: one step of every bad sum at once
            np.clip(run + t, lo, hi, out=run)
        out[bad_m, bad_n] = run
    return out


def accumulation_chain(cfg: ArrayConfig, k: int) -> int:
    """How many consecutive K terms one on-chip chain sums from zero before the chain's result
    is added into the running output.

    "ws": a K tile's sum runs down the array's rows (one add per PE) and the output buffer adds
    each K tile's result into what the earlier tiles left (hdl/ws_top.py). "os" (and any
    dataflow with one accumulator per output): a single chain over all of K (hdl/os_top.py).
    """
    return cfg.rows if cfg.dataflow == "ws" else k


def array_gemm(cfg: ArrayConfig, a: object, w: object, *, check: bool = True) -> np.ndarray:
    """int64 [M, N]: a [M, K] (signed act_bits) @ w [K, N] (ternary) as the accelerator's
    acc_bits accumulators hold it, with cfg.acc_overflow's behaviour, bit for bit.

    "safe" and "wrap" are the exact sum wrapped to acc_bits (wrapping is modular, so the order
    of the adds does not matter). "saturate" clamps after every add, so the order does: each
    chain of accumulation_chain(cfg, K) terms is summed from zero in K order, clamping at
    each PE, and each chain's result is added, clamping, into the output in K order.
    """
    if check:
        a = check_int_range("activations", a, cfg.act_bits)
        w = check_ternary("weights", w)
        check_matmul_shapes("activations", a, "weights", w)
    a = np.asarray(a, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    k = a.shape[1]
    if k > cfg.max_k:
        raise InputError(f"GEMM reduction K={k} exceeds ArrayConfig.max_k={cfg.max_k}")
    if cfg.acc_overflow != "saturate":
        return _wrap_array(ternary_gemm(a, w, cfg.act_bits, check=False).astype(np.int64),
                           cfg.acc_bits)
    chain = accumulation_chain(cfg, k)
    tiles = -(-k // chain)
    m, n = a.shape[0], w.shape[1]
    # zero terms past K change no saturating sum, so pad K to whole chains
    ap = np.zeros((m, tiles * chain), np.int64)
    ap[:, :k] = a
    wp = np.zeros((tiles * chain, n), np.int64)
    wp[:k] = w
    if chain <= safe_k(cfg.act_bits, cfg.acc_bits):
        # no chain can overflow on its own: its sums are exact, one batched matmul (float64
        # is exact for these integers)
        at = ap.reshape(m, tiles, chain).transpose(1, 0, 2).astype(np.float64)
        part = (at @ wp.reshape(tiles, chain, n).astype(np.float64)).astype(np.int64)
        return saturating_sum(part.transpose(1, 0, 2), cfg.acc_bits)
    out = np.empty((m, n), np.int64)
    # products [M, tiles, chain, N] for a block of columns at a time, about 2**21 of them
    step = max(1, (1 << 21) // max(1, m * tiles * chain))
    for n0 in range(0, n, step):
        wb = wp[:, n0:n0 + step].reshape(tiles, chain, -1)
        terms = ap.reshape(m, tiles, chain, 1) * wb[None]
        part = saturating_sum(terms.reshape(m * tiles, chain, -1), cfg.acc_bits)
        part = part.reshape(m, tiles, -1)
        out[:, n0:n0 + step] = part[:, 0] if tiles == 1 else saturating_sum(part, cfg.acc_bits)
    return out


def weight_codes(w: object, bits: int) -> np.ndarray:
    """Integer weights as the unsigned `bits`-bit two's complement codes a PE's w_in takes
    (ternary at 2 bits: 0 -> 00, +1 -> 01, -1 -> 11)."""
    return np.asarray(w).astype(np.int64) & ((1 << bits) - 1)


# A PE's golden update rule: (psum_in, act, latched weight code, acc_bits) -> the PE's sum.
PEUpdate = Callable[[int, int, int, int], int]


def systolic_gemm(update: PEUpdate, a: object, codes: object, acc_bits: int) -> np.ndarray:
    """int [M, N]: what a weight-stationary array of PEs following `update` produces.

    Column n holds codes[:, n] down its K PEs; vector a[m] enters with a zero partial sum, and
    PE k turns psum into update(psum, a[m, k], codes[k, n], acc_bits).
    """
    a = np.asarray(a)
    codes = np.asarray(codes)
    check_matmul_shapes("activations", a, "weight codes", codes)
    out = np.zeros((a.shape[0], codes.shape[1]), dtype=np.int64)
    for m in range(a.shape[0]):
        for n in range(codes.shape[1]):
            psum = 0
            for k in range(a.shape[1]):
                psum = update(psum, int(a[m, k]), int(codes[k, n]), acc_bits)
            out[m, n] = psum
    return out
