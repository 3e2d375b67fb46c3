"""Bit-exact integer GEMM: signed activations x ternary weights -> int32."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .checks import check_int_range, check_matmul_shapes, check_ternary

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
