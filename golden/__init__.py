"""The golden model: the specification every other part of tritium is checked against."""

from .checks import InputError
from .config import ArrayConfig, ConfigError, safe_k
from .cycles import Events, gemm_cycles, gemm_events, tile_cycles
from .gemm import ternary_gemm
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
]
