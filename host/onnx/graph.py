"""An ONNX graph as OnnxModel sees it: loaded and checked (file, format, opset, domains), its
nodes named and in topological order, its constants folded, its tensors' static shapes, and
the feeds checked against its inputs. Every problem is one line naming the file, node or input.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...golden.checks import InputError
from . import qonnx

# onnxruntime's CPU provider warns below opset 7 and every accelerated op needs 10 or later
# (MatMulInteger, ConvInteger); the newest is the installed onnx package's.
MIN_OPSET = 7
# Constants larger than this (bytes) are fed to onnxruntime sessions at run time and left out of
# the models handed to shape inference, rather than serialised into them: a protobuf holds
# at most 2 GB, and a large weight needs neither.
BIG_CONST = 1 << 20
# Domains whose ops onnxruntime runs; QONNX's are run by tritium (qonnx.py).
ORT_DOMAINS = ("", "ai.onnx", "com.microsoft", "ai.onnx.ml")
# Ops that keep a tensor on its quantisation grid (same scale, values a subset of the codes):
# an accelerator node may look through them back to the Quant that set the grid.
GRID_PRESERVING = ("Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Identity",
                   "MaxPool", "Relu", "Dropout")


def max_opset() -> int:
    import onnx

    return int(onnx.defs.onnx_opset_version())


class OnnxError(InputError):
    """A graph tritium cannot run, or feeds that do not match it."""


def load(path: str | Path) -> Any:
    """The ModelProto in path (external data resolved beside it), or a one-line error."""
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.exists():
        raise OnnxError(f"{path}: no such file (expected an ONNX model, .onnx)")
    if path.is_dir():
        raise OnnxError(f"{path} is a folder; give an ONNX model file (.onnx)")
    try:
        model = onnx.load(str(path))
    except (DecodeError, RuntimeWarning, ValueError, UnicodeDecodeError) as exc:
        raise OnnxError(f"{path} is not an ONNX model (cannot parse it as a ModelProto: "
                        f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
                        ) from None
    except OSError as exc:
        # external data missing beside the model, or an unreadable file
        raise OnnxError(f"{path}: cannot read the model ({exc})") from None
    # Almost any bytes parse as some protobuf; a model has an IR version and a graph.
    if model.ir_version < 1 or not model.HasField("graph") or not model.graph.node:
        raise OnnxError(f"{path} is not an ONNX model (no IR version or no graph nodes)")
    check_opset(model, str(path))
    return model


def opsets(model: Any) -> dict[str, int]:
    out = {}
    for o in model.opset_import:
        out["" if o.domain == "ai.onnx" else o.domain] = int(o.version)
    return out


def check_opset(model: Any, where: str) -> None:
    versions = opsets(model)
    hi = max_opset()
    v = versions.get("")
    if v is None:
        raise OnnxError(f"{where} imports no version of the default ONNX opset; tritium "
                        f"runs opsets {MIN_OPSET} to {hi}")
    if not MIN_OPSET <= v <= hi:
        raise OnnxError(f"{where} uses ONNX opset {v}; tritium runs opsets {MIN_OPSET} to {hi}")
    for node in model.graph.node:
        if qonnx.is_qonnx(node.domain):
            if node.op_type not in qonnx.EXECUTED:
                raise OnnxError(f"{where}: node {node.name or node.op_type!r} is the QONNX op "
                                f"{node.op_type}, which tritium does not run (it runs "
                                f"{', '.join(qonnx.EXECUTED)})")
        elif node.domain not in ORT_DOMAINS:
            raise OnnxError(f"{where}: node {node.name or node.op_type!r} is op {node.op_type} "
                            f"of domain {node.domain!r}, which neither onnxruntime nor tritium "
                            f"runs")


def node_names(nodes: Iterable[Any]) -> list[str]:
    """A unique name per node: its own, or op_type_index when it has none (or a clash)."""
    seen: set[str] = set()
    names = []
    for i, n in enumerate(nodes):
        name = n.name or f"{n.op_type}_{i}"
        while name in seen:
            name = f"{name}_{i}"
        seen.add(name)
        names.append(name)
    return names


def subgraph_inputs(node: Any) -> set[str]:
    """Outer-scope names the graphs in node's attributes (If, Loop, Scan bodies) read."""
    from onnx import AttributeProto

    used: set[str] = set()
    for at in node.attribute:
        graphs = [at.g] if at.type == AttributeProto.GRAPH else (
            list(at.graphs) if at.type == AttributeProto.GRAPHS else [])
        for g in graphs:
            local = {i.name for i in g.input} | {i.name for i in g.initializer}
            for n in g.node:
                local.update(n.output)
            for n in g.node:
                used.update(x for x in (*n.input, *subgraph_inputs(n)) if x and x not in local)
            used.update(o.name for o in g.output if o.name not in local)
    return used


def node_inputs(node: Any) -> list[str]:
    """Every tensor a node reads: its inputs, then what its subgraphs read from outside."""
    extra = sorted(subgraph_inputs(node) - set(node.input))
    return [x for x in node.input if x] + extra


def constant_value(node: Any) -> np.ndarray:
    """The value of a Constant node."""
    from onnx import helper, numpy_helper

    at = node.attribute[0]
    v = helper.get_attribute_value(at)
    if at.name == "value":
        return numpy_helper.to_array(v)
    if at.name == "sparse_value":
        raise OnnxError(f"Constant node {node.name!r}: sparse constants are not supported")
    dtypes = {"value_float": np.float32, "value_floats": np.float32, "value_int": np.int64,
              "value_ints": np.int64}
    if at.name in dtypes:
        return np.asarray(v, dtypes[at.name])
    return np.asarray(v)


@dataclass
class Graph:
    """A loaded graph: nodes (named, topologically ordered), constants and inputs."""

    path: str
    model: Any
    nodes: list[Any]
    names: list[str]
    consts: dict[str, np.ndarray]           # initializers and folded Constant nodes
    inputs: list[Any]                       # graph inputs a caller feeds (ValueInfoProto)
    outputs: list[str]
    producer: dict[str, int] = field(default_factory=dict)     # tensor -> node index

    @classmethod
    def from_model(cls, model: Any, path: str) -> Graph:
        from onnx import numpy_helper

        g = model.graph
        consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        inputs = [i for i in g.input if i.name not in consts]
        nodes = toposort(list(g.node), {i.name for i in g.input} | set(consts), path)
        graph = cls(path, model, nodes, node_names(nodes), consts, inputs,
                    [o.name for o in g.output])
        for i, n in enumerate(nodes):
            for o in n.output:
                if o:
                    graph.producer[o] = i
        for n in nodes:
            if n.op_type == "Constant" and n.domain in ("", "ai.onnx"):
                graph.consts[n.output[0]] = constant_value(n)
        return graph

    def const(self, tensor: str) -> np.ndarray | None:
        return self.consts.get(tensor) if tensor else None

    def producer_of(self, tensor: str) -> Any | None:
        i = self.producer.get(tensor)
        return None if i is None else self.nodes[i]

    def input_type(self, info: Any) -> tuple[np.dtype, list[int | str | None]]:
        from onnx import helper

        t = info.type.tensor_type
        dims: list[int | str | None] = []
        for d in t.shape.dim:
            dims.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or None))
        return np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)), dims

    def check_feeds(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """feeds as arrays, checked against the graph inputs by name, dtype and shape."""
        if not isinstance(feeds, Mapping):
            raise OnnxError(f"feeds must be a dict of input name -> array, got "
                            f"{type(feeds).__name__}")
        want = {i.name: i for i in self.inputs}
        extra = sorted(set(feeds) - set(want))
        if extra:
            what = "an initializer of" if extra[0] in self.consts else "not an input of"
            raise OnnxError(f"feed {extra[0]!r} is {what} {self.path}; its inputs are "
                            f"{_names(want)}")
        missing = [n for n in want if n not in feeds]
        if missing:
            raise OnnxError(f"input {missing[0]!r} of {self.path} is not fed; feed "
                            f"{_names(want)}")
        out: dict[str, np.ndarray] = {}
        symbols: dict[str, tuple[int, str]] = {}
        for name, info in want.items():
            arr = np.asarray(feeds[name])
            dtype, dims = self.input_type(info)
            if arr.dtype != dtype:
                raise OnnxError(f"feed {name!r} has dtype {arr.dtype} but input {name!r} of "
                                f"{self.path} is {dtype}")
            if info.type.tensor_type.HasField("shape"):
                if arr.ndim != len(dims):
                    raise OnnxError(f"feed {name!r} has shape {list(arr.shape)} but input "
                                    f"{name!r} of {self.path} has {len(dims)} dimensions "
                                    f"{_dims(dims)}")
                for axis, (have, d) in enumerate(zip(arr.shape, dims, strict=True)):
                    if isinstance(d, int) and d > 0 and have != d:
                        raise OnnxError(f"feed {name!r} has shape {list(arr.shape)} but input "
                                        f"{name!r} of {self.path} is {_dims(dims)} (axis "
                                        f"{axis} must be {d})")
                    if isinstance(d, str):
                        first = symbols.setdefault(d, (have, name))
                        if first[0] != have:
                            raise OnnxError(
                                f"feed {name!r} has {d}={have} on axis {axis} but feed "
                                f"{first[1]!r} has {d}={first[0]}; {self.path} needs them equal")
            out[name] = arr
        return out

    def _inferable(self) -> Any:
        """A copy of the model onnx shape inference can read: QONNX's quantisers keep their
        input's shape and float type, so they become Identity; large initializers become
        typed inputs, so a model past protobuf's 2 GB (external data) stays inferable."""
        import onnx
        from onnx import helper

        m = onnx.ModelProto()
        m.CopyFrom(self.model)
        big = [t for t in m.graph.initializer if self.consts[t.name].nbytes > BIG_CONST]
        for t in big:
            m.graph.input.append(helper.make_tensor_value_info(t.name, t.data_type, t.dims))
        keep_init = [t for t in m.graph.initializer
                     if self.consts[t.name].nbytes <= BIG_CONST]
        del m.graph.initializer[:]
        m.graph.initializer.extend(keep_init)
        del m.graph.node[:]
        for n in self.nodes:
            m.graph.node.append(helper.make_node("Identity", [n.input[0]], [n.output[0]],
                                                 name=n.name) if qonnx.is_qonnx(n.domain)
                                else n)
        keep = [o for o in m.opset_import if not qonnx.is_qonnx(o.domain)]
        del m.opset_import[:]
        m.opset_import.extend(keep)
        return m

    def static_shapes(self, input_shapes: Mapping[str, tuple[int, ...]] | None = None
                      ) -> dict[str, tuple[Any, ...]]:
        """Shapes (and through them ranks) of every tensor onnx shape inference can reach,
        given the input shapes (overriding the declared ones, e.g. to fix a dynamic batch).
        QONNX's quantisers keep their input's shape, so they are inferred as Identity."""
        from onnx import shape_inference

        m = self._inferable()
        for vi in m.graph.input:
            if input_shapes and vi.name in input_shapes:
                t = vi.type.tensor_type
                t.ClearField("shape")
                for d in input_shapes[vi.name]:
                    t.shape.dim.add().dim_value = int(d)
        try:
            inferred = shape_inference.infer_shapes(m, data_prop=True)
        except Exception as exc:  # onnx raises its own InferenceError types
            raise OnnxError(f"{self.path}: onnx shape inference failed: "
                            f"{str(exc).splitlines()[0]}") from None
        shapes: dict[str, tuple[Any, ...]] = {}
        gi = inferred.graph
        for vi in (*gi.input, *gi.value_info, *gi.output):
            t = vi.type.tensor_type
            if t.HasField("shape"):
                shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else None
                                        for d in t.shape.dim)
        for name, value in self.consts.items():
            shapes[name] = value.shape
        return shapes

    def static_dtypes(self) -> dict[str, np.dtype]:
        """Element types shape inference gives (QONNX quantisers as Identity)."""
        from onnx import helper, shape_inference

        m = self._inferable()
        try:
            gi = shape_inference.infer_shapes(m).graph
        except Exception:
            gi = m.graph
        out = {}
        for vi in (*gi.input, *gi.value_info, *gi.output):
            et = vi.type.tensor_type.elem_type
            if et:
                out[vi.name] = np.dtype(helper.tensor_dtype_to_np_dtype(et))
        for name, value in self.consts.items():
            out[name] = value.dtype
        return out


def _names(d: Mapping[str, Any]) -> str:
    return ", ".join(repr(n) for n in d) or "(none)"


def _dims(dims: list[Any]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def toposort(nodes: list[Any], available: set[str], path: str) -> list[Any]:
    """Nodes in an order where each runs after the producers of its inputs (Kahn's algorithm;
    ties keep the file's order)."""
    producer: dict[str, int] = {}
    for i, n in enumerate(nodes):
        for o in n.output:
            if o:
                producer[o] = i
    missing = sorted({x for n in nodes for x in node_inputs(n)} - set(producer) - available)
    if missing:
        raise OnnxError(f"{path}: tensor {missing[0]!r} is read by a node but no node, input "
                        f"or initializer defines it")
    users: list[list[int]] = [[] for _ in nodes]
    waiting = [0] * len(nodes)
    for i, n in enumerate(nodes):
        deps = {producer[x] for x in node_inputs(n) if x in producer and x not in available}
        waiting[i] = len(deps)
        for d in deps:
            users[d].append(i)
    ready = [i for i in range(len(nodes)) if not waiting[i]]
    heapq.heapify(ready)
    order: list[Any] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(nodes[i])
        for u in users[i]:
            waiting[u] -= 1
            if not waiting[u]:
                heapq.heappush(ready, u)
    if len(order) < len(nodes):
        n = nodes[next(i for i in range(len(nodes)) if waiting[i])]
        raise OnnxError(f"{path}: the graph has a cycle through node "
                        f"{n.name or n.op_type!r}")
    return order
