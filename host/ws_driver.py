"""Host driver of the weight-stationary ("ws") top (hdl/ws_top.py), tile by tile following
golden.tiling's plan (plan_gemm; plan_runs for a double-buffered top)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..bus.contract import CTRL_START, OP_READ, OP_WAIT, OP_WRITE, Program, Region
from ..bus.ws_regmap import CTRL_ACCUMULATE, Csr, WsRegMap
from ..golden.cycles import Events
from ..golden.tiling import Run, Tile, act_tile, check_gemm_dims, plan_runs, weight_tile
from .driver import DataflowDriver


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


class WsDriver(DataflowDriver):
    """Runs tiles and whole GEMMs on a ws Device, following golden.tiling's plan."""

    dataflow = "ws"
    regmap = WsRegMap

    def __init__(self, device, cfg=None) -> None:
        super().__init__(device, cfg)
        self._slots: np.ndarray | None = None

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

    def queue_run(self, prog: Program, a: np.ndarray, w: np.ndarray | PackedWeights,
                  run: Run) -> np.ndarray | None:
        """Queue one start of a double-buffered top: the run's weight slots and activation
        entries, its CSRs, start, wait; and, when it completes its output block, the output
        reads (their indices, row-major)."""
        packed = w if isinstance(w, PackedWeights) else self.pack(w)
        t0 = run.tiles[0]
        return self._queue_run_words(prog, packed, self._chunk_act_words(a, t0.m0, t0.m), run)

    def _chunk_act_words(self, a: np.ndarray, m0: int, mm: int) -> np.ndarray:
        """Activation words [K tiles, mm * act_words] of rows m0:m0+mm, zero-padded in K."""
        cfg = self.cfg
        kt = -(-a.shape[1] // cfg.rows)
        chunk = np.zeros((mm, kt * cfg.rows), dtype=np.int16)
        chunk[:, : a.shape[1]] = a[m0 : m0 + mm]
        words = self.map.act_words_of(chunk.reshape(mm, kt, cfg.rows).transpose(1, 0, 2))
        return words.reshape(kt, -1)

    def _queue_run_words(self, prog: Program, packed: PackedWeights, awords: np.ndarray,
                         run: Run) -> np.ndarray | None:
        """queue_run's ops as one block (a prefill queues thousands of runs)."""
        cfg, rm = self.cfg, self.map
        ks = np.array([t.k0 // cfg.rows for t in run.tiles])
        slots = (run.slot + np.arange(len(ks))) % cfg.weight_tiles
        wwords = packed.words[ks, run.tiles[0].n0 // cfg.cols].ravel()
        entries = (run.act_base + np.arange(len(ks) * run.m)) % cfg.act_depth
        aaddrs = ((entries[:, None] << rm.act_word_bits) | np.arange(rm.act_words)[None, :]
                  | rm.addr(Region.ACT, 0)).ravel()
        n = run.tiles[0].n
        nw, na, nr = len(wwords), len(aaddrs), run.m * n if run.last_k else 0
        ops = np.zeros((nw + na + 6 + nr, 3), dtype=np.int64)
        ops[: nw + na + 5, 0] = OP_WRITE
        ops[:nw, 1], ops[:nw, 2] = self._slot_addrs[slots].ravel(), wwords
        ops[nw : nw + na, 1], ops[nw : nw + na, 2] = aaddrs, awords[ks].ravel()
        ctrl = CTRL_START | (CTRL_ACCUMULATE if run.accumulate else 0)
        ops[nw + na : nw + na + 5, 1] = self._run_csrs
        ops[nw + na : nw + na + 5, 2] = (run.m, run.slot, len(ks), run.act_base, ctrl)
        ops[nw + na + 5, 0] = OP_WAIT
        if nr:
            ops[nw + na + 6 :, 0] = OP_READ
            ops[nw + na + 6 :, 1] = rm.out_addrs(run.m, n)
        first = prog.reads
        prog.extend(ops, nr)
        return np.arange(first, first + nr) if run.last_k else None

    def _gemm_runs(self, a: np.ndarray, packed: PackedWeights) -> tuple[np.ndarray, Events]:
        """gemm on a double-buffered top: one program per M chunk of plan_runs."""
        m, k = a.shape
        out = np.zeros((m, packed.n), dtype=np.int32)
        runs = plan_runs(self.cfg, m, k, packed.n)
        chunks: dict[int, list[Run]] = {}
        for run in runs:
            chunks.setdefault(run.tiles[0].m0, []).append(run)
        counters = []
        for i, chunk in enumerate(chunks.values()):
            prog = Program()
            first = self.queue_counters(prog) if i == 0 else None
            t0 = chunk[0].tiles[0]
            awords = self._chunk_act_words(a, t0.m0, t0.m)
            reads = [(run, self._queue_run_words(prog, packed, awords, run)) for run in chunk]
            last = self.queue_counters(prog) if i == len(chunks) - 1 else None
            words = self.run(prog)
            for run, idx in reads:
                if idx is not None:
                    t = run.tiles[0]
                    block = _signed32(words[idx]).reshape(t.m, t.n)
                    out[t.m0 : t.m0 + t.m, t.n0 : t.n0 + t.n] = block
            if first is not None:
                counters.append(self.counters_of(words, first))
            if last is not None:
                counters.append(self.counters_of(words, last))
        return out, self.events_between(counters[0], counters[-1])

    def _queue_words(self, prog: Program, wwords: np.ndarray, aaddrs: np.ndarray,
                     awords: np.ndarray, t: Tile, slot: int) -> np.ndarray | None:
        rm = self.map
        prog.write_block(self._slot_addrs[slot], wwords)
        prog.write_block(aaddrs, awords)
        prog.write(rm.csr(Csr.M_COUNT), t.m)
        prog.write(rm.csr(Csr.W_TILE), slot)
        prog.write(rm.csr(Csr.CTRL),
                   CTRL_START | (CTRL_ACCUMULATE if t.accumulate else 0))
        prog.wait_idle()
        if not t.last_k:
            return None
        return prog.read_block(rm.out_addrs(t.m, t.n))

    @cached_property
    def _run_csrs(self) -> np.ndarray:
        """Addresses of the CSRs a run writes, in _queue_run_words's order."""
        return np.array([self.map.csr(r) for r in (Csr.M_COUNT, Csr.W_TILE, Csr.K_TILES,
                                                   Csr.A_BASE, Csr.CTRL)])

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
        seg[:, csr + 2, 2] = CTRL_START | np.where(ktile > 0, CTRL_ACCUMULATE, 0)
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
        The device runs one program per M chunk (act_depth rows; plan_runs's chunk when the
        top is double-buffered).
        """
        packed = w if isinstance(w, PackedWeights) else self.pack(w)
        cfg, rm = self.cfg, self.map
        m, k = a.shape
        check_gemm_dims(cfg, m, k, packed.n)
        if cfg.weight_buffers == 2:
            return self._gemm_runs(a, packed)
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
            first = self.queue_counters(prog) if i == 0 else None
            prog.extend(ops, sum(mm * nn for _, nn, _ in outputs))
            last = self.queue_counters(prog) if m0 + mm >= m else None
            words = self.run(prog)
            base = len(first) * 2 if first is not None else 0
            for n0, nn, at in outputs:
                block = words[base + at : base + at + mm * nn]
                out[m0 : m0 + mm, n0 : n0 + nn] = _signed32(block).reshape(mm, nn)
            if first is not None:
                counters.append(self.counters_of(words, first))
            if last is not None:
                counters.append(self.counters_of(words, last))
        return out, self.events_between(counters[0], counters[-1])
