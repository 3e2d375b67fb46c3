"""Base-3 ternary weight packing: five weights per byte, 1.6 bits per weight.

3^5 = 243 <= 256, so five ternary digits fit one byte. The byte does not hold the base-3 number
v itself but, as llama.cpp's TQ1_0 does, ``q = ceil(v * 256 / 243)``: v scaled to a fraction of
256. Then the digits come out most significant first by ``t = 3x; d = t >> 8; x = t & 255``,
five times, which needs no division and no table; ``3x = (x << 1) + x`` is one adder, so a
hardware decoder is adders and wires only (`decode_byte_adder_only` spells that out and the
tests check it against the arithmetic for all 243 values).

Layout: a ternary tensor is flattened (row-major for a matrix) into a stream of codes
``d = value + 1`` (0 -> -1, 1 -> 0, 2 -> +1); byte j holds codes 5j .. 5j+4, code 5j as the most
significant base-3 digit. A stream whose length is not a multiple of 5 is padded with code 1
(weight 0), so padding never adds to a sum.
"""

from __future__ import annotations

import numpy as np

from .checks import InputError, check_ternary
from .packing import unpack_hf, unpack_i2s

TRITS_PER_BYTE = 5
BITS_PER_WEIGHT = 8 / TRITS_PER_BYTE  # 1.6
_POWERS = np.array([81, 27, 9, 3, 1], dtype=np.int32)
_PAD_CODE = 1  # weight 0


def packed_bytes(n: int) -> int:
    """Bytes that hold n base-3 packed weights."""
    return -(-n // TRITS_PER_BYTE)


def _encode(codes: np.ndarray) -> np.ndarray:
    """[n, 5] codes 0..2 -> uint8 [n] with q = ceil(v * 256 / 243)."""
    v = codes.astype(np.int32) @ _POWERS
    return ((v * 256 + 242) // 243).astype(np.uint8)


def _decode(q: np.ndarray) -> np.ndarray:
    """uint8 [n] -> codes [n, 5], by the shift-and-add recurrence of the module docstring."""
    x = q.astype(np.int32)
    digits = np.empty((x.size, TRITS_PER_BYTE), dtype=np.int8)
    for i in range(TRITS_PER_BYTE):
        t = x * 3
        digits[:, i] = t >> 8
        x = t & 255
    return digits


def decode_byte_adder_only(q: int) -> tuple[int, ...]:
    """One byte's five codes as the hardware decoder computes them: shifts, adds and masks."""
    x = q & 0xFF
    out = []
    for _ in range(TRITS_PER_BYTE):
        t = (x << 1) + x
        out.append(t >> 8)
        x = t & 0xFF
    return tuple(out)


def pack_base3(w: object, *, name: str = "weight") -> np.ndarray:
    """Ternary int array (any shape, flattened row-major) -> uint8 [ceil(n / 5)]."""
    arr = np.asarray(w)
    q = check_ternary(name, arr.reshape(-1), 1)
    if q.size == 0:
        raise InputError(f"{name} must hold at least one weight, got shape {arr.shape}")
    codes = np.full(packed_bytes(q.size) * TRITS_PER_BYTE, _PAD_CODE, dtype=np.int8)
    codes[: q.size] = q + 1
    return _encode(codes.reshape(-1, TRITS_PER_BYTE))


def unpack_base3(packed: object, shape: int | tuple[int, ...], *, name: str = "weight"
                 ) -> np.ndarray:
    """uint8 [ceil(n / 5)] -> int8 ternary of `shape` (n = its size); inverse of `pack_base3`.

    Raises InputError for the wrong byte count, for one of the 13 byte values no five digits
    encode to, and for padding that is not weight 0."""
    if not isinstance(packed, np.ndarray) or packed.dtype != np.uint8 or packed.ndim != 1:
        got = (f"{packed.dtype} array of shape {packed.shape}" if isinstance(packed, np.ndarray)
               else type(packed).__name__)
        raise InputError(f"{name} must be a 1-D uint8 array of base-3 bytes, got {got}")
    dims = (shape,) if isinstance(shape, int | np.integer) else tuple(shape)
    if not dims or not all(isinstance(d, int | np.integer) and not isinstance(d, bool) and d > 0
                           for d in dims):
        raise InputError(f"shape of {name} must be positive ints, got {shape!r}")
    n = int(np.prod(dims))
    if packed.size != packed_bytes(n):
        raise InputError(f"{name} has {packed.size} bytes; {n} weights of shape {dims} need "
                         f"{packed_bytes(n)} at 5 per byte")
    codes = _decode(packed)
    bad = np.nonzero(_encode(codes) != packed)[0]
    if bad.size:
        j = int(bad[0])
        raise InputError(f"{name} byte {j} (0x{int(packed[j]):02x}) is not a base-3 code: no "
                         "five ternary digits encode to it")
    flat = codes.reshape(-1)
    if np.any(flat[n:] != _PAD_CODE):
        raise InputError(f"{name} has non-zero padding weights after weight {n - 1}")
    return (flat[:n] - 1).astype(np.int8).reshape(dims)


def hf_to_base3(packed: np.ndarray, out_features: int | None = None, *, name: str = "weight"
                ) -> np.ndarray:
    """HF packed uint8 [out/4, in] -> base-3 bytes of the [out, in] matrix (row-major)."""
    return pack_base3(unpack_hf(packed, out_features, name=name), name=name)


def i2s_to_base3(data: bytes, shape: tuple[int, int], *, name: str = "I2_S data"
                 ) -> tuple[np.ndarray, float]:
    """bitnet.cpp I2_S tensor data -> (base-3 bytes of the [out, in] matrix, scale)."""
    w, scale = unpack_i2s(data, shape, name=name)
    return pack_base3(w, name=name), scale
