"""The `rtl` host backend: the Verilator-compiled accelerator, registered through the
"tritium.backends" entry point (pyproject.toml), so tritium.host never imports the simulator."""

from __future__ import annotations

from pathlib import Path

from ..golden.config import ArrayConfig
from ..host.backends import DeviceBackend, check_array
from .verilated import VerilatorDevice


class RtlBackend(DeviceBackend):
    """The Verilator-simulated accelerator, compiled once per ArrayConfig and cached on disk.
    Whole programs of bus operations run in C++; Python only packs tiles."""

    name = "rtl"

    def __init__(self, array: ArrayConfig, *, build_root: str | None = None) -> None:
        check_array(array)   # before the (slow) simulator build
        super().__init__(VerilatorDevice(array, build_root=Path(build_root) if build_root
                                         else None))
