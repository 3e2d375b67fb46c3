"""Host runtime: load ternary checkpoints of any registered architecture (host/arch: BitNet b1.58,
Llama + BitNet quantisation) and run them with every ternary matmul on a backend (the golden
model or the Verilator-simulated accelerator), plus the bus driver. OnnxModel runs any ONNX
graph with its ternary layers on a backend (host/onnx)."""

from typing import Any

from .model import BitNetModel

# the architecture-generic name; BitNetModel stays the public one
TernaryModel = BitNetModel

__all__ = ["BitNetModel", "OnnxModel", "TernaryModel"]


def __getattr__(name: str) -> Any:
    # lazily: importing onnx costs a second, and the decoder runtime never needs it
    if name == "OnnxModel":
        from .onnx.model import OnnxModel

        return OnnxModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
