"""Host runtime: load ternary checkpoints of any registered architecture (host/arch: BitNet b1.58,
Llama + BitNet quantisation) and run them with every ternary matmul on a backend (the golden
model or the Verilator-simulated accelerator), plus the bus driver."""

from .model import BitNetModel

# the architecture-generic name; BitNetModel stays the public one
TernaryModel = BitNetModel

__all__ = ["BitNetModel", "TernaryModel"]
