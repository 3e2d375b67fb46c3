"""QONNX's quantisation custom ops, executed by tritium because onnxruntime cannot run them.

Bit-exact ports of qonnx 1.0's reference implementations (qonnx/custom_op/general/intquant.py
and bipolar_quant.py): the same NumPy operations in the same order on the same dtypes, so the
float results equal qonnx's executor bit for bit (tests/test_onnx_brevitas.py checks it on
random inputs against qonnx's own functions).

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
EXECUTED = ("Quant", "IntQuant", "BipolarQuant")


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


def attrs(node: Any) -> dict[str, Any]:
    """signed, narrow, rounding_mode of a Quant node with qonnx's defaults."""
    from onnx import helper

    a = {at.name: helper.get_attribute_value(at) for at in node.attribute}
    mode = a.get("rounding_mode", b"ROUND")
    return {"signed": bool(a.get("signed", 1)), "narrow": bool(a.get("narrow", 1)),
            "rounding_mode": mode.decode() if isinstance(mode, bytes) else str(mode)}


def run_node(node: Any, inputs: list[np.ndarray]) -> np.ndarray:
    """Execute one QONNX node (Quant/IntQuant or BipolarQuant) on its input values."""
    if node.op_type == "BipolarQuant":
        return bipolar_quant(inputs[0], inputs[1])
    a = attrs(node)
    rounding(a["rounding_mode"], f"node {node.name!r}")
    return quant(inputs[0], inputs[1], inputs[2], inputs[3], a["signed"], a["narrow"],
                 a["rounding_mode"])
