"""QONNX's quantisation custom ops, executed by tritium because onnxruntime cannot run them.

Bit-exact ports of qonnx 1.0's reference implementations (qonnx/custom_op/general/
intquant.py, bipolar_quant.py and trunc.py): the same NumPy operations in the same order on the
same dtypes, so the float results equal qonnx's executor bit for bit
(tests/test_onnx_brevitas.py checks them on random inputs against qonnx's own functions).

Quant(x, scale, zero_point, bit_width; signed, narrow, rounding_mode):
    y = clamp(x / scale + zero_point, min_int, max_int), rounded, then (y - zero_point) * scale
Note the order: qonnx clamps before it rounds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ...golden.checks import InputError

# The domains Brevitas and FINN write QONNX ops under.
QONNX_DOMAINS = ("qonnx.custom_op.general", "finn.custom_op.general")
# The QONNX ops tritium executes; any other op of these domains is refused by name.
EXECUTED = ("Quant", "IntQuant", "BipolarQuant", "Trunc")


def is_qonnx(domain: str) -> bool:
    return domain in QONNX_DOMAINS


def min_int(signed: bool, narrow: bool, bits: Any) -> Any:
    if signed and narrow:
        return -(2 ** (bits - 1)) + 1
    if signed:
        return -(2 ** (bits - 1))
    return 0 * bits


def max_int(signed: bool, narrow: bool, bits: Any) -> Any:
    if not signed and not narrow:
        return (2 ** bits) - 1
    if not signed:
        return (2 ** bits) - 2
    return (2 ** (bits - 1)) - 1


def _half_up(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def _half_down(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.ceil(np.abs(x) - 0.5)


def _up(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.ceil(np.abs(x))


ROUNDING: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "ROUND": np.round, "HALF_EVEN": np.round, "CEIL": np.ceil, "FLOOR": np.floor,
    "UP": _up, "DOWN": np.fix, "HALF_UP": _half_up, "HALF_DOWN": _half_down,
}


def rounding(mode: str, where: str = "Quant") -> Callable[[np.ndarray], np.ndarray]:
    fn = ROUNDING.get(mode.upper())
    if fn is None:
        raise InputError(f"{where}: rounding_mode {mode!r} is not one of "
                         f"{', '.join(ROUNDING)}")
    return fn


def quant_codes(x: np.ndarray, scale: np.ndarray, zeropt: np.ndarray, bits: np.ndarray,
                signed: bool, narrow: bool, mode: str = "ROUND") -> np.ndarray:
    """The integer grid values y of Quant (before (y - zero_point) * scale), as floats."""
    y = x / scale
    y = y + zeropt
    if np.all(bits == 1) and signed:
        # qonnx's executor maps a signed 1-bit Quant to bipolar values
        ones = np.ones(y.shape, dtype=y.dtype)
        return np.where(y >= 0.0, ones, -ones)
    lo = min_int(signed, narrow, bits)
    hi = max_int(signed, narrow, bits)
    y = np.where(y > hi, np.asarray(hi).astype(y.dtype), y)
    y = np.where(y < lo, np.asarray(lo).astype(y.dtype), y)
    return rounding(mode)(y)


def quant(x: np.ndarray, scale: np.ndarray, zeropt: np.ndarray, bits: np.ndarray,
          signed: bool, narrow: bool, mode: str = "ROUND") -> np.ndarray:
    """QONNX Quant, float32 out as qonnx's executor returns it."""
    out = (quant_codes(x, scale, zeropt, bits, signed, narrow, mode) - zeropt) * scale
    return np.asarray(out).astype(np.float32, copy=False)


def bipolar_quant(x: np.ndarray, scale: np.ndarray) -> np.ndarray:
    ones = np.ones(x.shape, dtype=x.dtype)
    return np.asarray(np.where(x >= 0.0, ones, -ones) * scale)


def trunc_v1(x: np.ndarray, scale: np.ndarray, zeropt: np.ndarray, in_bits: np.ndarray,
             out_bits: np.ndarray, mode: str = "FLOOR") -> np.ndarray:
    """QONNX Trunc as its first version defines it (five inputs)."""
    y = x / scale
    y = y + zeropt
    y = np.round(y)
    y = y / 2.0 ** (in_bits - out_bits)
    y = rounding(mode)(y)
    y = y - zeropt
    return y * scale


def trunc_v2(x: np.ndarray, scale: np.ndarray, zeropt: np.ndarray, in_bits: np.ndarray,
             narrow: bool, signed: bool, out_scale: np.ndarray, out_bits: np.ndarray,
             mode: str = "FLOOR") -> np.ndarray:
    """QONNX Trunc version 2 (six inputs: an output scale besides the output bit width)."""
    y = x / scale
    y = y + zeropt
    y = np.round(y)
    # the truncation scale is a power of two by definition; qonnx rounds it to one
    trunc_scale = 2 ** np.round(np.log2(out_scale / scale))
    y = y / trunc_scale
    lo = min_int(signed, narrow, out_bits)
    hi = max_int(signed, narrow, out_bits)
    y = np.where(y > hi, np.asarray(hi).astype(y.dtype), y)
    y = np.where(y < lo, np.asarray(lo).astype(y.dtype), y)
    y = rounding(mode)(y)
    y = y - zeropt / trunc_scale
    return y * out_scale


def attrs(node: Any) -> dict[str, Any]:
    """signed, narrow, rounding_mode of a Quant node with qonnx's defaults."""
    from onnx import helper

    a = {at.name: helper.get_attribute_value(at) for at in node.attribute}
    trunc = node.op_type == "Trunc"
    mode = a.get("rounding_mode", b"FLOOR" if trunc else b"ROUND")
    return {"signed": bool(a.get("signed", 1)), "narrow": bool(a.get("narrow", 0 if trunc else 1)),
            "rounding_mode": mode.decode() if isinstance(mode, bytes) else str(mode)}


def run_node(node: Any, inputs: list[np.ndarray]) -> np.ndarray:
    """Execute one QONNX node (Quant/IntQuant, BipolarQuant or Trunc) on its input values."""
    if node.op_type == "BipolarQuant":
        return bipolar_quant(inputs[0], inputs[1])
    a = attrs(node)
    rounding(a["rounding_mode"], f"node {node.name!r}")
    if node.op_type == "Trunc":
        # the versions differ in their inputs: v2 adds the output scale
        if len(inputs) == 6:
            x, s, zp, ib, os_, ob = inputs
            return trunc_v2(x, s, zp, ib, a["narrow"], a["signed"], os_, ob, a["rounding_mode"])
        if len(inputs) != 5:
            raise InputError(f"Trunc node {node.name!r} has {len(inputs)} inputs; QONNX's "
                             "Trunc takes 5 (version 1) or 6 (version 2)")
        return trunc_v1(*inputs, a["rounding_mode"])
    return quant(inputs[0], inputs[1], inputs[2], inputs[3], a["signed"], a["narrow"],
                 a["rounding_mode"])
