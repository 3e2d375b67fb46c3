"""The `board` backend: the host runtime's matmuls on an FPGA board over the serial link.

    from tritium.boards.backend import BoardBackend
    BitNetModel.from_pretrained(path, backend=BoardBackend(port="/dev/ttyUSB1"))

or backend="board", port=... (the "board" entry point of group tritium.backends).

When the model's ternary tiles fit the board's weight store, they are loaded once, at the
first matmul (when every weight has been prepared), and stay there (boards/resident.py);
otherwise tiles stream their weights. `resident` forces the choice (None: decide by fit).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..golden.config import ArrayConfig
from ..golden.cycles import Events
from ..host.backends import DEFAULT_ARRAY, DeviceBackend, Prepared
from .host import DEFAULT_BAUD, BoardDevice
from .resident import (
    RESIDENT,
    ResidentPlan,
    ResidentWeights,
    ResidentWsDriver,
    WeightHandle,
    log,
    plan_residency,
)


class BoardBackend(DeviceBackend):
    """Tiles run on the board's accelerator; events come from its performance counters."""

    name = "board"

    def __init__(self, array: ArrayConfig | None = None, *, port: str, baud: int = DEFAULT_BAUD,
                 timeout: float = 1.0, retries: int = 5, resident: bool | None = None) -> None:
        # make_backend passes DEFAULT_ARRAY when the user named no array: then the board's own
        # configuration (from IDENT) is the one to use, not a 4x4 it may not have been built for.
        cfg = None if array is None or array is DEFAULT_ARRAY else array
        super().__init__(BoardDevice(port, cfg, baud=baud, timeout=timeout, retries=retries))
        self.want_resident = resident
        self.plan = ResidentPlan(store_words=self.device.link.store_words)
        # The store holds ws weight tiles; an os board's weights stream from its port memory,
        # through the driver DeviceBackend chose for its dataflow.
        self._ws = self.device.cfg.dataflow == "ws"
        if self._ws:
            self.accel = ResidentWsDriver(self.device, self.device.cfg)
        else:
            self.plan.reason = (f"the {self.device.cfg.dataflow} dataflow streams its weights "
                                "from the board's port memory")
        self.device.stats.resident = self.plan
        self._handles: list[WeightHandle] = []
        self._decided = False

    def _prepare_device(self, p: Prepared) -> Any:
        if not self._ws:
            return super()._prepare_device(p)
        handle = WeightHandle(p.name, self.accel.pack(p.w))
        if self._decided:   # the store was planned without it
            log.info("board on %s: %s streams: prepared after the weights were placed",
                     self.device.port, p.name)
        else:
            self._handles.append(handle)
        return handle

    def _matmul(self, a: np.ndarray, p: Prepared) -> tuple[np.ndarray, Events]:
        if not self._ws:
            return super()._matmul(a, p)
        if not self._decided:
            self._decide()
        return self.accel.gemm(a, p.device_handle.packed)

    def _decide(self) -> None:
        self._decided = True
        plan = self.plan
        k_tiles = max((h.packed.words.shape[0] for h in self._handles), default=0)
        scratch = self.accel.scratch_words(k_tiles)
        plan.mode, plan.reason, plan.weight_words = plan_residency(
            self._handles, plan.store_words, self.want_resident, scratch)
        if plan.mode == RESIDENT:
            stats = self.device.stats
            before = (stats.bytes_sent + stats.bytes_received, stats.link_seconds)
            t0 = time.perf_counter()
            self._place(self._handles)
            plan.load_seconds = time.perf_counter() - t0
            plan.load_bytes = stats.bytes_sent + stats.bytes_received - before[0]
            plan.load_link_seconds = stats.link_seconds - before[1]
        log.info("board on %s: %s weights: %s", self.device.port, plan.mode, plan.reason)

    def _place(self, handles: list[WeightHandle]) -> None:
        """Write every handle's tiles into the store, one after another, then the activation
        scratch area; the tiles run from there."""
        at = 0
        for h in handles:
            self.device.store(at, h.packed.words.ravel())
            pw = h.packed
            h.packed = ResidentWeights(pw.k, pw.n, pw.words, pw.nnz, base=at)
            at += h.store_words
        self.accel.scratch = at
