"""cocotb driver for the accelerator's host bus, and the tile sequence a host runs on it.

Every operation starts just after a rising edge and ends just after one, so operations can
follow each other back to back.
"""

from __future__ import annotations

import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from ..golden.tiling import Tile, act_tile, weight_tile
from ..hdl import regmap
from ..hdl.regmap import Csr, RegMap
from .benchutil import uint


class BusMaster:
    def __init__(self, dut, rm: RegMap) -> None:
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

    async def read_csr(self, reg: Csr) -> int:
        return await self.read(self.rm.csr(reg))

    async def counters(self) -> dict[str, int]:
        out = {}
        for name, lo in zip(regmap.COUNTERS, regmap.COUNTER_CSRS, strict=True):
            low = await self.read_csr(lo)
            high = await self.read_csr(Csr(lo + 1))
            out[name] = high << 32 | low
        return out

    async def wait_idle(self, limit: int = 1_000_000) -> int:
        """Poll STATUS until not busy; returns the STATUS word."""
        for _ in range(limit):
            status = await self.read_csr(Csr.STATUS)
            if not status & regmap.STATUS_BUSY:
                return status
        raise TimeoutError("accelerator stayed busy")

    async def run_tile(self, a: np.ndarray, w: np.ndarray, t: Tile, slot: int = 0) -> int:
        """Load tile t's weights into `slot` and its activations, start it, wait; returns STATUS."""
        cfg = self.rm.cfg
        await self.write_many(self.rm.pack_weight_tile(weight_tile(cfg, w, t), slot))
        await self.write_many(self.rm.pack_act_tile(act_tile(cfg, a, t)))
        await self.write(self.rm.csr(Csr.M_COUNT), t.m)
        await self.write(self.rm.csr(Csr.W_TILE), slot)
        ctrl = regmap.CTRL_START | (regmap.CTRL_ACCUMULATE if t.accumulate else 0)
        await self.write(self.rm.csr(Csr.CTRL), ctrl)
        return await self.wait_idle()

    async def read_outputs(self, m: int, n: int) -> np.ndarray:
        out = np.zeros((m, n), dtype=np.int64)
        for i in range(m):
            for j in range(n):
                out[i, j] = RegMap.to_signed(await self.read(self.rm.out_addr(i, j)))
        return out
