"""Host driver for the accelerator's bus, independent of what carries the bus.

A host builds a Program (a list of bus operations) and hands it to a Device, which runs the
whole list in one call: the Verilator device runs it in C++ without returning to Python per
cycle, a board device would ship it over its link. Every backend that talks to the RTL (the
Verilator model, a board) therefore runs exactly this code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..golden.config import ArrayConfig
from ..golden.cycles import Events
from ..golden.tiling import Tile, act_tile, check_gemm_dims, weight_tile
from ..hdl import regmap
from ..hdl.regmap import Csr, RegMap

OP_WRITE = 1   # (OP_WRITE, addr, word)
OP_READ = 2    # (OP_READ, addr, 0): appends the word read to the results
OP_WAIT = 3    # (OP_WAIT, 0, 0): wait until the accelerator is idle


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


@dataclass(frozen=True)
class PackedWeights:
    """A ternary weight [K, N] packed once into bus words for every tile of the array.

    words[kt, nt] holds the rows x weight_words words of K tile kt, N tile nt, ready to write
    into any slot; weights are static, so a model packs each matrix once at load time.
    """

    k: int
    n: int
    words: np.ndarray
    nnz: int


def _signed32(words: np.ndarray) -> np.ndarray:
    return np.asarray(words, dtype=np.uint32).view(np.int32)


class Accelerator:
    """Runs tiles and whole GEMMs on any Device, following golden.tiling's plan."""

    def __init__(self, device: Device, cfg: ArrayConfig | None = None) -> None:
        """cfg: the configuration the host expects (default: the one the device was built for);
        identify() checks the device against it."""
        self.device = device
        self.cfg = cfg or device.cfg
        self.map = RegMap(self.cfg)
        self._slots: np.ndarray | None = None

    def run(self, prog: Program) -> np.ndarray:
        return self.device.execute(prog.as_array())

    def identify(self) -> None:
        """Check the device is a tritium accelerator built for this ArrayConfig."""
        prog = Program()
        for reg in (Csr.ID, Csr.VERSION, Csr.CONFIG0, Csr.CONFIG1):
            prog.read(self.map.csr(reg))
        ident, version, c0, c1 = (int(x) for x in self.run(prog))
        if ident != regmap.MAGIC:
            raise DeviceError(f"device ID is {ident:#010x}, expected {regmap.MAGIC:#010x} "
                              "(is this a tritium accelerator?)")
        if version != regmap.VERSION:
            raise DeviceError(f"device speaks register-map version {version}, host speaks "
                              f"{regmap.VERSION}")
        if (c0, c1) != self.map.config_words():
            raise DeviceError(f"device array configuration words {c0:#x}, {c1:#x} do not match "
                              f"{self.cfg.name()} ({self.map.config_words()})")

    def _queue_counters(self, prog: Program) -> list[int]:
        idx = []
        for lo in regmap.COUNTER_CSRS:
            idx.append(prog.read(self.map.csr(lo)))
            prog.read(self.map.csr(Csr(lo + 1)))
        return idx

    @staticmethod
    def _counters(words: np.ndarray, idx: list[int]) -> dict[str, int]:
        return {name: int(words[i + 1]) << 32 | int(words[i])
                for name, i in zip(regmap.COUNTERS, idx, strict=True)}

    def counters(self) -> dict[str, int]:
        prog = Program()
        idx = self._queue_counters(prog)
        return self._counters(self.run(prog), idx)

    def pack(self, w: np.ndarray) -> PackedWeights:
        """Pack ternary w [K, N] for this array (inputs must already be checked)."""
        cfg = self.cfg
        k, n = w.shape
        kt, nt = -(-k // cfg.rows), -(-n // cfg.cols)
        padded = np.zeros((kt * cfg.rows, nt * cfg.cols), dtype=np.int8)
        padded[:k, :n] = w
        tiles = padded.reshape(kt, cfg.rows, nt, cfg.cols).transpose(0, 2, 1, 3)
        words = self.map.weight_words_of(tiles).reshape(kt, nt, -1)
        return PackedWeights(k, n, words, int(np.count_nonzero(w)))

    def queue_tile(self, prog: Program, a: np.ndarray, w: np.ndarray | PackedWeights, t: Tile,
                   slot: int) -> np.ndarray | None:
        """Queue tile t (weights into `slot`, activations, start, wait). When the tile completes
        its output block, queue the output reads and return their indices (row-major)."""
        rm = self.map
        if isinstance(w, PackedWeights):
            wwords = w.words[t.k0 // self.cfg.rows, t.n0 // self.cfg.cols]
        else:
            wwords = rm.weight_words_of(weight_tile(self.cfg, w, t)).ravel()
        awords = rm.act_words_of(act_tile(self.cfg, a, t))
        return self._queue_words(prog, wwords, rm.act_addrs(t.m), awords, t, slot)

    def _queue_words(self, prog: Program, wwords: np.ndarray, aaddrs: np.ndarray,
                     awords: np.ndarray, t: Tile, slot: int) -> np.ndarray | None:
        rm = self.map
        prog.write_block(self._slot_addrs[slot], wwords)
        prog.write_block(aaddrs, awords)
        prog.write(rm.csr(Csr.M_COUNT), t.m)
        prog.write(rm.csr(Csr.W_TILE), slot)
        prog.write(rm.csr(Csr.CTRL),
                   regmap.CTRL_START | (regmap.CTRL_ACCUMULATE if t.accumulate else 0))
        prog.wait_idle()
        if not t.last_k:
            return None
        return prog.read_block(rm.out_addrs(t.m, t.n))

    @property
    def _slot_addrs(self) -> np.ndarray:
        """[weight_tiles, rows * weight_words] addresses of every weight slot."""
        if self._slots is None:
            self._slots = np.stack([self.map.weight_addrs(s)
                                    for s in range(self.cfg.weight_tiles)])
        return self._slots

    def _chunk_ops(self, packed: PackedWeights, awords: np.ndarray, mm: int,
                   first_tile: int) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
        """The op list of one M chunk (every N tile, K tiles innermost, as plan_gemm orders
        them), built without a Python step per tile: the same ops queue_tile would queue.

        Returns the ops and, per N tile, (n0, nn, index of its first output read)."""
        cfg, rm = self.cfg, self.map
        kt, nt, wl = packed.words.shape
        al = awords.shape[1]
        ntiles = kt * nt
        idx = np.arange(ntiles)
        ktile, ntile = idx % kt, idx // kt
        slot = (first_tile + idx) % cfg.weight_tiles
        seg = np.empty((ntiles, wl + al + 4, 3), dtype=np.int64)
        seg[:, : wl + al + 3, 0] = OP_WRITE
        seg[:, :wl, 1] = self._slot_addrs[slot]
        seg[:, :wl, 2] = packed.words[ktile, ntile]
        seg[:, wl : wl + al, 1] = rm.act_addrs(mm)
        seg[:, wl : wl + al, 2] = awords[ktile]
        csr = wl + al
        seg[:, csr, 1:] = (rm.csr(Csr.M_COUNT), mm)
        seg[:, csr + 1, 1] = rm.csr(Csr.W_TILE)
        seg[:, csr + 1, 2] = slot
        seg[:, csr + 2, 1] = rm.csr(Csr.CTRL)
        seg[:, csr + 2, 2] = regmap.CTRL_START | np.where(ktile > 0, regmap.CTRL_ACCUMULATE, 0)
        seg[:, csr + 3] = (OP_WAIT, 0, 0)
        blocks, outputs, nread = [], [], 0
        reads = {}
        for j in range(nt):
            n0 = j * cfg.cols
            nn = min(cfg.cols, packed.n - n0)
            if nn not in reads:
                reads[nn] = np.stack([np.full(mm * nn, OP_READ), rm.out_addrs(mm, nn),
                                      np.zeros(mm * nn, dtype=np.int64)], axis=1)
            blocks += [seg[j * kt : (j + 1) * kt].reshape(-1, 3), reads[nn]]
            outputs.append((n0, nn, nread))
            nread += mm * nn
        return np.concatenate(blocks), outputs

    def gemm(self, a: np.ndarray, w: np.ndarray | PackedWeights) -> tuple[np.ndarray, Events]:
        """int32 [M, N] = a [M, K] @ w [K, N] on the device, and the events its counters saw.

        Inputs must already be checked (golden.checks); w may be packed once with pack().
        The device runs one program per M chunk of act_depth rows.
        """
        packed = w if isinstance(w, PackedWeights) else self.pack(w)
        cfg, rm = self.cfg, self.map
        m, k = a.shape
        check_gemm_dims(cfg, m, k, packed.n)
        out = np.zeros((m, packed.n), dtype=np.int32)
        kt = packed.words.shape[0]
        tiles_per_chunk = kt * packed.words.shape[1]
        counters = []
        for i, m0 in enumerate(range(0, m, cfg.act_depth)):
            mm = min(cfg.act_depth, m - m0)
            chunk = np.zeros((mm, kt * cfg.rows), dtype=np.int16)
            chunk[:, :k] = a[m0 : m0 + mm]
            awords = rm.act_words_of(chunk.reshape(mm, kt, cfg.rows).transpose(1, 0, 2))
            ops, outputs = self._chunk_ops(packed, awords.reshape(kt, -1), mm,
                                           i * tiles_per_chunk)
            prog = Program()
            first = self._queue_counters(prog) if i == 0 else None
            prog.extend(ops, sum(mm * nn for _, nn, _ in outputs))
            last = self._queue_counters(prog) if m0 + mm >= m else None
            words = self.run(prog)
            base = len(first) * 2 if first is not None else 0
            for n0, nn, at in outputs:
                block = words[base + at : base + at + mm * nn]
                out[m0 : m0 + mm, n0 : n0 + nn] = _signed32(block).reshape(mm, nn)
            if first is not None:
                counters.append(self._counters(words, first))
            if last is not None:
                counters.append(self._counters(words, last))
        before, after = counters[0], counters[-1]
        events = Events(
            tiles=after["tiles"] - before["tiles"],
            cycles=after["busy_cycles"] - before["busy_cycles"],
            macs=after["macs"] - before["macs"],
            zero_skips=after["zero_skips"] - before["zero_skips"],
        )
        return out, events
