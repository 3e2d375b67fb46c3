"""cocotb benches on Verilator and the simulated device."""

from .pyverilated import pyverilated

__all__ = ["pyverilated"]
