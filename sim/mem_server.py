"""The memory behind the os top's port, in Python, cycle by cycle as golden.os_port says.

One clock cycle is `offer()` (what the server drives before the edge), then `take(...)` with
the top's outputs of that cycle (the transfers at the edge). The cocotb bench (sim/bench_os.py)
and the pyverilator device (sim/pyverilated.py) drive the top's pins from it; the Verilator
device has the same server in C++ (sim/cpp/mem_port.h). Bus region 1 is this memory too.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from ..bus.os_regmap import OsRegMap
from ..golden.os_port import PortTiming, stalled


class PortServer:
    def __init__(self, rm: OsRegMap, timing: PortTiming) -> None:
        self.rm, self.timing = rm, timing
        self.mem = np.zeros((rm.dram_words, rm.row_words), dtype=np.uint32)
        self.row = rm.row_bytes
        self._rate, self._depth = timing.rate(rm.cfg), timing.capacity()
        self._pending: deque[tuple[int, int]] = deque()   # (answered from cycle i, row)
        self._credit, self._index, self._was_busy = self.row, 0, False
        self._rd_ready = self._rsp_valid = False

    # --- the host's view: bus region 1 -------------------------------------------------------

    def mine(self, addr: int) -> bool:
        return addr >> self.rm.region_bits == 1

    def _where(self, addr: int) -> tuple[int, int]:
        off = addr & ((1 << self.rm.region_bits) - 1)
        return (off >> self.rm.word_bits) % self.rm.dram_words, off & (self.rm.row_words - 1)

    def write(self, addr: int, word: int) -> None:
        self.mem[self._where(addr)] = word & 0xFFFFFFFF

    def read(self, addr: int) -> int:
        return int(self.mem[self._where(addr)])

    # --- the top's view: one cycle ------------------------------------------------------------

    def offer(self) -> tuple[bool, bool, int]:
        """(rd_ready, rsp_valid, rsp_data) for this cycle; wr_ready is always 1."""
        if not self._was_busy:
            self._index, self._credit = 0, self.row
        self._rd_ready = (not stalled(self.timing, self._index) and self._credit >= self.row
                          and len(self._pending) < self._depth)
        self._rsp_valid = bool(self._pending) and self._pending[0][0] <= self._index
        data = 0
        if self._rsp_valid:
            data = int.from_bytes(self.mem[self._pending[0][1]].astype("<u4").tobytes(),
                                  "little")
        return self._rd_ready, self._rsp_valid, data

    def take(self, busy: int, rd_valid: int, rd_addr: int, rsp_ready: int, wr_valid: int,
             wr_addr: int, wr_data: int) -> None:
        """The top's outputs of this cycle: do its transfers."""
        spend = 0
        if wr_valid:
            raw = (wr_data & ((1 << (8 * self.row)) - 1)).to_bytes(self.row, "little")
            self.mem[wr_addr % self.rm.dram_words] = np.frombuffer(raw, dtype="<u4")
        if self._rsp_valid and rsp_ready:
            self._pending.popleft()
        if self._rd_ready and rd_valid:
            self._pending.append((self._index + 1 + self.timing.latency,
                                  rd_addr % self.rm.dram_words))
            spend = self.row
        self._credit = min(self._credit - spend + self._rate, self.row)
        self._was_busy = bool(busy)
        self._index += self._was_busy
