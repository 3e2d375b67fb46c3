"""Host runtime: load BitNet b1.58 checkpoints and run them with every ternary matmul on a
backend (the golden model or the Verilator-simulated accelerator), plus the bus driver."""

from .model import BitNetModel

__all__ = ["BitNetModel"]
