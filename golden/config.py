"""ArrayConfig: the one description of an accelerator that RTL, golden model, sim and host share."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from typing import Any

DATAFLOWS = ("ws",)

# The host bus is 32 bits wide; results are read one accumulator per word.
BUS_BITS = 32
# Field widths of the CONFIG registers (hdl/regmap.py) bound what a config may ask for.
MAX_DIM = 255


class ConfigError(ValueError):
    """An ArrayConfig parameter is out of range; the message names the parameter."""


def safe_k(act_bits: int, acc_bits: int) -> int:
    """Largest reduction length K whose int sum of act x {-1,0,+1} products fits in acc_bits.

    The worst case is K products of magnitude 2**(act_bits-1) (e.g. -128 * -1 = +128), so
    K * 2**(act_bits-1) must stay <= 2**(acc_bits-1) - 1.
    """
    return (2 ** (acc_bits - 1) - 1) // 2 ** (act_bits - 1)


def min_acc_bits(act_bits: int, k: int) -> int:
    """Narrowest accumulator that holds a K-long sum without overflow."""
    bits = act_bits
    while safe_k(act_bits, bits) < k:
        bits += 1
    return bits


@dataclass(frozen=True)
class ArrayConfig:
    """Parameters of one ternary systolic accelerator.

    rows x cols PEs; weight-stationary ("ws") puts K on rows and N on cols and streams M.
    weight_tiles: how many rows x cols weight tiles the weight buffer holds.
    act_depth: activation-buffer entries = largest M one tile may stream (also output depth).
    max_k: longest reduction the accelerator accumulates on chip (across K tiles); must be
    overflow-safe for acc_bits.
    """

    rows: int = 8
    cols: int = 8
    act_bits: int = 8
    acc_bits: int = 32
    dataflow: str = "ws"
    weight_tiles: int = 2
    act_depth: int = 64
    max_k: int = 8192
    clock_mhz: float = 100.0

    def __post_init__(self) -> None:
        for name in ("rows", "cols", "act_bits", "acc_bits", "weight_tiles", "act_depth", "max_k"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"ArrayConfig.{name} must be an integer, got {value!r}")
        for name in ("rows", "cols"):
            value = getattr(self, name)
            if not 1 <= value <= MAX_DIM:
                raise ConfigError(f"ArrayConfig.{name} must be in 1..{MAX_DIM}, got {value}")
        if not 2 <= self.act_bits <= 8:
            raise ConfigError(f"ArrayConfig.act_bits must be in 2..8, got {self.act_bits}")
        if not self.act_bits + 1 <= self.acc_bits <= BUS_BITS:
            raise ConfigError(
                f"ArrayConfig.acc_bits must be in {self.act_bits + 1}..{BUS_BITS} "
                f"(wider than act_bits={self.act_bits}, at most the {BUS_BITS}-bit bus), "
                f"got {self.acc_bits}"
            )
        if self.dataflow not in DATAFLOWS:
            raise ConfigError(
                f"ArrayConfig.dataflow must be one of {', '.join(DATAFLOWS)}, got {self.dataflow!r}"
            )
        if not 1 <= self.weight_tiles <= 65535:
            raise ConfigError(
                f"ArrayConfig.weight_tiles must be in 1..65535, got {self.weight_tiles}"
            )
        if not 1 <= self.act_depth <= 65535:
            raise ConfigError(f"ArrayConfig.act_depth must be in 1..65535, got {self.act_depth}")
        if self.max_k < 1:
            raise ConfigError(f"ArrayConfig.max_k must be >= 1, got {self.max_k}")
        limit = safe_k(self.act_bits, self.acc_bits)
        if self.max_k > limit:
            raise ConfigError(
                f"ArrayConfig.max_k={self.max_k} can overflow acc_bits={self.acc_bits} with "
                f"act_bits={self.act_bits}: the safe K is at most {limit}; lower max_k to "
                f"{limit} or raise acc_bits to {min_acc_bits(self.act_bits, self.max_k)}"
            )
        if not isinstance(self.clock_mhz, (int, float)) or not self.clock_mhz > 0:
            raise ConfigError(f"ArrayConfig.clock_mhz must be > 0, got {self.clock_mhz!r}")

    @property
    def pes(self) -> int:
        return self.rows * self.cols

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArrayConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown ArrayConfig parameter(s) {', '.join(unknown)}; "
                f"expected some of {', '.join(sorted(known))}"
            )
        return cls(**data)

    def key(self) -> str:
        """Stable short hash, used to name build folders."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def name(self) -> str:
        return f"{self.dataflow}_{self.rows}x{self.cols}_a{self.act_bits}_acc{self.acc_bits}"
