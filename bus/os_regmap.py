"""Host-visible register and DRAM map of the "os" top (hdl/os_top.py); pure Python.

Common CSRs, the bus timing and the region select are bus/contract.py's; this map adds:

  CSRs      CONFIG1 = dram_bytes_per_cycle | log2(dram rows) << 16 | base3 << 24 (1 when
            ArrayConfig.weight_packing is "base3"); CONFIG2 = max_k;
            K_COUNT, N_COUNT and the DRAM base rows W_BASE, A_BASE, O_BASE (OsCsr).
  region 1  the memory behind the top's port (golden/os_port.py), served by the harness or
            board, not by the top: row e (0..dram_words-1) of B = dram_bytes_per_cycle
            bytes, word j holds bytes 4j..4j+3 of the row; rows use a power-of-two stride.
  (regions 2 and 3 read as zero)

Row contents, by what the engine does with them (golden/os_model.py has the schedule):
  weights   ArrayConfig.weight_packing "2bit": W = 4B 2-bit codes, lane i in bits 2i+1:2i
            (16 per word, as in bus/ws_regmap.py). "base3": W = B bytes, lane i in bits
            8i+7:8i holding w[5t .. 5t+4, column] as one base-3 byte (golden/base3.py, k = 5t
            the most significant digit; k past K pads with weight 0).
            Pass rows are k-step-major, G rows per k-step; row g of k-step t holds columns
            g*W .. g*W+W-1 of the pass, zero past its last column.
  acts      A int8 lanes, lane i in bits 8i+7:8i: a[m, r*A + i] in row r of activation row m
            (A = B, or 5*floor(B/5) with base3 so that a pentad never straddles two rows).
  results   L = B/4 int32 words: row d of a pass holds its columns d*L .. d*L+L-1.

The memory belongs to the engine while STATUS.busy: the host must not touch it then.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..golden.base3 import pack_base3
from ..golden.config import ConfigError
from ..golden.os_model import (
    acts_per_row,
    codes_per_row,
    k_per_lane,
    k_steps,
    results_per_row,
    stream_dram_words,
    stream_groups,
    stream_passes,
)
from .contract import Region, RegMapBase, extend_csrs, log2ceil, pack_lanes

BUS_ADDR_BITS = 32

OsCsr = extend_csrs("OsCsr", {
    "CONFIG2": 19,   # r: max_k
    "K_COUNT": 20,   # rw: reduction length K (1..max_k)
    "N_COUNT": 21,   # rw: output columns N (>= 1)
    "W_BASE": 22,    # rw: DRAM row of the first weight row
    "A_BASE": 23,    # rw: DRAM row of the first activation row
    "O_BASE": 24,    # rw: DRAM row the first result row is written to
    "W_ROWS": 25,    # rw: weight rows one activation row streams (golden stream_weight_rows)
})


@dataclass(frozen=True)
class OsRegMap(RegMapBase):
    """Address arithmetic and row packing for one ArrayConfig's os top."""

    def __post_init__(self) -> None:
        if self.cfg.dram_bytes_per_cycle % 4:
            raise ConfigError(f"ArrayConfig.dram_bytes_per_cycle must be a multiple of 4 for the "
                              f"os top, got {self.cfg.dram_bytes_per_cycle}")
        if self.addr_bits > BUS_ADDR_BITS:
            raise ConfigError(f"ArrayConfig.dram_words={self.dram_words} rows of "
                              f"{self.cfg.dram_bytes_per_cycle} bytes do not fit a "
                              f"{BUS_ADDR_BITS}-bit bus address; lower max_k or dram_words")

    @cached_property
    def dram_words(self) -> int:
        return stream_dram_words(self.cfg)

    @cached_property
    def dram_bits(self) -> int:
        """Row address bits."""
        return log2ceil(self.dram_words)

    @cached_property
    def row_bytes(self) -> int:
        return self.cfg.dram_bytes_per_cycle

    @cached_property
    def row_words(self) -> int:
        """32-bit bus words per DRAM row."""
        return self.row_bytes // 4

    @cached_property
    def word_bits(self) -> int:
        return log2ceil(self.row_words)

    @cached_property
    def codes_per_row(self) -> int:
        return codes_per_row(self.cfg)

    @cached_property
    def acts_per_row(self) -> int:
        return acts_per_row(self.cfg)

    @cached_property
    def results_per_row(self) -> int:
        return results_per_row(self.cfg)

    @cached_property
    def buffer_bits(self) -> int:
        return self.dram_bits + self.word_bits

    def dram_addr(self, row: int, word: int) -> int:
        return self.addr(Region.WEIGHT, (row << self.word_bits) | word)

    def dram_addrs(self, base: int, rows: int) -> np.ndarray:
        """Bus addresses of DRAM rows base..base+rows-1, every word, row-major."""
        offs = ((base + np.arange(rows, dtype=np.int64))[:, None] << self.word_bits) \
            | np.arange(self.row_words, dtype=np.int64)[None, :]
        return (offs | int(Region.WEIGHT) << self.region_bits).ravel()

    def config_words(self) -> tuple[int, int, int]:
        """CONFIG0, CONFIG1, CONFIG2."""
        c = self.cfg
        packing = int(c.weight_packing == "base3") << 24
        return self.config0(), c.dram_bytes_per_cycle | self.dram_bits << 16 | packing, c.max_k

    def config_csrs(self) -> tuple[int, ...]:
        return (OsCsr.CONFIG0, OsCsr.CONFIG1, OsCsr.CONFIG2)

    # --- packing: DRAM rows the host writes and reads (vectorised) -------------------------

    def code_rows(self, lanes: np.ndarray) -> np.ndarray:
        """uint32 words [..., row_words] of ternary codes [..., W] (one DRAM row each)."""
        return pack_lanes(lanes, 2, self.row_words)

    def weight_rows(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """DRAM image of ternary w [K, N] for one activation row's passes, in stream order.

        Returns (words [rows, row_words] uint32, pass_start [passes + 1]): pass p's rows are
        words[pass_start[p] : pass_start[p + 1]], so a job of whole passes is one slice.
        """
        w = np.asarray(w)
        k, n = w.shape
        lanes = self.codes_per_row
        t = k_per_lane(self.cfg)
        steps = k_steps(self.cfg, k)
        blocks, starts = [], [0]
        n0 = 0
        for cols, count in stream_passes(self.cfg, n):
            g = stream_groups(self.cfg, cols)
            # Each pass's columns padded to G*W lanes and K to whole k-steps, then cut
            # k-step-major into G rows per k-step.
            padded = np.zeros((steps * t, count, g * lanes), dtype=np.int8)
            padded[:k, :, :cols] = w[:, n0 : n0 + count * cols].reshape(k, count, cols)
            if t == 1:
                rows = padded.transpose(1, 0, 2).reshape(count * steps * g, lanes)
                blocks.append(self.code_rows(rows))
            else:
                # [count, step, lane, digit]: each lane's T digits become one base-3 byte.
                trits = padded.reshape(steps, t, count, g * lanes).transpose(2, 0, 3, 1)
                data = pack_base3(trits).reshape(count * steps * g, lanes)
                blocks.append(pack_lanes(data, 8, self.row_words))
            first = starts[-1]
            starts.extend(first + steps * g * (i + 1) for i in range(count))
            n0 += count * cols
        return np.concatenate(blocks), np.asarray(starts, dtype=np.int64)

    def act_rows(self, a: np.ndarray) -> np.ndarray:
        """uint32 words [M, ceil(K/A), row_words] of signed activations a [M, K]."""
        a = np.asarray(a)
        m, k = a.shape
        per = self.acts_per_row
        nrows = -(-k // per)
        lanes = np.zeros((m, nrows * per), dtype=np.int64)
        lanes[:, :k] = a
        return pack_lanes(lanes.reshape(m, nrows, per), 8, self.row_words)

    def results_of(self, words: np.ndarray, n: int) -> np.ndarray:
        """int32 [M, n] from one job's result rows, read back as words [M * rows * row_words]
        (per activation row: each pass's ceil(n_p/L) rows)."""
        words = np.asarray(words, dtype=np.uint32).view(np.int32)
        lanes = self.results_per_row
        out_rows = sum(count * -(-cols // lanes) for cols, count in stream_passes(self.cfg, n))
        per_row = words.reshape(-1, out_rows * lanes)
        cols = []
        pos = 0
        for width, count in stream_passes(self.cfg, n):
            rows = -(-width // lanes)
            block = per_row[:, pos : pos + count * rows * lanes]
            block = block.reshape(-1, count, rows * lanes)[:, :, :width]
            cols.append(block.reshape(-1, count * width))
            pos += count * rows * lanes
        return np.concatenate(cols, axis=1)
