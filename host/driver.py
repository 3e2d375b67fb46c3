"""Host drivers for the accelerator's bus, independent of what carries the bus.

A driver builds Programs (bus/contract.py) and hands them to a Device, which runs each whole
list in one call: the Verilator device runs it in C++ without returning to Python per cycle, a
board ships it over its link. Every backend that talks to the RTL therefore runs this code.

DataflowDriver holds what every dataflow's driver shares (identify, counters, event deltas,
running a program); host/ws_driver.py and host/os_driver.py add packing and GEMMs, and
driver_for picks the one golden.dataflows registers for a configuration's dataflow.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..bus.contract import (
    COUNTER_CSRS,
    COUNTERS,
    MAGIC,
    VERSION,
    Csr,
    Device,
    DeviceError,
    Program,
    RegMapBase,
)
from ..golden.config import ArrayConfig
from ..golden.cycles import Events
from ..golden.dataflows import dataflow, dataflow_of_ident

__all__ = ["DataflowDriver", "Device", "DeviceError", "Program", "driver_for"]


class DataflowDriver:
    """Runs GEMMs on a Device whose top implements `dataflow` (a golden.dataflows name)."""

    dataflow: ClassVar[str] = "?"
    regmap: ClassVar[type[RegMapBase]]

    def __init__(self, device: Device, cfg: ArrayConfig | None = None) -> None:
        """cfg: the configuration the host expects (default: the one the device was built for);
        identify() checks the device against it."""
        self.device = device
        self.cfg = cfg or device.cfg
        self.map = self.regmap(self.cfg)

    def run(self, prog: Program) -> np.ndarray:
        return self.device.execute(prog.as_array())

    def identify(self) -> None:
        """Check the device is a tritium accelerator of this dataflow built for this config."""
        prog = Program()
        for reg in (Csr.ID, Csr.VERSION, Csr.DATAFLOW, *self.map.config_csrs()):
            prog.read(self.map.csr(reg))
        ident, version, df, *config = (int(x) for x in self.run(prog))
        if ident != MAGIC:
            raise DeviceError(f"device ID is {ident:#010x}, expected {MAGIC:#010x} "
                              "(is this a tritium accelerator?)")
        if version != VERSION:
            raise DeviceError(f"device speaks register-map version {version}, host speaks "
                              f"{VERSION}")
        want_df = dataflow(self.dataflow).ident
        if df != want_df:
            raise DeviceError(f"device runs dataflow {dataflow_of_ident(df)} (DATAFLOW={df}), "
                              f"the host expects {self.dataflow}")
        want = self.map.config_words()
        if tuple(config) != tuple(want):
            field = self.map.mismatched_field(tuple(config))
            if field:
                raise DeviceError(f"device array configuration differs in {field}: the device "
                                  f"was not built for {self.cfg.name()}")
            raise DeviceError(f"device array configuration words "
                              f"{', '.join(f'{c:#x}' for c in config)} do not match "
                              f"{self.cfg.name()} ({', '.join(f'{c:#x}' for c in want)})")

    def queue_counters(self, prog: Program) -> list[int]:
        """Queue reads of every counter (LO then HI); returns where their LO words land."""
        idx = []
        for lo in COUNTER_CSRS:
            idx.append(prog.read(self.map.csr(lo)))
            prog.read(self.map.csr(lo + 1))
        return idx

    @staticmethod
    def counters_of(words: np.ndarray, idx: list[int]) -> dict[str, int]:
        return {name: int(words[i + 1]) << 32 | int(words[i])
                for name, i in zip(COUNTERS, idx, strict=True)}

    def counters(self) -> dict[str, int]:
        prog = Program()
        idx = self.queue_counters(prog)
        return self.counters_of(self.run(prog), idx)

    @staticmethod
    def events_between(before: dict[str, int], after: dict[str, int]) -> Events:
        """The events the counters saw between two readings."""
        return Events(
            tiles=after["tiles"] - before["tiles"],
            cycles=after["busy_cycles"] - before["busy_cycles"],
            macs=after["macs"] - before["macs"],
            zero_skips=after["zero_skips"] - before["zero_skips"],
        )

    def pack(self, w: np.ndarray) -> Any:
        """Pack ternary w [K, N] once for this dataflow (inputs must already be checked)."""
        raise NotImplementedError

    def gemm(self, a: np.ndarray, w: Any) -> tuple[np.ndarray, Events]:
        """int32 [M, N] = a [M, K] @ w [K, N] on the device, and the events its counters saw.
        w is ternary [K, N] or what pack() returned."""
        raise NotImplementedError


def driver_for(device: Device, cfg: ArrayConfig | None = None) -> DataflowDriver:
    """The host driver registered for cfg's dataflow (default: the device's configuration)."""
    cfg = cfg or device.cfg
    return dataflow(cfg.dataflow).load("driver")(device, cfg)
