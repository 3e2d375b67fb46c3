"""Host driver for the accelerator's bus, independent of what carries the bus.

A host builds a Program (a list of bus operations) and hands it to a Device, which runs the
whole list in one call: the Verilator device runs it in C++ without returning to Python per
cycle, a board device would ship it over its link. Every backend that talks to the RTL (the
Verilator model, a board) therefore runs exactly this code.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ..golden.config import ArrayConfig
from ..golden.cycles import Events
from ..golden.tiling import Tile, act_tile, plan_gemm, weight_tile
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
    def __init__(self) -> None:
        self._ops: list[tuple[int, int, int]] = []
        self.reads = 0

    def write(self, addr: int, word: int) -> None:
        self._ops.append((OP_WRITE, addr, word & 0xFFFFFFFF))

    def write_many(self, writes: list[tuple[int, int]]) -> None:
        self._ops.extend((OP_WRITE, a, w & 0xFFFFFFFF) for a, w in writes)

    def read(self, addr: int) -> int:
        """Queue a read; returns its index in the results."""
        self._ops.append((OP_READ, addr, 0))
        self.reads += 1
        return self.reads - 1

    def wait_idle(self) -> None:
        self._ops.append((OP_WAIT, 0, 0))

    def as_array(self) -> np.ndarray:
        return np.array(self._ops, dtype=np.int64).reshape(-1, 3)

    def __len__(self) -> int:
        return len(self._ops)


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

    def queue_tile(self, prog: Program, a: np.ndarray, w: np.ndarray, t: Tile,
                   slot: int) -> list[int] | None:
        """Queue tile t (weights into `slot`, activations, start, wait). When the tile completes
        its output block, queue the output reads and return their indices (row-major)."""
        rm = self.map
        prog.write_many(rm.pack_weight_tile(weight_tile(self.cfg, w, t), slot))
        prog.write_many(rm.pack_act_tile(act_tile(self.cfg, a, t)))
        prog.write(rm.csr(Csr.M_COUNT), t.m)
        prog.write(rm.csr(Csr.W_TILE), slot)
        prog.write(rm.csr(Csr.CTRL),
                   regmap.CTRL_START | (regmap.CTRL_ACCUMULATE if t.accumulate else 0))
        prog.wait_idle()
        if not t.last_k:
            return None
        return [prog.read(rm.out_addr(i, j)) for i in range(t.m) for j in range(t.n)]

    def gemm(self, a: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, Events]:
        """int32 [M, N] = a [M, K] @ w [K, N] on the device, and the events its counters saw.

        Inputs must already be checked (golden.checks); the device runs one program per
        M x N output block so a program never holds more than one block's reads.
        """
        m, k = a.shape
        n = w.shape[1]
        out = np.zeros((m, n), dtype=np.int32)
        tiles = plan_gemm(self.cfg, m, k, n)
        prog = Program()
        start = self._queue_counters(prog)
        pending: list[tuple[Tile, list[int]]] = []
        before = after = None
        for i, t in enumerate(tiles):
            reads = self.queue_tile(prog, a, w, t, slot=i % self.cfg.weight_tiles)
            if reads is None:
                continue
            pending.append((t, reads))
            end = self._queue_counters(prog) if i == len(tiles) - 1 else None
            words = self.run(prog)
            if before is None:
                before = self._counters(words, start)
            for tt, idx in pending:
                block = _signed32(words[idx]).reshape(tt.m, tt.n)
                out[tt.m0 : tt.m0 + tt.m, tt.n0 : tt.n0 + tt.n] = block
            if end is not None:
                after = self._counters(words, end)
            prog, pending = Program(), []
        assert before is not None and after is not None
        events = Events(
            tiles=after["tiles"] - before["tiles"],
            cycles=after["busy_cycles"] - before["busy_cycles"],
            macs=after["macs"] - before["macs"],
            zero_skips=after["zero_skips"] - before["zero_skips"],
        )
        return out, events
