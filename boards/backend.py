"""The `board` backend: the host runtime's matmuls on an FPGA board over the serial link.

    from tritium.boards.backend import BoardBackend
    BitNetModel.from_pretrained(path, backend=BoardBackend(port="/dev/ttyUSB1"))

or backend="board", port=... (the "board" entry point of group tritium.backends).
"""

from __future__ import annotations

from ..golden.config import ArrayConfig
from ..host.backends import DEFAULT_ARRAY, DeviceBackend
from .host import DEFAULT_BAUD, BoardDevice


class BoardBackend(DeviceBackend):
    """Tiles run on the board's accelerator; events come from its performance counters."""

    name = "board"

    def __init__(self, array: ArrayConfig | None = None, *, port: str, baud: int = DEFAULT_BAUD,
                 timeout: float = 1.0, retries: int = 5) -> None:
        # make_backend passes DEFAULT_ARRAY when the user named no array: then the board's own
        # configuration (from IDENT) is the one to use, not a 4x4 it may not have been built for.
        cfg = None if array is None or array is DEFAULT_ARRAY else array
        super().__init__(BoardDevice(port, cfg, baud=baud, timeout=timeout, retries=retries))
