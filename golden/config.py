"""ArrayConfig: the one description of an accelerator that RTL, golden model, sim and host share."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from typing import Any

# The PE every configuration gets unless it names another registered one (tritium.hdl.pes).
DEFAULT_PE = "ternary"

# The host bus is 32 bits wide; results are read one accumulator per word.
BUS_BITS = 32
# Field widths of the CONFIG registers (bus/contract.py) bound what a config may ask for.
MAX_DIM = 255
# The memory behind the "os" top's port (golden/os_port.py): rows of dram_bytes_per_cycle bytes
# per cycle; both bounds keep its host addresses inside the 32-bit bus address.
MAX_DRAM_BYTES_PER_CYCLE = 1024
MAX_DRAM_WORDS = 2**24
# How ternary weights travel from memory ("os" weight stream): 2 bits each, or five per byte
# in base 3 (golden/base3.py, 1.6 bits each).
WEIGHT_PACKINGS = ("2bit", "base3")


class ConfigError(ValueError):
    """An ArrayConfig parameter is out of range; the message names the parameter."""


def __getattr__(name: str) -> Any:
    # DATAFLOWS comes from the dataflow registry, which imports this module: resolve it late.
    if name == "DATAFLOWS":
        from .dataflows import dataflow_names

        return dataflow_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# What an accumulator does when a sum leaves acc_bits. "safe": it cannot, because max_k is
# overflow-safe (the check below). "wrap": two's complement wrap-around, the plain adder.
# "saturate": every add clamps to the acc_bits range (hdl.pes.accumulate; golden.gemm models
# where: at each PE and where K tiles are summed).
ACC_OVERFLOW = ("safe", "wrap", "saturate")
# Fields added after the first release, with the default that means "as before": key() leaves
# them out at that value, so build caches from before they existed stay valid.
LATER_FIELDS = {"pe": DEFAULT_PE, "acc_overflow": "safe", "weight_buffers": 1,
                "weight_packing": "2bit"}


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
    Output-stationary weight streaming ("os", golden/os_model.py) gives each of the rows x cols
    PEs one output column and streams ternary weights from DRAM at dram_bytes_per_cycle.
    weight_tiles: how many rows x cols weight tiles the weight buffer holds ("ws").
    act_depth: activation-buffer entries = largest M one tile may stream (also output depth)
    ("ws").
    max_k: longest reduction the accelerator accumulates on chip (across K tiles); must be
    overflow-safe for acc_bits unless acc_overflow names what an overflow does.
    acc_overflow: "safe" (max_k cannot overflow acc_bits), "wrap" or "saturate" (a narrower
    accumulator than max_k needs, with that overflow behaviour in RTL and golden).
    dram_bytes_per_cycle: DRAM bandwidth in bytes per accelerator clock ("os": a multiple of 4,
    so a DRAM row holds whole 32-bit results).
    dram_words: depth of the memory behind the "os" top's port (served by the harness or board,
    not built into the RTL) in rows of dram_bytes_per_cycle bytes, a power of two; 0 sizes it
    for one pass at max_k (golden.os_model.stream_dram_words).
    weight_packing: how the "os" weight stream packs ternary weights: "2bit" (4 per byte) or
    "base3" (5 per byte, golden/base3.py); "ws" holds 2-bit codes on chip whatever it says.
    weight_buffers: weight registers per PE ("ws"): 1 loads each tile's weights before it
    streams (SCALE-Sim's weight-stationary timing); 2 adds a shadow register per PE, so the
    next tile loads while the current one streams and a start runs K_TILES tiles back to back
    (golden.cycles.ws_run_cycles).
    pe: name of the registered processing element the "ws" array is built from
    (tritium.hdl.pes; the name is checked against the registry where the RTL is built, since
    golden knows no RTL).
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
    dram_bytes_per_cycle: int = 16
    dram_words: int = 0
    pe: str = DEFAULT_PE
    acc_overflow: str = "safe"
    weight_buffers: int = 1
    weight_packing: str = "2bit"

    def __post_init__(self) -> None:
        # Bandwidths often arrive as floats (GB/s / MHz); a whole number is the same config.
        b = self.dram_bytes_per_cycle
        if isinstance(b, float) and b.is_integer():
            object.__setattr__(self, "dram_bytes_per_cycle", int(b))
        for name in ("rows", "cols", "act_bits", "acc_bits", "weight_tiles", "act_depth", "max_k",
                     "dram_bytes_per_cycle", "dram_words", "weight_buffers"):
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
        from .dataflows import dataflow  # the registry imports this module

        model = dataflow(self.dataflow).model   # raises ConfigError naming the known ones
        if not 1 <= self.weight_tiles <= 65535:
            raise ConfigError(
                f"ArrayConfig.weight_tiles must be in 1..65535, got {self.weight_tiles}"
            )
        if not 1 <= self.act_depth <= 65535:
            raise ConfigError(f"ArrayConfig.act_depth must be in 1..65535, got {self.act_depth}")
        if self.weight_buffers not in (1, 2):
            raise ConfigError(f"ArrayConfig.weight_buffers must be 1 (load, then stream) or 2 "
                              f"(load the next tile while streaming), got {self.weight_buffers}")
        if self.max_k < 1:
            raise ConfigError(f"ArrayConfig.max_k must be >= 1, got {self.max_k}")
        if self.acc_overflow not in ACC_OVERFLOW:
            raise ConfigError(f"ArrayConfig.acc_overflow must be one of "
                              f"{', '.join(ACC_OVERFLOW)}, got {self.acc_overflow!r}")
        limit = safe_k(self.act_bits, self.acc_bits)
        if self.max_k > limit and self.acc_overflow == "safe":
            raise ConfigError(
                f"ArrayConfig.max_k={self.max_k} can overflow acc_bits={self.acc_bits} with "
                f"act_bits={self.act_bits}: the safe K is at most {limit}; lower max_k to "
                f"{limit}, raise acc_bits to {min_acc_bits(self.act_bits, self.max_k)}, or "
                f"choose acc_overflow='wrap' or 'saturate'"
            )
        if not isinstance(self.clock_mhz, (int, float)) or not self.clock_mhz > 0:
            raise ConfigError(f"ArrayConfig.clock_mhz must be > 0, got {self.clock_mhz!r}")
        if not isinstance(self.pe, str) or not self.pe.isidentifier():
            raise ConfigError(f"ArrayConfig.pe must name a registered PE (an identifier such as "
                              f"{DEFAULT_PE!r}), got {self.pe!r}")
        if self.weight_packing not in WEIGHT_PACKINGS:
            raise ConfigError(f"ArrayConfig.weight_packing must be one of "
                              f"{', '.join(WEIGHT_PACKINGS)}, got {self.weight_packing!r}")
        self._check_dram()
        model.check_config(self)

    def _check_dram(self) -> None:
        b, words = self.dram_bytes_per_cycle, self.dram_words
        if not 1 <= b <= MAX_DRAM_BYTES_PER_CYCLE:
            raise ConfigError(f"ArrayConfig.dram_bytes_per_cycle must be in "
                              f"1..{MAX_DRAM_BYTES_PER_CYCLE}, got {b}")
        if words and not (16 <= words <= MAX_DRAM_WORDS and words & (words - 1) == 0):
            raise ConfigError(f"ArrayConfig.dram_words must be 0 (sized for max_k) or a power "
                              f"of two in 16..{MAX_DRAM_WORDS}, got {words}")

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
        """Stable short hash, used to name build folders. Fields added after the first
        release are left out at their defaults (LATER_FIELDS), so configurations from before
        them keep their key."""
        data = self.to_dict()
        for name, default in LATER_FIELDS.items():
            if data[name] == default:
                del data[name]
        text = json.dumps(data, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def name(self) -> str:
        base = f"{self.dataflow}_{self.rows}x{self.cols}_a{self.act_bits}_acc{self.acc_bits}"
        if self.acc_overflow != "safe":
            base += f"_{self.acc_overflow}"
        if self.weight_packing != "2bit":
            base += f"_{self.weight_packing}"
        base = base if self.pe == DEFAULT_PE else f"{base}_{self.pe}"
        return base if self.weight_buffers == 1 else f"{base}_wb{self.weight_buffers}"
