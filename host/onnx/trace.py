"""A small ONNX graph builder whose values trace NumPy code.

`Graph` appends nodes and initializers to a GraphProto as they are made (initializers go in once,
never copied into a second list, which matters for a 3 GB checkpoint). `Value` is a named tensor
of the graph: Python's arithmetic operators and the NumPy ufuncs in `UFUNCS` on a Value emit ONNX
nodes instead of computing. That is what lets the exporter run an architecture's own `block()`
(host/arch) unchanged: `x + y`, `ops.relu2(g) * u` and `ops.silu(g)` become Add, Max, Mul, Exp
and Div nodes, in the order the NumPy code does them, so the float32 roundings match golden's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ...golden.checks import InputError

FLOAT, DOUBLE, INT8, INT32, INT64, BOOL = (TensorProto.FLOAT, TensorProto.DOUBLE,
                                           TensorProto.INT8, TensorProto.INT32,
                                           TensorProto.INT64, TensorProto.BOOL)

# NumPy ufunc -> (ONNX op, arity). np.square is x * x (NumPy squares by multiplying, so the
# rounding is the same); the rest are one ONNX op each.
UFUNCS: dict[str, tuple[str, int]] = {
    "add": ("Add", 2), "subtract": ("Sub", 2), "multiply": ("Mul", 2),
    "true_divide": ("Div", 2), "divide": ("Div", 2), "maximum": ("Max", 2),
    "minimum": ("Min", 2), "negative": ("Neg", 1), "exp": ("Exp", 1), "sqrt": ("Sqrt", 1),
    "tanh": ("Tanh", 1), "absolute": ("Abs", 1), "square": ("Mul", 1),
    "sin": ("Sin", 1), "cos": ("Cos", 1), "log": ("Log", 1),
}


class Value:
    """A float32 tensor of a Graph; NumPy-style arithmetic on it adds nodes."""

    def __init__(self, graph: Graph, name: str) -> None:
        self.graph, self.name = graph, name

    def __repr__(self) -> str:
        return f"Value({self.name!r})"

    def _bin(self, op: str, other: Any, reflected: bool = False) -> Value:
        if op == "Div" and reflected and not isinstance(other, Value) \
                and np.ndim(other) == 0 and other == 1:
            return self.graph.reciprocal(self)
        o = self.graph.lift(other)
        a, b = (o, self) if reflected else (self, o)
        return self.graph.op(op, a, b)

    def __add__(self, o: Any) -> Value: return self._bin("Add", o)
    def __radd__(self, o: Any) -> Value: return self._bin("Add", o, True)
    def __sub__(self, o: Any) -> Value: return self._bin("Sub", o)
    def __rsub__(self, o: Any) -> Value: return self._bin("Sub", o, True)
    def __mul__(self, o: Any) -> Value: return self._bin("Mul", o)
    def __rmul__(self, o: Any) -> Value: return self._bin("Mul", o, True)
    def __truediv__(self, o: Any) -> Value: return self._bin("Div", o)
    def __rtruediv__(self, o: Any) -> Value: return self._bin("Div", o, True)
    def __neg__(self) -> Value: return self.graph.op("Neg", self)

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kw: Any) -> Value:
        entry = UFUNCS.get(ufunc.__name__)
        if method != "__call__" or entry is None or kw.get("out") is not None:
            raise InputError(f"the ONNX exporter cannot trace numpy.{ufunc.__name__}"
                             f"{'' if method == '__call__' else '.' + method}; map it in "
                             "tritium.host.onnx.trace.UFUNCS")
        op, arity = entry
        if op == "Div" and not isinstance(inputs[0], Value) and np.ndim(inputs[0]) == 0 \
                and inputs[0] == 1:
            return self.graph.reciprocal(self.graph.lift(inputs[1]))
        args = [self.graph.lift(x) for x in inputs]
        if arity == 1 and op == "Mul":
            args = [args[0], args[0]]
        return self.graph.op(op, *args)

    def __array__(self, *_: Any, **__: Any) -> np.ndarray:
        raise InputError(f"the ONNX exporter traced a NumPy call that needs the value of "
                         f"{self.name}; an architecture's block() may only use arithmetic, "
                         "ufuncs and its LayerRun's methods on activations")


class Graph:
    """Nodes and initializers of one ONNX graph, named under a scope stack
    ("model.layers.0.self_attn.q_proj/MatMulInteger")."""

    def __init__(self, name: str) -> None:
        self._model = onnx.ModelProto()
        # the model's own graph message, filled in place: no copy of the initializers later
        self.proto = self._model.graph
        self.proto.name = name
        self._scope: list[str] = []
        self._count: dict[str, int] = {}
        self._consts: dict[tuple[str, bytes, tuple[int, ...]], Value] = {}
        self.initializer_bytes = 0

    # -- naming -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def scope(self, name: str) -> Iterator[None]:
        self._scope.append(name)
        try:
            yield
        finally:
            self._scope.pop()

    def _fresh(self, base: str) -> str:
        prefix = "/".join(self._scope)
        key = f"{prefix}/{base}" if prefix else base
        n = self._count.get(key, 0)
        self._count[key] = n + 1
        return key if n == 0 else f"{key}_{n}"

    # -- values -------------------------------------------------------------------------------

    def input(self, name: str, elem_type: int, shape: Sequence[int | str]) -> Value:
        self.proto.input.append(helper.make_tensor_value_info(name, elem_type, list(shape)))
        return Value(self, name)

    def output(self, value: Value, name: str, elem_type: int,
               shape: Sequence[int | str]) -> None:
        """Expose value as a graph output called name (through an Identity, so the producing
        node keeps its scoped name)."""
        self.proto.node.append(helper.make_node("Identity", [value.name], [name],
                                                name=self._fresh(f"output/{name}")))
        self.proto.output.append(helper.make_tensor_value_info(name, elem_type, list(shape)))

    def initializer(self, name: str, array: np.ndarray) -> Value:
        """A named constant tensor, appended to the graph in place (one copy of its bytes)."""
        arr = np.ascontiguousarray(array)
        t = self.proto.initializer.add()
        t.name = name
        t.data_type = helper.np_dtype_to_tensor_dtype(arr.dtype)
        t.dims.extend(arr.shape)
        t.raw_data = arr.tobytes()
        self.initializer_bytes += arr.nbytes
        return Value(self, name)

    def const(self, value: Any, dtype: Any = np.float32) -> Value:
        """A small constant, shared by every node that uses the same value."""
        arr = np.asarray(value, dtype=dtype)
        key = (arr.dtype.str, arr.tobytes(), arr.shape)
        if key not in self._consts:
            t = numpy_helper.from_array(arr, f"const/{len(self._consts)}")
            self.proto.initializer.append(t)
            self._consts[key] = Value(self, t.name)
        return self._consts[key]

    def lift(self, x: Any) -> Value:
        """x as a Value: Values pass through; Python and NumPy numbers and arrays become float32
        constants (golden's activations are float32 throughout)."""
        if isinstance(x, Value):
            return x
        arr = np.asarray(x)
        if arr.dtype.kind not in "fiub":
            raise InputError(f"the ONNX exporter cannot use a constant of dtype {arr.dtype}")
        return self.const(arr, np.float32)

    # -- nodes --------------------------------------------------------------------------------

    def node(self, op: str, inputs: Sequence[Value | str | None], outputs: int = 1,
             **attrs: Any) -> list[Value]:
        name = self._fresh(op)
        names = ["" if x is None else x if isinstance(x, str) else x.name for x in inputs]
        outs = [f"{name}_output_{i}" for i in range(outputs)]
        self.proto.node.append(helper.make_node(op, names, outs, name=name, **attrs))
        return [Value(self, o) for o in outs]

    def op(self, op: str, *inputs: Value | str | None, **attrs: Any) -> Value:
        return self.node(op, inputs, **attrs)[0]

    def reciprocal(self, x: Value) -> Value:
        """1 / x, correctly rounded. Not Div(1, x): onnxruntime's optimiser rewrites
        Div(1, x) * y as Div(y, x), which rounds once where golden rounds twice (and so moves
        int8 codes at rounding ties); it leaves Reciprocal alone."""
        return self.op("Reciprocal", x)

    def ints(self, values: Sequence[int]) -> Value:
        return self.const(list(values), np.int64)

    def model(self, opset: int, producer: str, version: str, doc: str = "") -> onnx.ModelProto:
        m = self._model
        # IR 9 (onnx 1.15): new enough for opset 17-21, old enough for onnxruntime 1.16 on
        m.ir_version = 9
        m.opset_import.add(domain="", version=opset)
        m.producer_name, m.producer_version, m.doc_string = producer, version, doc
        return m
