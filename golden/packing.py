"""Ternary weight storage formats: the Hugging Face packed BitNet layout and bitnet.cpp's I2_S.

Both store 2 bits per weight as ``code = value + 1`` (0 -> -1, 1 -> 0, 2 -> +1; 3 is invalid)
and differ only in where each code goes.

HF (`transformers/integrations/bitnet.py`, `pack_weights` / `unpack_weights`): a ternary
[out, in] matrix becomes uint8 [P, in] with ``P = ceil(out / 4)``; bits ``[2i+1:2i]`` of packed
row p hold output row ``i * P + p`` (four contiguous blocks of P rows, not interleaved). When
out is not a multiple of 4 the last block is short and the missing slots hold code 0, which
`unpack_weights` turns into rows of -1: it always returns 4P rows and leaves trimming to the
caller (`unpack_hf` trims when given out_features).

I2_S (bitnet.cpp, x86 variant): see `pack_i2s`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .checks import InputError, check_scale, check_ternary

VALUES_PER_BYTE = 4
I2S_BLOCK = 128  # weights per I2_S block (QK_I2_S on x86)
I2S_BLOCK_BYTES = I2S_BLOCK // VALUES_PER_BYTE
# ggml_nbytes(I2_S) = n/4 + 32: the fp32 scale, then zero padding to keep 32-byte alignment
I2S_TRAILER = 32
_SCALE_BYTES = 4

# HF: slot i of a byte sits at bits [2i+1:2i]
_HF_SHIFTS = np.array([0, 2, 4, 6], dtype=np.uint8)
# I2_S: group g (weights 32g..32g+31 of a block) sits at bits [7-2g:6-2g]
_I2S_SHIFTS = np.array([6, 4, 2, 0], dtype=np.uint8)


def _codes(name: str, w: object) -> np.ndarray:
    q = check_ternary(name, w, 2)
    if q.shape[0] == 0 or q.shape[1] == 0:
        raise InputError(f"{name} must be a non-empty [out, in] matrix, got shape {q.shape}")
    return (q + 1).astype(np.uint8)


def _check_codes(name: str, codes: np.ndarray, locate: Callable[[int, int], str]) -> None:
    """Raise on the first 2-bit code 3 (neither -1, 0 nor +1) in the unpacked [out, in] codes."""
    bad = codes == 3
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise InputError(
            f"{name} holds the invalid 2-bit code 3 (valid: 0, 1, 2 for -1, 0, +1) at weight "
            f"(row {row}, col {col}), stored in {locate(row, col)}"
        )


def pack_hf(w: np.ndarray, *, name: str = "weight") -> np.ndarray:
    """Ternary int [out, in] -> uint8 [ceil(out/4), in], byte-identical to `pack_weights`."""
    codes = _codes(name, w)
    out, cols = codes.shape
    p = -(-out // VALUES_PER_BYTE)
    padded = np.zeros((VALUES_PER_BYTE * p, cols), dtype=np.uint8)
    padded[:out] = codes
    blocks = padded.reshape(VALUES_PER_BYTE, p, cols)
    return np.bitwise_or.reduce(blocks << _HF_SHIFTS[:, None, None], axis=0)


def unpack_hf(
    packed: np.ndarray, out_features: int | None = None, *, name: str = "weight"
) -> np.ndarray:
    """uint8 [P, in] in the HF layout -> int8 [out_features, in] (default 4P, as `unpack_weights`).

    out_features must lie in 4P-3 .. 4P; the padding slots beyond it are ignored.
    """
    if not isinstance(packed, np.ndarray):
        raise InputError(f"{name} must be a numpy uint8 array, got {type(packed).__name__}")
    if packed.dtype != np.uint8:
        raise InputError(f"{name} must be packed uint8 (4 weights per byte), got {packed.dtype}")
    if packed.ndim != 2 or packed.shape[0] == 0 or packed.shape[1] == 0:
        raise InputError(f"{name} must be a non-empty 2-D [out/4, in] array, got {packed.shape}")
    p, cols = packed.shape
    rows = VALUES_PER_BYTE * p
    if out_features is None:
        out_features = rows
    if isinstance(out_features, bool) or not isinstance(out_features, int | np.integer):
        raise InputError(f"out_features of {name} must be an int, got {out_features!r}")
    if not rows - VALUES_PER_BYTE < out_features <= rows:
        raise InputError(
            f"out_features={out_features} does not fit {name} of packed shape {packed.shape}: "
            f"{p} packed rows hold {rows - VALUES_PER_BYTE + 1}..{rows} output rows"
        )
    # [4, P, in] reshaped to [4P, in] puts slot i of packed row p at row i*P + p
    codes = ((packed[None, :, :] >> _HF_SHIFTS[:, None, None]) & 3).reshape(rows, cols)
    codes = codes[:out_features]
    _check_codes(
        name, codes, lambda r, c: f"{name}[{r % p}, {c}] bits [{2 * (r // p) + 1}:{2 * (r // p)}]"
    )
    return codes.astype(np.int8) - 1


def pack_i2s(w: np.ndarray, scale: float, *, name: str = "weight") -> bytes:
    """Ternary int [out, in] and its scale -> bitnet.cpp I2_S tensor data (x86 layout).

    Layout, from `quantize_i2_s` in microsoft/BitNet `src/ggml-bitnet-mad.cpp` (x86 branch,
    QK_I2_S = 128), checked against the AVX2 `ggml_vec_dot_i2_i8_s` that reads it (some
    versions of its ARM branch use 64-weight blocks of 16 bytes instead; not supported here):

    - the [out, in] matrix is flattened row-major (ggml ne0 = in, ne1 = out) and cut into
      blocks of 128 weights, each stored in 32 bytes;
    - in block b, byte ``32*b + k`` (k = 0..31) holds weights ``128*b + 32*g + k`` for
      g = 0..3 at bits ``[7-2g:6-2g]``: weight k in bits 7:6, k+32 in 5:4, k+64 in 3:2 and
      k+96 in 1:0 (the kernel takes ``x >> 6 & 3`` against activations 0..31 of the block);
    - codes are value + 1 (0 -> -1, 1 -> 0, 2 -> +1);
    - after the n/4 packed bytes, the scale as a little-endian float32, then zero padding to
      the 32-byte trailer that `ggml_nbytes` adds for I2_S (n/4 + 32 bytes in total).

    The scale means W ~= q * scale (bitnet.cpp stores max|W| of the already ternary-scaled
    weight and computes ``sum / act_scale * scale``), i.e. the same as HF's ``weight_scale``.
    bitnet.cpp's quantiser drops a tail of fewer than 128 weights without padding, so the
    weight count must be a multiple of 128 here; its dot kernels further need each row (in)
    to be a multiple of 128, which holds for every BitNet b1.58 projection.
    """
    codes = _codes(name, w)
    n = codes.size
    if n % I2S_BLOCK:
        raise InputError(
            f"{name} has {n} weights (shape {codes.shape}); I2_S needs a multiple of {I2S_BLOCK}"
        )
    # bitnet.cpp's scale is max|W|: 0 for an all-zero tensor, never negative
    s = check_scale(f"scale of {name}", scale, allow_zero=True)
    groups = codes.reshape(n // I2S_BLOCK, VALUES_PER_BYTE, I2S_BLOCK_BYTES)
    packed = np.bitwise_or.reduce(groups << _I2S_SHIFTS[None, :, None], axis=1)
    trailer = np.zeros(I2S_TRAILER, dtype=np.uint8)
    trailer[:_SCALE_BYTES] = np.array([s], dtype="<f4").view(np.uint8)
    return packed.tobytes() + trailer.tobytes()


def unpack_i2s(
    data: bytes, shape: tuple[int, int], *, name: str = "I2_S data"
) -> tuple[np.ndarray, float]:
    """bitnet.cpp I2_S tensor data -> (int8 ternary [out, in], scale); inverse of `pack_i2s`.

    data holds n/4 packed bytes and then the float32 scale; the trailer may be the full 32
    bytes `ggml_nbytes` reports or just the 4 scale bytes.
    """
    if (
        not isinstance(shape, tuple | list)
        or len(shape) != 2
        or not all(isinstance(d, int | np.integer) and not isinstance(d, bool) for d in shape)
        or min(shape) < 1
    ):
        raise InputError(f"shape of {name} must be two positive ints (out, in), got {shape!r}")
    out, cols = int(shape[0]), int(shape[1])
    n = out * cols
    if n % I2S_BLOCK:
        raise InputError(
            f"shape {(out, cols)} of {name} has {n} weights; I2_S needs a multiple of {I2S_BLOCK}"
        )
    try:
        raw = np.frombuffer(data, dtype=np.uint8)
    except TypeError as e:
        raise InputError(f"{name} must be bytes-like, got {type(data).__name__}") from e
    nbytes = n // VALUES_PER_BYTE
    if raw.size < nbytes + _SCALE_BYTES:
        raise InputError(
            f"{name} is truncated: shape {(out, cols)} needs {nbytes} packed bytes plus a "
            f"{_SCALE_BYTES}-byte scale ({nbytes + I2S_TRAILER} with the full trailer), "
            f"got {raw.size} bytes"
        )
    if raw.size > nbytes + I2S_TRAILER:
        raise InputError(
            f"{name} has {raw.size} bytes, more than the {nbytes + I2S_TRAILER} of an I2_S "
            f"tensor of shape {(out, cols)}; wrong shape?"
        )
    groups = raw[:nbytes].reshape(n // I2S_BLOCK, 1, I2S_BLOCK_BYTES)
    codes = ((groups >> _I2S_SHIFTS[None, :, None]) & 3).reshape(out, cols)
    _check_codes(name, codes, lambda r, c: _i2s_where(name, r * cols + c))
    scale = float(raw[nbytes : nbytes + _SCALE_BYTES].view("<f4")[0])
    if not np.isfinite(scale) or scale < 0:
        raise InputError(f"{name} has scale {scale}; expected a finite float32 >= 0")
    return codes.astype(np.int8) - 1, scale


def _i2s_where(name: str, index: int) -> str:
    block, j = divmod(index, I2S_BLOCK)
    g, k = divmod(j, I2S_BLOCK_BYTES)
    return f"byte {block * I2S_BLOCK_BYTES + k} bits [{7 - 2 * g}:{6 - 2 * g}] of {name}"
