"""Which nodes of an ONNX graph the accelerator runs, and in which order everything runs.

A node goes to the accelerator when its weight is a constant ternary tensor and the array can
compute the node exactly (host/onnx/lowering.py runs it):
- MatMulInteger and ConvInteger with an int8 ternary weight, a zero weight zero point, and
  activations that fit the array's signed act_bits once their zero point is taken off
  (int8 with zero point 0, or uint8 with zero point 128);
- MatMul, Gemm and Conv whose weight is a QONNX Quant of a constant giving codes in {-1,0,+1}
  with a zero zero point and one scale per output channel, and whose activation comes from a
  QONNX Quant (possibly through grid-preserving ops: reshapes, transposes, max-pooling, ReLU)
  with one scale, zero point 0 and a signed range no wider than act_bits. This is what
  Brevitas exports for a ternary layer after an 8-bit activation quantiser.
Every other node runs on the CPU; a node of those op types that stays there gets the reason.
QONNX quantisers run in tritium (qonnx.py), folded at load time when their inputs are all
constant. The rest run in onnxruntime, one session per maximal run of CPU nodes.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...golden.config import ArrayConfig
from . import qonnx
from .graph import GRID_PRESERVING, Graph, node_inputs
from .lowering import AccelNode, ConvGeom, Grid

# Node types that are candidates for the accelerator (the partition says why one is not).
CANDIDATES = ("MatMulInteger", "ConvInteger", "MatMul", "Gemm", "Conv")


class Reject(Exception):
    """Why a candidate node stays on the CPU."""


@dataclass
class Step:
    kind: str                 # "accel", "qonnx" or "ort"
    nodes: list[int]          # node indices (one, except for "ort")


@dataclass
class Plan:
    """The partition of one graph for one array."""

    graph: Graph
    accel: dict[int, AccelNode] = field(default_factory=dict)
    qonnx_nodes: set[int] = field(default_factory=set)    # run in tritium each call
    folded: set[int] = field(default_factory=set)         # evaluated at load time
    reasons: dict[str, str] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        names = self.graph.names
        accel = [names[i] for i in sorted(self.accel)]
        return {"accelerator": accel,
                "cpu": [n for i, n in enumerate(names) if i not in self.accel],
                "reasons": dict(self.reasons),
                "onnxruntime_sessions": sum(s.kind == "ort" for s in self.steps),
                "qonnx_in_tritium": [names[i] for i in sorted(self.qonnx_nodes | {
                    i for i in self.folded if qonnx.is_qonnx(self.graph.nodes[i].domain)})]}


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _const(graph: Graph, node: Any, i: int, what: str) -> np.ndarray | None:
    """Input i of node as a constant; None if the input is absent; Reject if computed."""
    if i >= len(node.input) or not node.input[i]:
        return None
    v = graph.const(node.input[i])
    if v is None:
        raise Reject(f"its {what} {node.input[i]!r} is computed at run time, not a constant")
    return v


def _ternary(w: np.ndarray, what: str) -> np.ndarray:
    if not (np.issubdtype(w.dtype, np.integer) or np.issubdtype(w.dtype, np.floating)):
        raise Reject(f"its {what} has dtype {w.dtype}")
    bad = (w != -1) & (w != 0) & (w != 1)
    if bad.any():
        v = w[tuple(np.argwhere(bad)[0])]
        raise Reject(f"its {what} is not ternary: it holds {v.item()!r} besides -1, 0, +1")
    return w.astype(np.int8)


def _check_k(k: int, array: ArrayConfig) -> None:
    if k > array.max_k:
        raise Reject(f"its reduction K={k} exceeds the array's max_k={array.max_k}")


def _int_grid(graph: Graph, node: Any, dtypes: dict[str, np.dtype], array: ArrayConfig
              ) -> Grid:
    """Codes of an integer op's activation: x - x_zero_point, when that fits act_bits."""
    x = node.input[0]
    zp_arr = _const(graph, node, 2, "activation zero point")
    if zp_arr is not None and zp_arr.size != 1:
        raise Reject(f"its activation zero point has {zp_arr.size} values; the array takes "
                     "one per tensor")
    zp = 0 if zp_arr is None else int(zp_arr.reshape(-1)[0])
    dtype = dtypes.get(x)
    if dtype is None:
        raise Reject(f"the dtype of its activation {x!r} is not known before running")
    lo, hi = (0, 255) if dtype == np.uint8 else (-128, 127)
    alo, ahi = -(2 ** (array.act_bits - 1)), 2 ** (array.act_bits - 1) - 1
    if lo - zp < alo or hi - zp > ahi:
        what = (f"a non-zero zero point ({zp})" if zp else "zero point 0")
        raise Reject(f"its {dtype} activations with {what} span {lo - zp}..{hi - zp}, wider "
                     f"than the array's signed act_bits={array.act_bits}")
    return Grid(zero_point=zp)


def _weight_zero(graph: Graph, node: Any, i: int) -> None:
    zp = _const(graph, node, i, "weight zero point")
    if zp is not None and np.any(zp != 0):
        raise Reject(f"its weight zero point is not zero ({zp.reshape(-1)[0].item()!r})")


def _conv_geom(node: Any, w: np.ndarray) -> ConvGeom:
    a = _attrs(node)
    d = w.ndim - 2
    if d not in (1, 2, 3):
        raise Reject(f"its weight has {w.ndim} dimensions; 1-D to 3-D convolutions are lowered")
    kernel = tuple(int(k) for k in a.get("kernel_shape", w.shape[2:]))
    if kernel != tuple(w.shape[2:]):
        raise Reject(f"its kernel_shape {list(kernel)} differs from its weight's "
                     f"{list(w.shape[2:])}")
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    group = int(a.get("group", 1))
    if w.shape[0] % group:
        raise Reject(f"its {w.shape[0]} output channels do not split into {group} groups")
    return ConvGeom(kernel, tuple(int(s) for s in a.get("strides", [1] * d)),
                    tuple(int(s) for s in a.get("dilations", [1] * d)),
                    tuple(int(p) for p in a.get("pads", [0] * (2 * d))), auto, group)


def _group_weights(w: np.ndarray, group: int) -> list[np.ndarray]:
    """Conv weight [M, C/group, *kernel] -> one [C/group*prod(kernel), M/group] per group."""
    mg = w.shape[0] // group
    return [np.ascontiguousarray(w[g * mg:(g + 1) * mg].reshape(mg, -1).T)
            for g in range(group)]


def _quant_weight(graph: Graph, node: Any) -> tuple[np.ndarray, np.ndarray]:
    """(ternary codes, scale broadcast to the weight's shape) of a float op's weight, which
    must be a QONNX Quant of constants."""
    name = node.input[1]
    q = graph.producer_of(name)
    if q is None or not qonnx.is_qonnx(q.domain) or q.op_type not in ("Quant", "IntQuant"):
        what = "a float constant" if graph.const(name) is not None else "computed"
        raise Reject(f"its weight {name!r} is {what}, not the output of a QONNX Quant")
    vals = [graph.const(x) for x in q.input[:4]]
    if any(v is None for v in vals):
        raise Reject(f"its weight's Quant {q.name!r} has inputs computed at run time")
    w, s, zp, bits = vals
    if np.any(zp != 0):
        raise Reject(f"its weight's Quant {q.name!r} has a non-zero zero point")
    a = qonnx.attrs(q)
    codes = qonnx.quant_codes(w, s, zp, bits, a["signed"], a["narrow"], a["rounding_mode"])
    sign = "signed" if a["signed"] else "unsigned"
    try:
        t = _ternary(codes, "weight")
    except Reject as exc:
        raise Reject(f"{exc} (its Quant {q.name!r} is {sign}, {np.asarray(bits).item():g}-bit"
                     f"{', narrow' if a['narrow'] else ''})") from None
    return t, np.broadcast_to(np.asarray(s, np.float32), w.shape)


def _per_channel(scale: np.ndarray, what: str) -> np.ndarray:
    """scale [N, rest...] -> [N], when it is the same along the reduction axes."""
    flat = scale.reshape(scale.shape[0], -1)
    if not np.all(flat == flat[:, :1]):
        raise Reject(f"its {what} scale varies along the reduction axis; the array rescales "
                     "per output channel only")
    return flat[:, 0].astype(np.float64)


def _act_grid(graph: Graph, node: Any, array: ArrayConfig) -> Grid:
    """The grid of a float op's activation: the QONNX Quant it comes from."""
    t = node.input[0]
    via = []
    while True:
        p = graph.producer_of(t)
        if p is None:
            raise Reject(f"its activation {node.input[0]!r} is not QONNX-quantised (no Quant "
                         "before it)")
        if qonnx.is_qonnx(p.domain) and p.op_type in ("Quant", "IntQuant"):
            break
        if p.op_type not in GRID_PRESERVING or p.domain not in ("", "ai.onnx"):
            raise Reject(f"its activation {node.input[0]!r} is not QONNX-quantised (it comes "
                         f"from {p.op_type} {p.name!r}, not a Quant)")
        via.append(p.op_type)
        t = p.input[0]
    vals = [graph.const(x) for x in p.input[1:4]]
    if any(v is None for v in vals):
        raise Reject(f"its activation Quant {p.name!r} has a scale, zero point or bit width "
                     "computed at run time")
    s, zp, bits = vals
    if np.any(zp != 0):
        raise Reject(f"its activation Quant {p.name!r} has a non-zero zero point "
                     f"({np.asarray(zp).reshape(-1)[0].item():g})")
    if s.size != 1 and not np.all(s == s.reshape(-1)[0]):
        raise Reject(f"its activation Quant {p.name!r} has {s.size} scales; the array takes "
                     "one per tensor")
    if bits.size != 1:
        raise Reject(f"its activation Quant {p.name!r} has a bit width per channel")
    a = qonnx.attrs(p)
    b = float(bits.reshape(-1)[0])
    lo = int(qonnx.min_int(a["signed"], a["narrow"], b))
    hi = int(qonnx.max_int(a["signed"], a["narrow"], b))
    if b == 1 and a["signed"]:
        lo, hi = -1, 1
    alo, ahi = -(2 ** (array.act_bits - 1)), 2 ** (array.act_bits - 1) - 1
    if b != int(b) or lo < alo or hi > ahi:
        sign = "signed" if a["signed"] else "unsigned"
        raise Reject(f"its activations are {sign} {b:g}-bit (Quant {p.name!r}: codes "
                     f"{lo}..{hi}), wider than the array's signed act_bits={array.act_bits}")
    return Grid(scale=float(np.float32(s.reshape(-1)[0])), lo=lo, hi=hi, source=f"Quant {p.name!r}")


def match(graph: Graph, i: int, dtypes: dict[str, np.dtype], array: ArrayConfig
          ) -> AccelNode:
    """The accelerator plan of candidate node i, or Reject(reason)."""
    node = graph.nodes[i]
    name, op = graph.names[i], node.op_type
    if node.domain not in ("", "ai.onnx"):
        raise Reject(f"it is in domain {node.domain!r}")
    out = node.output[0]
    if op == "MatMulInteger":
        w = _const(graph, node, 1, "weight B")
        if w is None or w.ndim != 2:
            raise Reject(f"its weight B has {w.ndim if w is not None else 0} dimensions; the "
                         "array takes a 2-D weight")
        w = _ternary(w, f"weight {node.input[1]!r}")
        _weight_zero(graph, node, 3)
        grid = _int_grid(graph, node, dtypes, array)
        _check_k(w.shape[0], array)
        return AccelNode(name, op, node.input[0], grid, [w], out)
    if op == "ConvInteger":
        w = _const(graph, node, 1, "weight w")
        if w is None:
            raise Reject("it has no weight")
        w = _ternary(w, f"weight {node.input[1]!r}")
        _weight_zero(graph, node, 3)
        geom = _conv_geom(node, w)
        grid = _int_grid(graph, node, dtypes, array)
        ws = _group_weights(w, geom.group)
        _check_k(ws[0].shape[0], array)
        return AccelNode(name, op, node.input[0], grid, ws, out, conv=geom)
    if op in ("MatMul", "Gemm", "Conv"):
        if dtypes.get(node.input[0]) not in (np.float32, np.float64, np.float16, None):
            raise Reject(f"its activation is {dtypes[node.input[0]]}")
        codes, scale = _quant_weight(graph, node)
        grid = _act_grid(graph, node, array)
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        if op == "Conv":
            geom = _conv_geom(node, codes)
            ws = _group_weights(codes, geom.group)
            s_w = _per_channel(scale, "weight")
            _check_k(ws[0].shape[0], array)
            return AccelNode(name, op, node.input[0], grid, ws, out, s_w * grid.scale,
                             bias=bias, conv=geom)
        if codes.ndim != 2:
            raise Reject(f"its weight has {codes.ndim} dimensions; the array takes a 2-D "
                         "weight")
        alpha, beta, trans_a = 1.0, 1.0, False
        if op == "Gemm":
            a = _attrs(node)
            alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
            trans_a = bool(a.get("transA", 0))
            if a.get("transB", 0):
                codes, scale = codes.T, scale.T
        else:
            bias = None
        w = np.ascontiguousarray(codes)
        s_w = _per_channel(np.ascontiguousarray(scale.T), "weight")
        _check_k(w.shape[0], array)
        return AccelNode(name, op, node.input[0], grid, [w], out,
                         s_w * grid.scale * np.float64(np.float32(alpha)), bias=bias,
                         beta=beta, trans_a=trans_a)
    raise Reject(f"{op} is not an accelerator op")


def partition(graph: Graph, array: ArrayConfig) -> Plan:
    plan = Plan(graph)
    dtypes = graph.static_dtypes()
    for i, node in enumerate(graph.nodes):
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            plan.folded.add(i)
        elif qonnx.is_qonnx(node.domain):
            vals = [graph.const(x) for x in node.input]
            if all(v is not None for v in vals):
                graph.consts[node.output[0]] = qonnx.run_node(node, vals)  # type: ignore[arg-type]
                plan.folded.add(i)
            else:
                plan.qonnx_nodes.add(i)
    for i, node in enumerate(graph.nodes):
        if node.op_type in CANDIDATES and i not in plan.folded:
            try:
                plan.accel[i] = match(graph, i, dtypes, array)
            except Reject as exc:
                plan.reasons[graph.names[i]] = str(exc)
    plan.steps = schedule(graph, plan)
    return plan


def schedule(graph: Graph, plan: Plan) -> list[Step]:
    """A topological order cut into steps, keeping CPU nodes together: while a run of CPU
    nodes is open it takes every CPU node that becomes ready; otherwise accelerator and QONNX
    nodes go first, so CPU nodes gather behind them into as few sessions as possible. Among
    nodes of one kind, the graph's order decides."""
    run = [i for i in range(len(graph.nodes)) if i not in plan.folded]
    kind = {i: "accel" if i in plan.accel else "qonnx" if i in plan.qonnx_nodes else "ort"
            for i in run}
    users: dict[int, list[int]] = {i: [] for i in run}
    waiting: dict[int, int] = {}
    for i in run:
        deps = {graph.producer[x] for x in node_inputs(graph.nodes[i])
                if x in graph.producer and graph.producer[x] in kind}
        waiting[i] = len(deps)
        for d in deps:
            users[d].append(i)
    ready: dict[bool, list[int]] = {True: [], False: []}     # is_cpu -> heap of indices
    for i in run:
        if not waiting[i]:
            heapq.heappush(ready[kind[i] == "ort"], i)
    steps: list[Step] = []
    while ready[True] or ready[False]:
        cur = steps[-1] if steps else None
        if cur is not None and cur.kind == "ort" and ready[True]:
            pick = heapq.heappop(ready[True])
            cur.nodes.append(pick)
        else:
            pick = heapq.heappop(ready[False] or ready[True])
            steps.append(Step(kind[pick], [pick]))
        for u in users[pick]:
            waiting[u] -= 1
            if not waiting[u]:
                heapq.heappush(ready[kind[u] == "ort"], u)
    return steps
