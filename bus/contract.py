"""The bus contract every layer above golden shares: how a host talks to any accelerator top.

Bus: 32-bit words, word addresses. A write is taken in the cycle `we` is high; a read issued
with `re` returns `rdata` one cycle later with `rvalid`. The top two address bits select a
region; what regions 1..3 hold is the dataflow's business (bus/ws_regmap.py, bus/os_regmap.py).

Every top decodes the common CSRs (Csr) at the same addresses, so one host driver base can
identify any top, read its counters and run Programs on it. A dataflow's register map adds its
own CSRs after these (extend_csrs) and its own address arithmetic on RegMapBase.

A host never drives the bus cycle by cycle: it builds a Program (a list of bus operations) and
hands it to a Device (the Verilator model, a board over its link), which runs the whole list.
The op codes below are the wire format of that list; the C++ harness (sim/cpp) and the board
link protocol (boards/protocol.py) use the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import IntEnum
from functools import cached_property
from typing import Protocol

import numpy as np

from ..golden.config import ACC_OVERFLOW, BUS_BITS, WEIGHT_PACKINGS, ArrayConfig, ConfigError

MAGIC = 0x54524954  # "TRIT"
VERSION = 1
COUNTER_BITS = 64
# CONFIG0 bits 31:30. acc_bits <= 32 needs only bits 29:24, and "safe" is 0 so the words of
# every top built before the field existed stay the same.
ACC_OVERFLOW_CODES = {mode: code for code, mode in enumerate(ACC_OVERFLOW)}


def config0_fields(word: int) -> dict[str, int | str]:
    """The ArrayConfig fields a CONFIG0 word carries (RegMapBase.config0 writes it)."""
    return {"rows": word & 0xFF, "cols": word >> 8 & 0xFF, "act_bits": word >> 16 & 0xFF,
            "acc_bits": word >> 24 & 0x3F, "acc_overflow": ACC_OVERFLOW[word >> 30 & 0x3]}


class Region(IntEnum):
    CSR = 0
    WEIGHT = 1      # "ws": weight buffer; "os": the simulated DRAM
    ACT = 2
    OUT = 3


class Csr(IntEnum):
    """CSRs every top decodes at these addresses."""

    ID = 0           # r: MAGIC
    VERSION = 1      # r: VERSION
    CONFIG0 = 2      # r: rows | cols << 8 | act_bits << 16 | acc_bits << 24 | overflow << 30
                     #    (overflow: ACC_OVERFLOW_CODES[ArrayConfig.acc_overflow])
    CONFIG1 = 3      # r: dataflow-specific configuration word
    CTRL = 4         # w: bit0 start, bit2 clear counters (bit1 is the dataflow's)
    M_COUNT = 5      # rw: activation rows in the next start (>= 1)
    STATUS = 7       # r: bit0 busy, bit1 done (since the last start), bit2 error (bad start)
    CYCLES_LO = 8    # r: cycles since the counters were cleared (64-bit counters: reading
    CYCLES_HI = 9    #    LO latches HI, so read LO then HI)
    BUSY_LO = 10     # r: cycles spent running
    BUSY_HI = 11
    MACS_LO = 12     # r: add/subtract operations issued by PEs
    MACS_HI = 13
    SKIPS_LO = 14    # r: PE-cycles held by a zero weight
    SKIPS_HI = 15
    TILES_LO = 16    # r: tiles ("ws") or passes ("os") started
    TILES_HI = 17
    DATAFLOW = 18    # r: the top's dataflow id (golden.dataflows)


def extend_csrs(name: str, extra: dict[str, int]) -> type[IntEnum]:
    """An IntEnum holding every common Csr plus a dataflow's own, which must not collide."""
    taken = {m.value: m.name for m in Csr}
    for reg, addr in extra.items():
        if addr in taken or reg in Csr.__members__:
            raise ValueError(f"{name}.{reg} = {addr} collides with common CSR "
                             f"{taken.get(addr, reg)}")
    return IntEnum(name, {**{m.name: m.value for m in Csr}, **extra})


CTRL_START = 1 << 0
CTRL_CLEAR = 1 << 2

STATUS_BUSY = 1 << 0
STATUS_DONE = 1 << 1
STATUS_ERROR = 1 << 2

COUNTERS = ("cycles", "busy_cycles", "macs", "zero_skips", "tiles")
COUNTER_CSRS = (Csr.CYCLES_LO, Csr.BUSY_LO, Csr.MACS_LO, Csr.SKIPS_LO, Csr.TILES_LO)

# --- bus operations: the wire format of a Program -------------------------------------------
OP_WRITE = 1   # (OP_WRITE, addr, word)
OP_READ = 2    # (OP_READ, addr, 0): appends the word read to the results
OP_WAIT = 3    # (OP_WAIT, 0, 0): wait until the accelerator is idle
OPS = {"OP_WRITE": OP_WRITE, "OP_READ": OP_READ, "OP_WAIT": OP_WAIT}


def pack_lanes(values: np.ndarray, lane_bits: int, words: int) -> np.ndarray:
    """uint32 words [..., words] holding the last axis of values as two's complement lanes of
    lane_bits (lane 0 in the low bits), zero-padded to whole words."""
    values = np.asarray(values)
    per_word = 32 // lane_bits
    lanes = (values.astype(np.int64) & ((1 << lane_bits) - 1)).astype(np.uint64)
    pad = words * per_word - values.shape[-1]
    if pad:
        lanes = np.concatenate([lanes, np.zeros(values.shape[:-1] + (pad,), np.uint64)], axis=-1)
    lanes = lanes.reshape(values.shape[:-1] + (words, per_word))
    shifts = (lane_bits * np.arange(per_word)).astype(np.uint64)
    return (lanes << shifts).sum(axis=-1).astype(np.uint32)


def log2ceil(n: int) -> int:
    return max(0, (n - 1).bit_length())


def to_signed(word: int, bits: int = BUS_BITS) -> int:
    word &= (1 << bits) - 1
    return word - (1 << bits) if word >> (bits - 1) else word


@dataclass(frozen=True)
class RegMapBase:
    """Address arithmetic every dataflow's register map shares; a subclass says how many
    offset bits its regions need and what its CONFIG words hold."""

    cfg: ArrayConfig

    @cached_property
    def region_bits(self) -> int:
        """Address bits inside one region (at least the CSRs' 5)."""
        return max(5, self.buffer_bits)

    @cached_property
    def buffer_bits(self) -> int:
        raise NotImplementedError

    @cached_property
    def addr_bits(self) -> int:
        return self.region_bits + 2

    def addr(self, region: Region, offset: int) -> int:
        return (int(region) << self.region_bits) | offset

    def csr(self, reg: int) -> int:
        return self.addr(Region.CSR, int(reg))

    def config0(self) -> int:
        c = self.cfg
        return (c.rows | c.cols << 8 | c.act_bits << 16 | c.acc_bits << 24
                | ACC_OVERFLOW_CODES[c.acc_overflow] << 30)

    def config_words(self) -> tuple[int, ...]:
        """CONFIG0, CONFIG1 (and the dataflow's further CONFIG words), as the top reads them."""
        raise NotImplementedError

    def config_csrs(self) -> tuple[int, ...]:
        """The CSRs config_words() are read from, in the same order."""
        return (Csr.CONFIG0, Csr.CONFIG1)

    def mismatched_field(self, words: tuple[int, ...]) -> str | None:
        """Which ArrayConfig field a device's CONFIG words differ in, as "field=device value
        (host: value)", when changing that one field alone explains them; else None."""
        c0 = words[0] if words else 0
        candidates = {"rows": (c0 & 0xFF,), "cols": (c0 >> 8 & 0xFF,),
                      "act_bits": (c0 >> 16 & 0xFF,), "acc_bits": (c0 >> 24 & 0x3F,),
                      "acc_overflow": ACC_OVERFLOW, "weight_packing": WEIGHT_PACKINGS,
                      "weight_buffers": (1, 2)}
        for field, values in candidates.items():
            mine = getattr(self.cfg, field)
            for value in values:
                if value == mine:
                    continue
                try:
                    other = type(self)(replace(self.cfg, **{field: value}))
                    if tuple(other.config_words()) == tuple(words):
                        return f"{field}={value!r} (host: {mine!r})"
                except ConfigError:
                    continue
        return None

    to_signed = staticmethod(to_signed)


class DeviceError(RuntimeError):
    """The device is not the accelerator the host expects, or it misbehaved."""


class Device(Protocol):
    cfg: ArrayConfig

    def execute(self, ops: np.ndarray) -> np.ndarray:
        """Run an [n, 3] int64 op list; returns the words of its reads, in order, as uint32."""
        ...

    def close(self) -> None: ...


class Program:
    """A list of bus operations, built from NumPy blocks so whole tiles are queued at once."""

    def __init__(self) -> None:
        self._blocks: list[np.ndarray] = []
        self.reads = 0

    def _ops(self, op: int, addrs: object, words: object = 0) -> None:
        addrs = np.asarray(addrs, dtype=np.int64).ravel()
        block = np.empty((len(addrs), 3), dtype=np.int64)
        block[:, 0] = op
        block[:, 1] = addrs
        block[:, 2] = np.ravel(np.asarray(words, dtype=np.int64) & 0xFFFFFFFF)
        self._blocks.append(block)

    def write(self, addr: int, word: int) -> None:
        self._blocks.append(np.array([[OP_WRITE, addr, word & 0xFFFFFFFF]], dtype=np.int64))

    def write_many(self, writes: np.ndarray) -> None:
        """writes: [n, 2] (address, word) pairs, as RegMap.pack_*_tile returns them."""
        writes = np.asarray(writes, dtype=np.int64).reshape(-1, 2)
        self._ops(OP_WRITE, writes[:, 0], writes[:, 1])

    def write_block(self, addrs: np.ndarray, words: np.ndarray) -> None:
        self._ops(OP_WRITE, addrs, words)

    def read(self, addr: int) -> int:
        """Queue a read; returns its index in the results."""
        self._blocks.append(np.array([[OP_READ, addr, 0]], dtype=np.int64))
        self.reads += 1
        return self.reads - 1

    def read_block(self, addrs: np.ndarray) -> np.ndarray:
        """Queue reads of addrs; returns their indices in the results."""
        self._ops(OP_READ, addrs)
        first = self.reads
        self.reads += len(np.ravel(addrs))
        return np.arange(first, self.reads)

    def extend(self, ops: np.ndarray, reads: int) -> None:
        """Append a ready-made [n, 3] op block holding `reads` reads."""
        self._blocks.append(ops)
        self.reads += reads

    def wait_idle(self) -> None:
        self._blocks.append(np.array([[OP_WAIT, 0, 0]], dtype=np.int64))

    def as_array(self) -> np.ndarray:
        if not self._blocks:
            return np.zeros((0, 3), dtype=np.int64)
        return np.concatenate(self._blocks)

    def __len__(self) -> int:
        return sum(len(b) for b in self._blocks)
