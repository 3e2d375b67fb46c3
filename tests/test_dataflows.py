"""The dataflow registry (golden/dataflows.py): one entry per dataflow, read by every layer.

A dataflow defined entirely in this test (a golden model that reuses "ws"'s numbers at twice
the cycles, and "ws"'s register map, top and driver) is registered once and then seen by
ArrayConfig validation, DATAFLOWS, the cycle, event and cost queries, Verilog generation and
driver_for, with no other file changed.
"""

from __future__ import annotations

import dataclasses
import sys
import types

import numpy as np
import pytest

from tritium.bus.ws_regmap import WsRegMap
from tritium.golden import ArrayConfig, ConfigError, gemm_cycles, gemm_events
from tritium.golden import dataflows as registry
from tritium.golden.cycles import ws_gemm_cycles, ws_gemm_events, ws_gemm_events_from_nnz
from tritium.golden.dataflows import Dataflow, DataflowModel, dataflow, register_dataflow
from tritium.golden.memory import MemoryConfig, gemm_cost, ws_gemm_cost
from tritium.hdl.generate import make_unit
from tritium.hdl.ws_top import WsAccelerator
from tritium.host.driver import driver_for
from tritium.host.ws_driver import WsDriver


def test_builtin_dataflows_and_their_paths_resolve() -> None:
    from tritium.golden.config import DATAFLOWS

    assert DATAFLOWS == ("ws", "os")
    assert [dataflow(n).ident for n in DATAFLOWS] == [0, 1]
    for name in DATAFLOWS:
        df = dataflow(name)
        for part in ("regmap", "top", "driver"):
            obj = df.load(part)
            assert getattr(obj, "dataflow", name) == name, (name, part)
        assert df.load("regmap") is df.load("driver").regmap


def test_unknown_dataflow_is_a_one_line_config_error() -> None:
    with pytest.raises(ConfigError, match=r"ArrayConfig.dataflow must be one of ws, os, "
                                          r"got 'systolic'"):
        ArrayConfig(dataflow="systolic")
    with pytest.raises(ConfigError, match="got None"):
        ArrayConfig(dataflow=None)


def test_dataflow_ids_must_be_unique() -> None:
    with pytest.raises(ValueError, match="reuses DATAFLOW id 1 of 'os'"):
        register_dataflow(dataclasses.replace(dataflow("ws"), name="twin", ident=1))
    assert "twin" not in registry.dataflow_names()


class _Slow(WsDriver):
    dataflow = "slow"


class _SlowTop(WsAccelerator):
    dataflow = "slow"


@pytest.fixture
def slow_dataflow(monkeypatch: pytest.MonkeyPatch):
    """"slow": ws at twice the cycles, with one config rule of its own (even rows)."""
    module = types.ModuleType("tritium_test_slow")
    module.Driver, module.Top, module.RegMap = _Slow, _SlowTop, WsRegMap
    monkeypatch.setitem(sys.modules, module.__name__, module)

    def check(cfg: ArrayConfig) -> None:
        if cfg.rows % 2:
            raise ConfigError(f"ArrayConfig.rows must be even for dataflow slow, got {cfg.rows}")

    model = DataflowModel(
        gemm_cycles=lambda cfg, m, k, n: 2 * ws_gemm_cycles(cfg, m, k, n),
        gemm_events=ws_gemm_events, gemm_events_from_nnz=ws_gemm_events_from_nnz,
        gemm_cost=ws_gemm_cost, check_config=check)
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    register_dataflow(Dataflow(
        name="slow", ident=7, summary="ws, twice as slow", model=model,
        regmap=f"{module.__name__}:RegMap", top=f"{module.__name__}:Top",
        driver=f"{module.__name__}:Driver", bench="tritium.sim.bench_ws"))
    return ArrayConfig(rows=2, cols=3, dataflow="slow")


def test_a_registered_dataflow_reaches_every_layer(slow_dataflow: ArrayConfig) -> None:
    from tritium.golden.config import DATAFLOWS

    cfg = slow_dataflow
    ws = dataclasses.replace(cfg, dataflow="ws")
    assert DATAFLOWS == ("ws", "os", "slow")
    with pytest.raises(ConfigError, match="rows must be even for dataflow slow, got 3"):
        ArrayConfig(rows=3, dataflow="slow")
    assert gemm_cycles(cfg, 5, 7, 4) == 2 * gemm_cycles(ws, 5, 7, 4)
    w = np.ones((7, 4), dtype=np.int8)
    assert gemm_events(cfg, w, 5).macs == gemm_events(ws, w, 5).macs
    mem = MemoryConfig(8.0)
    assert gemm_cost(cfg, mem, 5, 7, 4, 28).cycles == gemm_cost(ws, mem, 5, 7, 4, 28).cycles
    top = make_unit("top", cfg)
    top._MustUse__silence = True
    assert isinstance(top, _SlowTop)

    class FakeDevice:
        def __init__(self, cfg: ArrayConfig) -> None:
            self.cfg = cfg

    assert isinstance(driver_for(FakeDevice(cfg)), _Slow)
    assert isinstance(driver_for(FakeDevice(ws)), WsDriver)
