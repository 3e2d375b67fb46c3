"""The golden model: the specification every other part of tritium is checked against."""

from .checks import InputError
from .config import ArrayConfig, ConfigError, safe_k
from .cycles import Events, gemm_cycles, gemm_events, tile_cycles
from .gemm import ternary_gemm
from .packing import pack_hf, pack_i2s, unpack_hf, unpack_i2s
from .quant import dequantize, quantize_activations, quantize_weights
from .tiling import Tile, plan_gemm

__all__ = [
    "ArrayConfig",
    "ConfigError",
    "Events",
    "InputError",
    "Tile",
    "gemm_cycles",
    "gemm_events",
    "plan_gemm",
    "safe_k",
    "ternary_gemm",
    "tile_cycles",
    "dequantize",
    "pack_hf",
    "pack_i2s",
    "quantize_activations",
    "quantize_weights",
    "unpack_hf",
    "unpack_i2s",
]
