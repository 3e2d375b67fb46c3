"""OnnxModel: any ONNX graph, its ternary layers on a tritium backend, the rest in onnxruntime.

>>> m = OnnxModel("net.onnx", backend="golden", array=ArrayConfig(rows=4, cols=4))
>>> y, = m.run(None, {"x": x})        # what onnxruntime.InferenceSession.run returns
>>> m.partition["accelerator"], m.partition["reasons"]
>>> m.stats.as_dict()                  # cycles, MACs, zero skips per accelerator node

host/onnx/partition.py decides which nodes the accelerator takes (and says why the others
stay); host/onnx/lowering.py runs them through the backend's integer GEMM; QONNX quantisers
run in tritium (host/onnx/qonnx.py); every maximal run of the other nodes is one onnxruntime
session over a sub-model cut from the graph.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...golden.config import ArrayConfig
from ..backends import Backend, make_backend
from ..model import ProjStats
from . import qonnx
from .graph import BIG_CONST, Graph, OnnxError, load, node_inputs
from .partition import Plan, Step, partition


@dataclass
class OnnxStats:
    """Per accelerator node: calls, tiles, cycles, MACs, zero skips and backend seconds of
    everything run since the last reset(); a conv's groups add into their node."""

    backend: str
    array: ArrayConfig
    nodes: dict[str, ProjStats] = field(default_factory=dict)
    runs: int = 0
    seconds: float = 0.0           # wall time of all run() calls
    onnxruntime_seconds: float = 0.0

    @property
    def total(self) -> ProjStats:
        total = ProjStats()
        for s in self.nodes.values():
            total += s
        return total

    def reset(self) -> None:
        for name in self.nodes:
            self.nodes[name] = ProjStats()
        self.runs = 0
        self.seconds = self.onnxruntime_seconds = 0.0

    def as_dict(self) -> dict[str, Any]:
        total = self.total
        return {"backend": self.backend, "array": self.array.to_dict(), "runs": self.runs,
                "seconds": round(self.seconds, 6),
                "backend_seconds": round(total.seconds, 6),
                "onnxruntime_seconds": round(self.onnxruntime_seconds, 6),
                "total": total.as_dict(),
                "nodes": {n: s.as_dict() for n, s in self.nodes.items()}}


class _Session:
    """One onnxruntime session over a run of CPU nodes, built for the input dtypes it is
    first called with (a sub-model's inputs need a type)."""

    def __init__(self, graph: Graph, nodes: list[int], needed: set[str]) -> None:
        self.graph = graph
        self.nodes = [graph.nodes[i] for i in nodes]
        produced = {o for n in self.nodes for o in n.output if o}
        reads: list[str] = []
        for n in self.nodes:
            reads += [x for x in node_inputs(n) if x not in produced and x not in reads]
        # small constants are initializers of the sub-model; large ones are fed each call
        # (onnxruntime reads the NumPy array in place, and the sub-model stays under 2 GB)
        self.consts = [x for x in reads
                       if x in graph.consts and graph.consts[x].nbytes <= BIG_CONST]
        self.inputs = [x for x in reads if x not in self.consts]
        self.outputs = [o for n in self.nodes for o in n.output if o and o in needed]
        self._sessions: dict[tuple[str, ...], Any] = {}

    def _build(self, dtypes: tuple[np.dtype, ...]) -> Any:
        import onnx
        import onnxruntime as ort
        from onnx import helper, numpy_helper

        src = self.graph.model
        g = helper.make_graph(
            self.nodes, "tritium_cpu_part",
            [helper.make_tensor_value_info(x, helper.np_dtype_to_tensor_dtype(d), None)
             for x, d in zip(self.inputs, dtypes, strict=True)],
            [helper.make_value_info(o, onnx.TypeProto()) for o in self.outputs],
            [numpy_helper.from_array(np.asarray(self.graph.consts[c]), c)
             for c in self.consts])
        m = helper.make_model(g, opset_imports=[o for o in src.opset_import
                                                 if not qonnx.is_qonnx(o.domain)])
        m.ir_version = src.ir_version
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        try:
            return ort.InferenceSession(m.SerializeToString(), opts,
                                        providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own exception types
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise OnnxError(f"{self.graph.path}: onnxruntime cannot run nodes "
                            f"{self.nodes[0].name or self.nodes[0].op_type!r}.. : {first}"
                            ) from None

    def run(self, env: dict[str, np.ndarray]) -> None:
        feeds = {x: env[x] if x in env else self.graph.consts[x] for x in self.inputs}
        key = tuple(feeds[x].dtype for x in self.inputs)
        sess = self._sessions.get(key)
        if sess is None:
            sess = self._sessions[key] = self._build(key)
        try:
            outs = sess.run(self.outputs, feeds)
        except Exception as exc:  # onnxruntime's own exception types
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise OnnxError(f"{self.graph.path}: onnxruntime failed: {first}") from None
        env.update(zip(self.outputs, outs, strict=True))


class OnnxModel:
    """An ONNX graph with its ternary nodes on a tritium backend (see the module docstring).

    backend: a name ("golden", "rtl", "board", ...) made with `array` (default: a 4x4 array)
    and backend_options, or a Backend instance (which the model then owns and closes).
    """

    def __init__(self, path: str | Path, backend: str | Backend = "golden",
                 array: ArrayConfig | None = None, **backend_options: Any) -> None:
        self.path = Path(path)
        self.graph = Graph.from_model(load(self.path), str(self.path))
        self.backend = backend if isinstance(backend, Backend) else make_backend(
            backend, array, **backend_options)
        try:
            self.plan: Plan = partition(self.graph, self.backend.array)
            for node in self.plan.accel.values():
                node.prepare(self.backend)
        except BaseException:
            self.backend.close()
            raise
        self.stats = OnnxStats(self.backend.name, self.backend.array,
                               {n.name: ProjStats() for n in self.plan.accel.values()})
        self._sessions: dict[int, _Session] = {}
        self._closed = False

    @property
    def partition(self) -> dict[str, Any]:
        """{"accelerator": [node names], "cpu": [node names], "reasons": {node: why it stayed
        on the CPU}, ...}: see Plan.as_dict."""
        return self.plan.as_dict()

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.graph.inputs]

    @property
    def output_names(self) -> list[str]:
        return list(self.graph.outputs)

    def _session(self, si: int, step: Step) -> _Session:
        s = self._sessions.get(si)
        if s is None:
            # a run's outputs: what later steps or the graph outputs read
            later = set(self.graph.outputs)
            for other in self.plan.steps[si + 1:]:
                for i in other.nodes:
                    later.update(node_inputs(self.graph.nodes[i]))
            s = self._sessions[si] = _Session(self.graph, step.nodes, later)
        return s

    def run(self, output_names: Sequence[str] | None, feeds: Mapping[str, Any]
            ) -> list[np.ndarray]:
        """The values of output_names (None: every graph output), in order, for feeds
        {input name: array}: what onnxruntime.InferenceSession.run returns."""
        if self._closed:
            raise OnnxError("this OnnxModel is closed")
        names = list(self.graph.outputs) if output_names is None else list(output_names)
        known = set(self.graph.outputs)
        for n in names:
            if n not in known:
                raise OnnxError(f"{n!r} is not an output of {self.path}; its outputs are "
                                f"{', '.join(map(repr, self.graph.outputs))}")
        env: dict[str, np.ndarray] = dict(self.graph.check_feeds(feeds))
        t0 = time.perf_counter()
        for si, step in enumerate(self.plan.steps):
            if step.kind == "ort":
                session = self._session(si, step)
                if not session.outputs:
                    continue
                t1 = time.perf_counter()
                session.run(env)
                self.stats.onnxruntime_seconds += time.perf_counter() - t1
                continue
            i = step.nodes[0]
            node = self.graph.nodes[i]
            if step.kind == "qonnx":
                vals = [self._value(env, x) for x in node.input]
                env[node.output[0]] = qonnx.run_node(node, vals)
            else:
                acc = self.plan.accel[i]
                x = self._value(env, acc.act)
                bias = self._value(env, acc.bias) if acc.bias else None
                env[acc.output] = acc.run(self.backend, x, bias, self.stats.nodes[acc.name])
        self.stats.runs += 1
        self.stats.seconds += time.perf_counter() - t0
        return [self._value(env, n) for n in names]

    def _value(self, env: dict[str, np.ndarray], name: str) -> np.ndarray:
        v = env.get(name)
        if v is None:
            v = self.graph.consts.get(name)
        if v is None:
            raise OnnxError(f"{self.path}: tensor {name!r} was not computed")
        return v

    def close(self) -> None:
        self._closed = True
        self._sessions.clear()
        self.backend.close()

    def __enter__(self) -> OnnxModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
