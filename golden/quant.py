"""BitNet b1.58 quantisers: absmean ternary weights, per-token absmax int8 activations, and the
dequantisation of int32 accumulators back to float.

These are the specification of transformers' BitNet integration
(`transformers/integrations/bitnet.py`), redone in NumPy float32 so that codes and scales are
bit-identical to what torch computes in float32 (for weights, up to torch's float32 summation
order: see `quantize_weights`):

- weights (`WeightQuant`): ``s = 1 / clamp(mean(|W|), 1e-5)``, ``q = clamp(round(W * s), -1, 1)``,
  and the dequantised weight is ``q / s``. We return ``scale = 1 / s`` (float32), so ``q * scale``
  equals ``WeightQuant``'s output exactly. This is the meaning of the offline checkpoint's
  ``weight_scale``: ``AutoBitLinear`` (offline) multiplies its output by it, W ~= q * weight_scale.
  (The older packed ``BitLinear`` class divides by its ``weight_scale`` instead, i.e. stores s.)
- activations (`ActQuant`, `BitLinear.activation_quant`): per token (last axis)
  ``s = 127 / clamp(max|x|, 1e-5)``, ``q = clamp(round(x * s), -128, 127)``, where torch
  evaluates the scalar-over-tensor division as ``(1 / clamp(max|x|, 1e-5)) * 127``.
- dequantisation (offline `AutoBitLinear.forward`): ``(acc / s) * weight_scale``.

Rounding is round-half-to-even everywhere, as `torch.round`.
"""

from __future__ import annotations

import numpy as np

from .checks import InputError, check_scale

_EPS = np.float32(1e-5)  # torch clamps with min=1e-5, converted to the tensor's float32
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


def _as_finite_float32(
    name: str, x: object, *, min_ndim: int, ndim: int | None = None
) -> np.ndarray:
    arr = np.asarray(x)
    if ndim is not None and arr.ndim != ndim:
        raise InputError(f"{name} must be a {ndim}-D float array, got shape {arr.shape}")
    if arr.ndim < min_ndim:
        raise InputError(
            f"{name} must be a float array with at least {min_ndim} dimension(s), "
            f"got shape {arr.shape}"
        )
    if not np.issubdtype(arr.dtype, np.floating):
        raise InputError(f"{name} must hold floats, got dtype {arr.dtype}")
    if arr.size == 0:
        raise InputError(f"{name} must not be empty, got shape {arr.shape}")
    # torch does `.float()` first: cast, then check, so float64 values that overflow float32
    # are reported rather than silently becoming inf
    with np.errstate(over="ignore"):
        out = arr.astype(np.float32)
    bad = ~np.isfinite(out)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputError(f"{name} must be finite in float32; found {arr[idx]} at index {idx}")
    return out


def quantize_weights(w: np.ndarray, *, name: str = "weight") -> tuple[np.ndarray, float]:
    """Absmean ternary quantisation of a [out, in] float weight, as transformers' `WeightQuant`.

    Returns ``(q, scale)``: int8 codes in {-1, 0, +1} of w's shape and the float32 scale (as a
    Python float) with ``w ~= q * scale``; ``q * np.float32(scale)`` is bit-identical to
    `WeightQuant.forward(w)` in float32.

    torch computes the mean as ``float32(sum) / numel`` with its own float32 summation order,
    which depends on SIMD width and thread count. We sum in float64 and round once to float32,
    which is what torch gets whenever its float32 sum is exact (always true when the partial
    sums are representable, e.g. weights on a 2^-k grid); otherwise the means may differ by an ulp
    or two, and a code only where ``w * s`` is that close to +-0.5.
    """
    w32 = _as_finite_float32(name, w, min_ndim=2, ndim=2)
    with np.errstate(over="ignore"):
        total = np.float32(np.abs(w32).sum(dtype=np.float64))
    if not np.isfinite(total):
        raise InputError(f"{name}: sum of |{name}| overflows float32; values are too large")
    mean = total / np.float32(w32.size)
    s = np.float32(1.0) / np.maximum(mean, _EPS)
    q = np.clip(np.rint(w32 * s), -1, 1).astype(np.int8)
    # 1 / s rather than the clamped mean: q * (1/s) == q / s exactly for q in {-1, 0, 1}
    scale = np.float32(1.0) / s
    return q, float(scale)


def quantize_activations(
    x: np.ndarray, *, name: str = "activations", bits: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """Per-token (last axis) absmax quantisation, as transformers' `ActQuant` at bits=8.

    Returns ``(q, s)``: int8 q of x's shape and float32 s of shape ``x.shape[:-1] + (1,)`` with
    ``x ~= q / s``. A token whose values are all zero gets ``s = 127 / 1e-5`` and q = 0.
    bits (2..8) narrows the codes the same way, as an accelerator with ArrayConfig.act_bits
    would take them: ``s = (2**(bits-1) - 1) / max|x|``, ``q = clamp(round(x * s),
    -2**(bits-1), 2**(bits-1) - 1)``.
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 8:
        raise InputError(f"activation bits must be an integer in 2..8, got {bits!r}")
    x32 = _as_finite_float32(name, x, min_ndim=1)
    amax = np.max(np.abs(x32), axis=-1, keepdims=True)
    top = 2 ** (bits - 1)
    # torch evaluates `127 / t` as `reciprocal(t) * 127` (eager and inductor alike), which
    # differs from a true division in the last ulp for about a quarter of all values
    s = (np.float32(1.0) / np.maximum(amax, _EPS)) * np.float32(top - 1)
    q = np.clip(np.rint(x32 * s), -top, top - 1).astype(np.int8)
    return q, s.astype(np.float32)


def dequantize(
    acc: np.ndarray,
    act_scale: np.ndarray,
    weight_scale: float,
    *,
    name: str = "acc",
) -> np.ndarray:
    """float32 output of a BitLinear layer from its int32 accumulators: ``(acc / s) * ws``.

    acc is [..., N] (int32 sums of int8 activations times ternary weights), act_scale the s
    from `quantize_activations` with shape ``acc.shape[:-1] + (1,)``, weight_scale the scale
    from `quantize_weights` (the checkpoint's ``weight_scale``).

    The order follows offline `AutoBitLinear.forward`: activations are divided by s before the
    matmul and the output is multiplied by weight_scale after it, so s is applied first and
    weight_scale last, each rounded to float32. Not ``acc * (ws / s)`` nor ``acc / (s / ws)``:
    those round differently. The result equals AutoBitLinear's float32 output bit for bit
    wherever its float matmul is exact (e.g. one non-zero weight per row); otherwise it is the
    correctly ordered value that torch's per-term rounding approximates. acc is converted to
    float32 first, which is exact for |acc| <= 2^24. (The bf16 checkpoint runs this in bf16.)
    """
    a = np.asarray(acc)
    if a.ndim < 1:
        raise InputError(f"{name} must be an integer array with at least 1 dimension, got a scalar")
    if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer):
        raise InputError(f"{name} must hold int32 accumulators, got dtype {a.dtype}")
    if a.size and (a.min() < _INT32_MIN or a.max() > _INT32_MAX):
        bad = (a < _INT32_MIN) | (a > _INT32_MAX)
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputError(f"{name} must fit int32; found {int(a[idx])} at index {idx}")

    s = np.asarray(act_scale)
    want = a.shape[:-1] + (1,)
    if s.shape != want:
        raise InputError(
            f"act_scale must have shape {want} (one scale per token of {name} {a.shape}), "
            f"got {s.shape}"
        )
    if not np.issubdtype(s.dtype, np.floating):
        raise InputError(f"act_scale must hold floats, got dtype {s.dtype}")
    with np.errstate(over="ignore"):
        s32 = s.astype(np.float32)
    if s32.size and not (np.all(np.isfinite(s32)) and np.all(s32 > 0)):
        bad = ~(np.isfinite(s32) & (s32 > 0))
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputError(f"act_scale must be finite and > 0; found {s[idx]} at index {idx}")

    ws = check_scale("weight_scale", weight_scale)
    return (a.astype(np.float32) / s32) * ws
