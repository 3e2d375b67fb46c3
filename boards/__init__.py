"""FPGA boards: UART host link (protocol, RTL and host side), board top levels, build and flash.

BoardDevice (boards/host.py) is the host Device a `board` backend constructs:
BoardDevice(port, cfg=None, *, baud=1_000_000, timeout=1.0, retries=5).
"""

from .host import BoardDevice, LinkStats

__all__ = ["BoardDevice", "LinkStats"]
