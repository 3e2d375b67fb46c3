"""cocotb driver for the accelerator's host bus, and the tile sequence a host runs on it.

Every operation starts just after a rising edge and ends just after one, so operations can
follow each other back to back.
"""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from ..bus.contract import (
    COUNTER_CSRS,
    COUNTERS,
    OP_READ,
    OP_WAIT,
    OP_WRITE,
    STATUS_BUSY,
    Csr,
    RegMapBase,
)
from .benchutil import uint


class BusMaster:
    def __init__(self, dut, rm: RegMapBase) -> None:
        self.dut = dut
        self.rm = rm
        self.clk = dut.clk
        dut.bus__we.value = 0
        dut.bus__re.value = 0
        dut.bus__addr.value = 0
        dut.bus__wdata.value = 0

    async def write_many(self, writes: list[tuple[int, int]]) -> None:
        for addr, word in writes:
            self.dut.bus__addr.value = addr
            self.dut.bus__wdata.value = word & 0xFFFFFFFF
            self.dut.bus__we.value = 1
            await RisingEdge(self.clk)
        self.dut.bus__we.value = 0

    async def write(self, addr: int, word: int) -> None:
        await self.write_many([(addr, word)])

    async def read(self, addr: int) -> int:
        self.dut.bus__addr.value = addr
        self.dut.bus__re.value = 1
        await RisingEdge(self.clk)
        self.dut.bus__re.value = 0
        await ReadOnly()
        assert uint(self.dut.bus__rvalid) == 1, "rvalid did not follow re by one cycle"
        word = uint(self.dut.bus__rdata)
        await RisingEdge(self.clk)
        return word

    async def read_csr(self, reg: int) -> int:
        return await self.read(self.rm.csr(reg))

    async def counters(self) -> dict[str, int]:
        out = {}
        for name, lo in zip(COUNTERS, COUNTER_CSRS, strict=True):
            low = await self.read_csr(lo)
            high = await self.read_csr(lo + 1)
            out[name] = high << 32 | low
        return out

    async def wait_idle(self, limit: int = 1_000_000) -> int:
        """Poll STATUS until not busy; returns the STATUS word."""
        for _ in range(limit):
            status = await self.read_csr(Csr.STATUS)
            if not status & STATUS_BUSY:
                return status
        raise TimeoutError("accelerator stayed busy")

    async def execute(self, ops: np.ndarray) -> np.ndarray:
        """Run a Program's op list over the bus, as the fast device does."""
        reads = []
        writes: list[tuple[int, int]] = []
        for op, addr, word in np.asarray(ops).tolist():
            if op == OP_WRITE:
                writes.append((addr, word))
                continue
            await self.write_many(writes)
            writes = []
            if op == OP_READ:
                reads.append(await self.read(addr))
            elif op == OP_WAIT:
                await self.wait_idle()
            else:
                raise ValueError(f"unknown bus op {op}")
        await self.write_many(writes)
        return np.array(reads, dtype=np.uint32)


class BenchDevice:
    """Stands in for a Device so the host driver can build programs; the bench runs them."""

    def __init__(self, cfg) -> None:
        self.cfg = cfg

    def execute(self, ops):
        raise RuntimeError("bench programs run through BusMaster.execute")

    def close(self) -> None:
        pass


class BusyMonitor:
    """Counts the clock edges the accelerator's busy pin is high, independently of its counters."""

    def __init__(self, dut) -> None:
        self.dut = dut
        self.count = 0
        cocotb.start_soon(self._run())

    async def _run(self) -> None:
        while True:
            await RisingEdge(self.dut.clk)
            await ReadOnly()
            self.count += uint(self.dut.busy)
