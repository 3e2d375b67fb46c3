"""Cycles and energy of an ONNX graph's accelerator nodes, without running it: the partition
OnnxModel would make, the GEMM shapes from onnx shape inference, and golden's cycle, memory
and energy models (host/estimate.Estimator, the one `tritium estimate --model` prices with)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...golden.energy import EnergyTable, group
from ..estimate import EstimateConfig, Estimator
from .graph import Graph, OnnxError, load
from .partition import partition


def estimate_onnx(path: str | Path, ecfg: EstimateConfig, table: EnergyTable,
                  input_shapes: Mapping[str, tuple[int, ...]] | None = None) -> dict[str, Any]:
    """Per accelerator node: its GEMMs (one per conv group) priced on ecfg's array and
    dataflow ("auto": the cheaper per GEMM); input_shapes fixes dynamic input dimensions."""
    graph = Graph.from_model(load(path), str(path))
    known = {i.name for i in graph.inputs}
    for name, shape in (input_shapes or {}).items():
        if name not in known:
            raise OnnxError(f"--shape names {name!r}, which is not an input of {path}; its "
                            f"inputs are {', '.join(map(repr, known)) or '(none)'}")
        if any(int(d) < 1 for d in shape):
            raise OnnxError(f"--shape {name}: every dimension must be >= 1, got {list(shape)}")
    plan = partition(graph, ecfg.array)
    shapes = graph.static_shapes(input_shapes)
    est = Estimator(ecfg, table)
    clock_hz = ecfg.array.clock_mhz * 1e6
    nodes = []
    total = {"cycles": 0.0, "compute_cycles": 0, "macs": 0, "zero_skips": 0, "energy_j": 0.0}
    energy: dict[str, float] = {}
    for i in sorted(plan.accel):
        node = plan.accel[i]
        shape = shapes.get(node.act)
        if shape is None or any(d is None or d < 1 for d in shape):
            dims = "unknown" if shape is None else "[" + ", ".join(
                "?" if d is None else str(d) for d in shape) + "]"
            raise OnnxError(f"node {node.name}: the shape of its input {node.act!r} is {dims} "
                            f"before running; give the graph's input shapes (--shape "
                            f"NAME=D1,D2,... or --inputs FILE.npz)")
        gemms = []
        n_tot = {"cycles": 0.0, "compute_cycles": 0, "macs": 0, "zero_skips": 0,
                 "energy_j": 0.0}
        for m, k, n, nnz in node.gemm_shapes(tuple(int(d) for d in shape)):
            p = est.best(m, k, n, nnz) if ecfg.dataflow == "auto" else est.price(
                m, k, n, nnz, ecfg.dataflow)
            gemms.append(p.as_dict())
            n_tot["cycles"] += p.cost.cycles
            n_tot["compute_cycles"] += p.cost.compute_cycles
            n_tot["macs"] += p.cost.events.macs
            n_tot["zero_skips"] += p.cost.events.zero_skips
            n_tot["energy_j"] += p.energy_j
            for c, v in p.energy.items():
                energy[c] = energy.get(c, 0.0) + v
        for key in total:
            total[key] += n_tot[key]
        nodes.append({"node": node.name, "op": node.op, "input": node.act,
                      "input_shape": list(shape), "gemms": gemms, **n_tot,
                      "seconds": n_tot["cycles"] / clock_hz})
    total["seconds"] = total["cycles"] / clock_hz
    return {"onnx": str(path), "array": ecfg.array.to_dict(), "dataflow": ecfg.dataflow,
            "memory": ecfg.memory.to_dict(), "energy_table": table.to_dict(),
            "partition": plan.as_dict(), "nodes": nodes, "total": total,
            "energy_groups_j": group(energy), "notes": est.notes}
