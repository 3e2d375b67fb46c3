"""Register and buffer map of the weight-stationary ("ws") top (hdl/ws_top.py); pure Python.

The RTL, the cocotb benches and every host backend derive addresses and word packing from this
module and bus/contract.py, so none of them hard-codes a number. Common CSRs, the bus timing and
the region select are bus/contract.py's; this map adds:

  CSR W_TILE (6)             rw: weight-buffer tile slot the next tile uses
  CSR K_TILES (19)           rw: tiles one start runs (weight_buffers=2 only; else reads 0);
                             1 after reset, so a host that never writes it runs one tile
  CSR A_BASE (20)            rw: activation entry of the run's first vector (weight_buffers=2)
  CSR CONFIG2 (21)           r:  weight_buffers (2; absent from single-buffered tops)
  CONFIG1                    act_depth | weight_tiles << 16
  CTRL bit 1                 accumulate: add results into the output buffer (K tiles sum on chip)
  region 1  weight buffer    entry e = tile * 2**ceil(log2 R) + row r, word j holds the
                             2-bit codes of cols 16j .. 16j+15 (col 16j in bits 1:0)
  region 2  activation buf   entry m (0..act_depth-1), word j holds rows 4j .. 4j+3 as
                             8-bit two's complement lanes (row 4j in bits 7:0)
  region 3  output buffer    entry m, word c = column c's accumulator, sign-extended

A double-buffered top (weight_buffers=2) runs K_TILES tiles per start, back to back: tile i
takes weight slot (W_TILE + i) mod weight_tiles and activation entries A_BASE + i*M_COUNT ...
(mod act_depth), and adds into the output block unless it is tile 0 of a start without
accumulate (golden.tiling.Run).

Weight code: two's complement of the ternary value (00 = 0, 01 = +1, 11 = -1). The PE reads
bit 0 as "non-zero" and bit 1 as "negate", so the invalid code 10 behaves as zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .contract import Region, RegMapBase, extend_csrs, log2ceil, pack_lanes

CODES_PER_WORD = 16
ACTS_PER_WORD = 4

Csr = extend_csrs("Csr", {"W_TILE": 6, "K_TILES": 19, "A_BASE": 20, "CONFIG2": 21})
CTRL_ACCUMULATE = 1 << 1


@dataclass(frozen=True)
class WsRegMap(RegMapBase):
    """Address arithmetic for one ArrayConfig's ws top."""

    @cached_property
    def weight_words(self) -> int:
        return -(-self.cfg.cols // CODES_PER_WORD)

    @cached_property
    def act_words(self) -> int:
        return -(-self.cfg.rows // ACTS_PER_WORD)

    @cached_property
    def weight_word_bits(self) -> int:
        return log2ceil(self.weight_words)

    @cached_property
    def act_word_bits(self) -> int:
        return log2ceil(self.act_words)

    @cached_property
    def out_word_bits(self) -> int:
        return log2ceil(self.cfg.cols)

    @cached_property
    def row_bits(self) -> int:
        return log2ceil(self.cfg.rows)

    @cached_property
    def weight_entry_bits(self) -> int:
        return log2ceil(self.cfg.weight_tiles) + self.row_bits

    @cached_property
    def m_bits(self) -> int:
        return log2ceil(self.cfg.act_depth)

    @cached_property
    def buffer_bits(self) -> int:
        return max(
            self.weight_entry_bits + self.weight_word_bits,
            self.m_bits + self.act_word_bits,
            self.m_bits + self.out_word_bits,
        )

    def weight_addr(self, tile: int, row: int, word: int) -> int:
        entry = (tile << self.row_bits) | row
        return self.addr(Region.WEIGHT, (entry << self.weight_word_bits) | word)

    def act_addr(self, m: int, word: int) -> int:
        return self.addr(Region.ACT, (m << self.act_word_bits) | word)

    def out_addr(self, m: int, col: int) -> int:
        return self.addr(Region.OUT, (m << self.out_word_bits) | col)

    def config_words(self) -> tuple[int, ...]:
        c = self.cfg
        words = (self.config0(), c.act_depth | c.weight_tiles << 16)
        # single-buffered tops keep the two words they always had
        return words if c.weight_buffers == 1 else (*words, c.weight_buffers)

    def config_csrs(self) -> tuple[int, ...]:
        return (Csr.CONFIG0, Csr.CONFIG1, Csr.CONFIG2)[: len(self.config_words())]

    # --- packing: what the host writes for one tile ---------------------------------
    # Vectorised, because the host packs every tile of every matmul it runs.

    def weight_words_of(self, codes: np.ndarray) -> np.ndarray:
        """uint32 words [..., rows, weight_words] holding ternary codes [..., rows, cols]."""
        return pack_lanes(codes, 2, self.weight_words)

    def act_words_of(self, acts: np.ndarray) -> np.ndarray:
        """uint32 words [..., m, act_words] holding signed activations [..., m, rows]."""
        return pack_lanes(acts, 8, self.act_words)

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
