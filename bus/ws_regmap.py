"""The accelerator's host-visible register and buffer map (pure Python, no Amaranth).

The RTL (hdl/top.py), the cocotb benches, the C++ harness and every host backend derive
addresses and word packing from this one module, so none of them hard-codes a number.

Bus: 32-bit words, word addresses. A write is taken in the cycle `we` is high; a read
issued with `re` returns `rdata` one cycle later with `rvalid`. The top two address bits
select a region; each buffer region uses power-of-two strides so decoding needs no multiply.

  region 0  CSRs             (see Csr)
  region 1  weight buffer    entry e = tile * 2**ceil(log2 R) + row r, word j holds the
                             2-bit codes of cols 16j .. 16j+15 (col 16j in bits 1:0)
  region 2  activation buf   entry m (0..act_depth-1), word j holds rows 4j .. 4j+3 as
                             8-bit two's complement lanes (row 4j in bits 7:0)
  region 3  output buffer    entry m, word c = column c's accumulator, sign-extended

Weight code: two's complement of the ternary value (00 = 0, 01 = +1, 11 = -1). The PE reads
bit 0 as "non-zero" and bit 1 as "negate", so the invalid code 10 behaves as zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from functools import cached_property

import numpy as np

from ..golden.config import BUS_BITS, ArrayConfig

MAGIC = 0x54524954  # "TRIT"
VERSION = 1
CODES_PER_WORD = 16
ACTS_PER_WORD = 4


class Region(IntEnum):
    CSR = 0
    WEIGHT = 1
    ACT = 2
    OUT = 3


class Csr(IntEnum):
    ID = 0           # r: MAGIC
    VERSION = 1      # r: VERSION
    CONFIG0 = 2      # r: rows | cols << 8 | act_bits << 16 | acc_bits << 24
    CONFIG1 = 3      # r: act_depth | weight_tiles << 16
    CTRL = 4         # w: bit0 start, bit1 accumulate, bit2 clear counters
    M_COUNT = 5      # rw: vectors to stream in the next tile (1..act_depth)
    W_TILE = 6       # rw: weight-buffer tile slot the next tile uses
    STATUS = 7       # r: bit0 busy, bit1 done (since the last start), bit2 error (bad start)
    CYCLES_LO = 8    # r: cycles since the counters were cleared (64-bit counters: reading
    CYCLES_HI = 9    #    LO latches HI, so read LO then HI)
    BUSY_LO = 10     # r: cycles spent running tiles
    BUSY_HI = 11
    MACS_LO = 12     # r: add/subtract operations issued by PEs
    MACS_HI = 13
    SKIPS_LO = 14    # r: PE-cycles held by a zero weight
    SKIPS_HI = 15
    TILES_LO = 16    # r: tiles started
    TILES_HI = 17


CTRL_START = 1 << 0
CTRL_ACCUMULATE = 1 << 1
CTRL_CLEAR = 1 << 2

STATUS_BUSY = 1 << 0
STATUS_DONE = 1 << 1
STATUS_ERROR = 1 << 2

COUNTERS = ("cycles", "busy_cycles", "macs", "zero_skips", "tiles")
COUNTER_CSRS = (Csr.CYCLES_LO, Csr.BUSY_LO, Csr.MACS_LO, Csr.SKIPS_LO, Csr.TILES_LO)


def _pack_lanes(values: np.ndarray, lane_bits: int, words: int) -> np.ndarray:
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


def _log2ceil(n: int) -> int:
    return max(0, (n - 1).bit_length())


@dataclass(frozen=True)
class RegMap:
    """Address arithmetic for one ArrayConfig."""

    cfg: ArrayConfig

    @cached_property
    def weight_words(self) -> int:
        return -(-self.cfg.cols // CODES_PER_WORD)

    @cached_property
    def act_words(self) -> int:
        return -(-self.cfg.rows // ACTS_PER_WORD)

    @cached_property
    def weight_word_bits(self) -> int:
        return _log2ceil(self.weight_words)

    @cached_property
    def act_word_bits(self) -> int:
        return _log2ceil(self.act_words)

    @cached_property
    def out_word_bits(self) -> int:
        return _log2ceil(self.cfg.cols)

    @cached_property
    def row_bits(self) -> int:
        return _log2ceil(self.cfg.rows)

    @cached_property
    def weight_entry_bits(self) -> int:
        return _log2ceil(self.cfg.weight_tiles) + self.row_bits

    @cached_property
    def m_bits(self) -> int:
        return _log2ceil(self.cfg.act_depth)

    @cached_property
    def region_bits(self) -> int:
        """Address bits inside one region."""
        return max(
            5,  # CSRs
            self.weight_entry_bits + self.weight_word_bits,
            self.m_bits + self.act_word_bits,
            self.m_bits + self.out_word_bits,
        )

    @cached_property
    def addr_bits(self) -> int:
        return self.region_bits + 2

    def addr(self, region: Region, offset: int) -> int:
        return (int(region) << self.region_bits) | offset

    def csr(self, reg: Csr) -> int:
        return self.addr(Region.CSR, int(reg))

    def weight_addr(self, tile: int, row: int, word: int) -> int:
        entry = (tile << self.row_bits) | row
        return self.addr(Region.WEIGHT, (entry << self.weight_word_bits) | word)

    def act_addr(self, m: int, word: int) -> int:
        return self.addr(Region.ACT, (m << self.act_word_bits) | word)

    def out_addr(self, m: int, col: int) -> int:
        return self.addr(Region.OUT, (m << self.out_word_bits) | col)

    def config_words(self) -> tuple[int, int]:
        c = self.cfg
        return (
            c.rows | c.cols << 8 | c.act_bits << 16 | c.acc_bits << 24,
            c.act_depth | c.weight_tiles << 16,
        )

    # --- packing: what the host writes for one tile ---------------------------------
    # Vectorised, because the host packs every tile of every matmul it runs.

    def weight_words_of(self, codes: np.ndarray) -> np.ndarray:
        """uint32 words [..., rows, weight_words] holding ternary codes [..., rows, cols]."""
        return _pack_lanes(codes, 2, self.weight_words)

    def act_words_of(self, acts: np.ndarray) -> np.ndarray:
        """uint32 words [..., m, act_words] holding signed activations [..., m, rows]."""
        return _pack_lanes(acts, 8, self.act_words)

    def weight_addrs(self, tile: int) -> np.ndarray:
        """Addresses of slot `tile`, in the order of weight_words_of(...).ravel()."""
        entry = (tile << self.row_bits) | np.arange(self.cfg.rows)[:, None]
        offs = (entry << self.weight_word_bits) | np.arange(self.weight_words)[None, :]
        return (offs | int(Region.WEIGHT) << self.region_bits).ravel()

    def act_addrs(self, m: int) -> np.ndarray:
        """Addresses of entries 0..m-1, in the order of act_words_of(...).ravel()."""
        offs = (np.arange(m)[:, None] << self.act_word_bits) | np.arange(self.act_words)[None, :]
        return (offs | int(Region.ACT) << self.region_bits).ravel()

    def out_addrs(self, m: int, n: int) -> np.ndarray:
        """Addresses of the m x n output block, row-major."""
        offs = (np.arange(m)[:, None] << self.out_word_bits) | np.arange(n)[None, :]
        return (offs | int(Region.OUT) << self.region_bits).ravel()

    def pack_weight_tile(self, codes: np.ndarray, tile: int) -> np.ndarray:
        """[n, 2] (address, word) writes that put a rows x cols ternary tile into slot `tile`."""
        return np.stack([self.weight_addrs(tile), self.weight_words_of(codes).ravel()], axis=1)

    def pack_act_tile(self, acts: np.ndarray) -> np.ndarray:
        """[n, 2] (address, word) writes that put m x rows activations into entries 0..m-1."""
        words = self.act_words_of(acts).ravel()
        return np.stack([self.act_addrs(len(acts)), words], axis=1)

    @staticmethod
    def to_signed(word: int, bits: int = BUS_BITS) -> int:
        word &= (1 << bits) - 1
        return word - (1 << bits) if word >> (bits - 1) else word
