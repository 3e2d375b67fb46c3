"""A host refuses a device whose accumulators overflow differently from its ArrayConfig."""

from __future__ import annotations

from dataclasses import replace
from itertools import permutations

import numpy as np
import pytest

from tritium.bus import DeviceError
from tritium.bus.contract import MAGIC, OP_READ, VERSION, Csr, Region
from tritium.bus.ws_regmap import WsRegMap
from tritium.golden import ArrayConfig
from tritium.golden.config import ACC_OVERFLOW
from tritium.golden.dataflows import dataflow
from tritium.host.driver import driver_for
from tritium.sim.verilated import VerilatorDevice

# max_k is overflow-safe here, so every acc_overflow mode is a valid configuration
WS = ArrayConfig(rows=3, cols=2, acc_bits=16, max_k=64)
OS = ArrayConfig(rows=3, cols=2, acc_bits=16, max_k=64, dataflow="os")


class CsrDevice:
    """Answers CSR reads as a top built for `built` decodes them (hdl/top.py serves the
    register map's words), so identify() can be checked without building RTL."""

    def __init__(self, built: ArrayConfig) -> None:
        self.cfg = built
        rm = driver_for(self, built).map
        self.words = {rm.csr(r): w for r, w in zip(rm.config_csrs(), rm.config_words(),
                                                  strict=True)}
        self.words |= {rm.csr(Csr.ID): MAGIC, rm.csr(Csr.VERSION): VERSION,
                       rm.csr(Csr.DATAFLOW): dataflow(built.dataflow).ident}
        self.region_bits = rm.region_bits

    def execute(self, ops: np.ndarray) -> np.ndarray:
        reads = [op for op in np.asarray(ops).reshape(-1, 3) if op[0] == OP_READ]
        assert all(int(a) >> self.region_bits == Region.CSR for _, a, _ in reads)
        return np.array([self.words.get(int(a), 0) for _, a, _ in reads], dtype=np.uint32)

    def close(self) -> None:
        pass


@pytest.mark.parametrize("base", [WS, OS], ids=["ws", "os"])
def test_each_overflow_mode_refuses_the_others(base: ArrayConfig) -> None:
    for built, want in permutations(ACC_OVERFLOW, 2):
        dev = CsrDevice(replace(base, acc_overflow=built))
        with pytest.raises(DeviceError) as err:
            driver_for(dev, replace(base, acc_overflow=want)).identify()
        msg = str(err.value)
        assert "\n" not in msg
        assert f"acc_overflow={built!r} (host: {want!r})" in msg
    for mode in ACC_OVERFLOW:
        cfg = replace(base, acc_overflow=mode)
        driver_for(CsrDevice(cfg), cfg).identify()


def test_safe_tops_keep_their_configuration_words() -> None:
    # "safe" encodes as 0: every top built before the field existed still identifies
    c0 = WsRegMap(WS).config_words()[0]
    assert c0 == WS.rows | WS.cols << 8 | WS.act_bits << 16 | WS.acc_bits << 24


@pytest.mark.parametrize("dataflow", ["ws", "os"])
def test_verilated_top_carries_its_overflow_mode(dataflow: str) -> None:
    # configurations test_acc_overflow also builds, so a CI run compiles them once
    extra = {"act_depth": 6, "weight_buffers": 1} if dataflow == "ws" else {"dram_words": 64}
    cfg = ArrayConfig(rows=4, cols=2, acc_bits=9, max_k=48, acc_overflow="saturate",
                      dataflow=dataflow, **extra)
    with VerilatorDevice(cfg) as dev:
        driver_for(dev, cfg).identify()
        with pytest.raises(DeviceError, match=r"acc_overflow='saturate' \(host: 'wrap'\)"):
            driver_for(dev, replace(cfg, acc_overflow="wrap")).identify()


@pytest.mark.parametrize("mode", ACC_OVERFLOW)
def test_board_reads_its_config_back_from_the_identity_words(mode: str) -> None:
    """A board opened with no array takes its ArrayConfig from IDENT's CONFIG words."""
    from tritium.boards.host import config_from_words

    extra = {} if mode == "safe" else {"acc_bits": 12, "acc_overflow": mode}
    cfg = ArrayConfig(rows=3, cols=5, act_depth=40, weight_tiles=3, **extra)
    c0, c1 = WsRegMap(cfg).config_words()[:2]
    back = config_from_words(c0, c1)
    for field in ("rows", "cols", "act_bits", "acc_bits", "acc_overflow", "act_depth",
                  "weight_tiles"):
        assert getattr(back, field) == getattr(cfg, field), field
