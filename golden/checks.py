"""Input validation shared by every layer: errors name the tensor and what was expected."""

from __future__ import annotations

import numpy as np


class InputError(ValueError):
    """A tensor handed to tritium has the wrong shape, dtype or values."""


def as_int_array(name: str, x: object, ndim: int) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != ndim:
        raise InputError(f"{name} must be a {ndim}-D array, got shape {arr.shape}")
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and arr.size and np.all(np.isfinite(arr)) \
                and np.array_equal(arr, np.round(arr)):
            return arr.astype(np.int64)
        raise InputError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr


def check_ternary(name: str, w: object, ndim: int = 2) -> np.ndarray:
    """Return w as int8 after checking every value is -1, 0 or +1."""
    arr = as_int_array(name, w, ndim)
    bad = (arr < -1) | (arr > 1)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputError(
            f"{name} must be ternary (-1, 0, +1); found {int(arr[idx])} at index {idx}"
        )
    return arr.astype(np.int8)


def check_int_range(name: str, a: object, bits: int, ndim: int = 2) -> np.ndarray:
    """Return a as int16 after checking it fits a signed `bits`-bit integer."""
    arr = as_int_array(name, a, ndim)
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    bad = (arr < lo) | (arr > hi)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputError(
            f"{name} must be int{bits} values in [{lo}, {hi}]; found {int(arr[idx])} at index {idx}"
        )
    return arr.astype(np.int16)


def check_matmul_shapes(a_name: str, a: np.ndarray, w_name: str, w: np.ndarray) -> None:
    if a.shape[1] != w.shape[0]:
        raise InputError(
            f"shape mismatch: {a_name} is {a.shape} (M x K) but {w_name} is {w.shape} (K x N); "
            f"K must agree ({a.shape[1]} != {w.shape[0]})"
        )


def check_scale(name: str, value: object, *, allow_zero: bool = False) -> np.float32:
    """One real number (a plain number or a one-element array, as HF stores weight_scale) as
    float32, finite and > 0 (>= 0 with allow_zero)."""
    arr = np.asarray(value)
    if (
        arr.size != 1
        or arr.dtype == np.bool_
        or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer))
    ):
        raise InputError(
            f"{name} must be one real number, got {type(value).__name__} "
            f"with shape {arr.shape} and dtype {arr.dtype}"
        )
    with np.errstate(over="ignore"):
        v = np.float32(arr.reshape(()))
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise InputError(f"{name} must be finite and {bound} in float32, got {arr.reshape(())}")
    return v
