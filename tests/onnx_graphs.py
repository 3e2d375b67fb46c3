"""ONNX graphs built with onnx.helper for the OnnxModel tests: a ternary MLP on MatMulInteger
and a ternary CNN on ConvInteger, quantising their activations in standard ops (the way an
exporter writes BitNet's int8 absmax quantisation), plus variants the accelerator must refuse."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


class Builder:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n = 0

    def const(self, value: np.ndarray, hint: str = "c") -> str:
        self.n += 1
        name = f"{hint}_{self.n}"
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], name: str | None = None, outputs: int = 1,
             **attrs) -> str:
        self.n += 1
        name = name or f"{op.lower()}_{self.n}"
        outs = [f"{name}_out"] + [f"{name}_out{i}" for i in range(1, outputs)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, **attrs))
        return outs[0]

    def ternary(self, shape: tuple[int, ...]) -> np.ndarray:
        return self.rng.integers(-1, 2, size=shape).astype(np.int8)

    def absmax_int8(self, x: str) -> tuple[str, str]:
        """BitNet's per-tensor absmax quantisation in standard ops: (int8 codes, 1/scale)."""
        amax = self.node("ReduceMax", [self.node("Abs", [x])], keepdims=0)
        amax = self.node("Max", [amax, self.const(np.float32(1e-5))])
        inv = self.node("Div", [amax, self.const(np.float32(127.0))])   # dequant scale
        q = self.node("Round", [self.node("Div", [x, inv])])
        q = self.node("Clip", [q, self.const(np.float32(-128)), self.const(np.float32(127))])
        return self.node("Cast", [q], to=TensorProto.INT8), inv

    def rescale(self, acc: str, inv: str, w_scale: float) -> str:
        y = self.node("Cast", [acc], to=TensorProto.FLOAT)
        y = self.node("Mul", [y, inv])
        return self.node("Mul", [y, self.const(np.float32(w_scale))])

    def save(self, path: Path, inputs: list, outputs: list) -> Path:
        g = helper.make_graph(self.nodes, "g", inputs, outputs, self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])
        onnx.checker.check_model(m)
        onnx.save(m, str(path))
        return path


def f32(name: str, shape: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def i32(name: str, rank: int) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.INT32, [None] * rank)


def mlp(path: Path, *, seed: int = 0, bad: str | None = None) -> Path:
    """x [batch, 24] -> MatMulInteger 24x16 (int8 absmax) -> ReLU -> MatMulInteger 16x8 (uint8
    with zero point 128) -> y. The int32 sums are graph outputs too ("mm1_out", "mm2_out").

    bad: "weight" (a 2 in the first weight), "weight_zp" (a non-zero weight zero point on the
    first), "uint8_zp0" (the second layer's uint8 activations with zero point 0)."""
    b = Builder(seed)
    w1 = b.ternary((24, 16))
    if bad == "weight":
        w1[3, 5] = 2
    q1, inv1 = b.absmax_int8("x")
    ins = [q1, b.const(w1, "w1")]
    if bad == "weight_zp":
        ins += [b.const(np.int8(0)), b.const(np.int8(1))]
    acc1 = b.node("MatMulInteger", ins, name="mm1")
    h = b.node("Relu", [b.node("Add", [b.rescale(acc1, inv1, 0.5),
                                        b.const(b.rng.normal(size=16).astype(np.float32))])])
    zp = 0 if bad == "uint8_zp0" else 128
    q2 = b.node("QuantizeLinear", [h, b.const(np.float32(0.05)), b.const(np.uint8(zp))])
    acc2 = b.node("MatMulInteger", [q2, b.const(b.ternary((16, 8)), "w2"),
                                    b.const(np.uint8(zp))], name="mm2")
    y = b.node("Mul", [b.node("Cast", [acc2], to=TensorProto.FLOAT),
                       b.const(np.float32(0.05 * 0.25))], name="y")
    return b.save(path, [f32("x", ["batch", 24])],
                  [f32(y, ["batch", 8]), i32(acc1, 2), i32(acc2, 2)])


def cnn(path: Path, *, seed: int = 1) -> Path:
    """x [n, 2, 9, 9] -> ConvInteger 3x3 pad 1 -> ReLU -> MaxPool 2 -> ConvInteger 2x2,
    2 groups, stride 2, dilation 1 -> Flatten -> MatMulInteger -> logits. Int32 sums are
    outputs too ("conv1_out", "conv2_out", "fc_out")."""
    b = Builder(seed)
    q, inv = b.absmax_int8("x")
    c1 = b.node("ConvInteger", [q, b.const(b.ternary((4, 2, 3, 3)), "k1")], name="conv1",
                pads=[1, 1, 1, 1])
    h = b.node("Relu", [b.rescale(c1, inv, 0.3)])
    h = b.node("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])            # 4x4
    q2, inv2 = b.absmax_int8(h)
    c2 = b.node("ConvInteger", [q2, b.const(b.ternary((6, 2, 2, 2)), "k2")], name="conv2",
                group=2, strides=[1, 1], dilations=[2, 2], pads=[1, 0, 1, 0])
    h = b.node("Flatten", [b.rescale(c2, inv2, 0.7)], axis=1)
    q3, inv3 = b.absmax_int8(h)
    fc = b.node("MatMulInteger", [q3, b.const(b.ternary((6 * 4 * 2, 5)), "wfc")], name="fc")
    y = b.node("Identity", [b.rescale(fc, inv3, 0.2)], name="logits")
    return b.save(path, [f32("x", ["n", 2, 9, 9])],
                  [f32(y, ["n", 5]), i32(c1, 4), i32(c2, 4), i32(fc, 2)])
