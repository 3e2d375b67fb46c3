"""The dataflow registry: one entry per dataflow, read by every layer.

A dataflow is its golden model (cycles, events, memory cost, validation of the ArrayConfig
fields it uses) plus the dotted paths of what upper layers build from it: its register map
(tritium.bus), its RTL top (tritium.hdl), its host driver (tritium.host) and its cocotb bench
(tritium.sim). Paths are strings resolved with importlib by the layer that needs them, so this
module, like the rest of golden, imports nothing above golden.

Adding a dataflow: write those modules, then call register_dataflow once (see EXTENDING.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import os_model
from .config import ArrayConfig, ConfigError
from .cycles import Events, ws_gemm_cycles, ws_gemm_events, ws_gemm_events_from_nnz
from .memory import GemmCost, MemoryConfig, os_gemm_cost, ws_gemm_cost


def _no_checks(cfg: ArrayConfig) -> None:
    """A dataflow that uses no ArrayConfig field beyond the generic ranges."""


@dataclass(frozen=True)
class DataflowModel:
    """The golden side of a dataflow: what the cycle, event and cost queries dispatch to."""

    gemm_cycles: Callable[[ArrayConfig, int, int, int], int]
    gemm_events: Callable[[ArrayConfig, np.ndarray, int], Events]
    gemm_events_from_nnz: Callable[[ArrayConfig, int, int, int, int], Events]
    gemm_cost: Callable[[ArrayConfig, MemoryConfig, int, int, int, int], GemmCost]
    check_config: Callable[[ArrayConfig], None] = _no_checks


@dataclass(frozen=True)
class Dataflow:
    """One registered dataflow. `ident` is what the top's DATAFLOW CSR reads."""

    name: str
    ident: int
    summary: str
    model: DataflowModel
    regmap: str      # "module:Class", a bus.contract.RegMapBase for one ArrayConfig
    top: str         # "module:Class", an Amaranth component taking an ArrayConfig
    driver: str      # "module:Class", a host driver taking (device, cfg)
    bench: str       # cocotb test module of the top
    # True when the top builds its array from the registered PE that ArrayConfig.pe names;
    # a top with a PE of its own rejects any other choice.
    pe_array: bool = False

    def load(self, part: str) -> Any:
        """The object one of the dotted paths names (regmap, top, driver), imported now."""
        return resolve(getattr(self, part))


def resolve(path: str) -> Any:
    module, _, attr = path.partition(":")
    obj = importlib.import_module(module)
    return getattr(obj, attr) if attr else obj


_REGISTRY: dict[str, Dataflow] = {}


def register_dataflow(df: Dataflow) -> None:
    for other in _REGISTRY.values():
        if other.name != df.name and other.ident == df.ident:
            raise ValueError(f"dataflow {df.name!r} reuses DATAFLOW id {df.ident} of "
                             f"{other.name!r}")
    _REGISTRY[df.name] = df


def dataflow_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def dataflow(name: object) -> Dataflow:
    """The registered dataflow called name; ConfigError naming the known ones otherwise."""
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ConfigError(f"ArrayConfig.dataflow must be one of {', '.join(_REGISTRY)}, "
                          f"got {name!r}")
    return _REGISTRY[name]


def dataflow_of_ident(ident: int) -> str:
    """The name a DATAFLOW CSR value stands for (or the number, for a top this host lacks)."""
    for df in _REGISTRY.values():
        if df.ident == ident:
            return df.name
    return str(ident)


register_dataflow(Dataflow(
    name="ws", ident=0,
    summary="weight-stationary: K on rows, N on columns, M streamed through a systolic array",
    model=DataflowModel(ws_gemm_cycles, ws_gemm_events, ws_gemm_events_from_nnz, ws_gemm_cost),
    regmap="tritium.bus.ws_regmap:WsRegMap",
    top="tritium.hdl.ws_top:WsAccelerator",
    driver="tritium.host.ws_driver:WsDriver",
    bench="tritium.sim.bench_ws",
    pe_array=True,
))

register_dataflow(Dataflow(
    name="os", ident=1,
    summary="output-stationary: ternary weights streamed from DRAM into adder-only PEs",
    model=DataflowModel(os_model.stream_gemm_cycles, os_model.stream_gemm_events,
                        os_model.stream_gemm_events_from_nnz, os_gemm_cost,
                        os_model.check_config),
    regmap="tritium.bus.os_regmap:OsRegMap",
    top="tritium.hdl.os_top:OsAccelerator",
    driver="tritium.host.os_driver:OsDriver",
    bench="tritium.sim.bench_os",
))
