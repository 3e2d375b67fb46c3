"""The `board` backend: the host runtime's matmuls on an FPGA board over the serial link.

    from tritium.boards.backend import BoardBackend
    BitNetModel.from_pretrained(path, backend=BoardBackend(port="/dev/ttyUSB1"))

or, once registered under "board" in host/backends.py, backend="board", port=... .
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..golden.config import ArrayConfig
from ..golden.cycles import Events
from ..host.backends import DEFAULT_ARRAY, Backend, Prepared
from ..host.driver import Accelerator
from .host import DEFAULT_BAUD, BoardDevice


class BoardBackend(Backend):
    """Tiles run on the board's accelerator; events come from its performance counters."""

    name = "board"

    def __init__(self, array: ArrayConfig | None = None, *, port: str, baud: int = DEFAULT_BAUD,
                 timeout: float = 1.0, retries: int = 5) -> None:
        # make_backend passes DEFAULT_ARRAY when the user named no array: then the board's own
        # configuration (from IDENT) is the one to use, not a 4x4 it may not have been built for.
        cfg = None if array is None or array is DEFAULT_ARRAY else array
        self.device: BoardDevice | None = BoardDevice(port, cfg, baud=baud, timeout=timeout,
                                                      retries=retries)
        try:
            super().__init__(self.device.cfg)
            self.accel = Accelerator(self.device)
            self.accel.identify()
        except BaseException:
            self.device.close()
            raise

    def _prepare_device(self, p: Prepared) -> Any:
        pack = getattr(self.accel, "pack", None)
        return pack(p.w) if pack else None

    def _matmul(self, a: np.ndarray, p: Prepared) -> tuple[np.ndarray, Events]:
        return self.accel.gemm(a, p.device_handle if p.device_handle is not None else p.w)

    def close(self) -> None:
        if self.device is not None:
            self.device.close()
            self.device = None
