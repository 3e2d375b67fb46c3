"""Bit-exact integer GEMM: signed activations x ternary weights -> int32."""

from __future__ import annotations

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


def pe_update(psum_in: int, act: int, code_bits: int, acc_bits: int) -> int:
    """One PE step: add, subtract or pass psum_in by the ternary weight, wrapping at acc_bits."""
    value = psum_in + act * code_value(code_bits)
    mask = (1 << acc_bits) - 1
    value &= mask
    return value - (1 << acc_bits) if value >> (acc_bits - 1) else value
