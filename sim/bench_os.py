"""cocotb bench of the "os" top (hdl/os_top.py): the shared bus-level cases (sim/bench_bus.py)
run start by start (golden.os_model.stream_plan), pass timing, and the memory port.

The memory behind the port is a PortServer (sim/mem_server.py: golden/os_port.py's contract,
PortTiming from the TRITIUM_PORT environment variable as JSON); the bus master serves the
host's region-1 operations from it, as the Verilator harness (sim/cpp/mem_port.h) does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from ..bus.contract import OP_READ, OP_WAIT, OP_WRITE
from ..bus.os_regmap import OsCsr, OsRegMap
from ..golden.os_model import (
    stream_gemm_events,
    stream_load_cycles,
    stream_passes,
    stream_plan,
    stream_tile_cycles,
)
from ..golden.os_port import PortTiming
from .bench_bus import SHARED_TESTS, BusBench, Step, check_gemm, setup, weights
from .benchutil import act_values, uint
from .bus import BusMaster, BusyMonitor
from .mem_server import PortServer


def port_timing() -> PortTiming:
    return PortTiming(**json.loads(os.environ.get("TRITIUM_PORT", "{}")))


class MemoryServer:
    """Drives the os top's memory-port pins from a PortServer (sim/mem_server.py)."""

    def __init__(self, dut, rm: OsRegMap, timing: PortTiming) -> None:
        self.dut = dut
        self.port = PortServer(rm, timing)
        dut.mem__rd_ready.value = 0
        dut.mem__rsp_valid.value = 0
        dut.mem__wr_ready.value = 1
        cocotb.start_soon(self._run())

    async def _run(self) -> None:
        dut = self.dut
        while True:
            await RisingEdge(dut.clk)
            rd_ready, rsp_valid, data = self.port.offer()
            dut.mem__rd_ready.value = int(rd_ready)
            dut.mem__rsp_valid.value = int(rsp_valid)
            if rsp_valid:
                dut.mem__rsp_data.value = data
            await ReadOnly()
            self.port.take(uint(dut.busy), uint(dut.mem__rd_valid), uint(dut.mem__rd_addr),
                           uint(dut.mem__rsp_ready), uint(dut.mem__wr_valid),
                           uint(dut.mem__wr_addr), uint(dut.mem__wr_data))


class OsBusMaster(BusMaster):
    """The bus master, with region 1 (the memory behind the port) served by the bench."""

    def __init__(self, dut, rm: OsRegMap) -> None:
        super().__init__(dut, rm)
        self.server = MemoryServer(dut, rm, port_timing())

    async def execute(self, ops: np.ndarray) -> np.ndarray:
        reads = []
        rest = []
        for op, addr, word in np.asarray(ops).tolist():
            if op in (OP_WRITE, OP_READ) and self.server.port.mine(addr):
                rest.append((op, addr, word))
                continue
            # Keep the order: flush the memory operations queued before this one.
            reads += self._memory_ops(rest)
            rest = []
            if op == OP_WRITE:
                await self.write_many([(addr, word)])
            elif op == OP_READ:
                reads.append(await self.read(addr))
            elif op == OP_WAIT:
                await self.wait_idle()
            else:
                raise ValueError(f"unknown bus op {op}")
        reads += self._memory_ops(rest)
        return np.array(reads, dtype=np.uint32)

    def _memory_ops(self, ops: list[tuple[int, int, int]]) -> list[int]:
        out = []
        for op, addr, word in ops:
            if op == OP_WRITE:
                self.server.port.write(addr, word)
            else:
                out.append(self.server.port.read(addr))
        return out

# cocotb collects the tests it finds in this module's namespace.
(identification, random_gemms, corner_cases, accumulator_safe_limit, bad_starts_flag_error,
 counters_run_and_clear) = SHARED_TESTS


def pass_structure_cycles(cfg, m: int, k: int, n: int) -> int:
    """Busy cycles of one start, built from the per-pass model: each row loads, then runs
    stream_tile_cycles for each of its passes."""
    return m * (stream_load_cycles(cfg, k) + sum(
        count * stream_tile_cycles(cfg, k, cols) for cols, count in stream_passes(cfg, n)))


class OsBench(BusBench):
    def steps(self, a: np.ndarray, w: np.ndarray) -> Iterator[Step]:
        cfg, driver = self.cfg, self.driver
        (m, k), n = a.shape, w.shape[1]
        packed = driver.pack(w)
        loaded = None
        for job in stream_plan(cfg, m, k, n):
            load = job.n0 != loaded
            loaded = job.n0

            def queue(prog, job=job, load=load):
                if load:
                    driver.queue_weights(prog, packed, job)
                return driver.queue_job(prog, a, job)

            def place(words, reads, result, job=job):
                block = self.rm.results_of(words[reads], job.n)
                result[job.m0 : job.m0 + job.m, job.n0 : job.n0 + job.n] = block

            timing = port_timing()
            want = stream_gemm_events(cfg, w[:, job.n0 : job.n0 + job.n], job.m, timing)
            if timing.ideal:
                assert want.cycles == pass_structure_cycles(cfg, job.m, k, job.n) \
                    + 1 + timing.latency
            yield Step(str(job), queue, want, place)

    def bus_master(self, dut) -> BusMaster:
        return OsBusMaster(dut, self.rm)

    def check_whole(self, a, w, total, label) -> None:
        whole = stream_gemm_events(self.cfg, w, a.shape[0], port_timing())
        assert total == {"busy_cycles": whole.cycles, "macs": whole.macs,
                         "zero_skips": whole.zero_skips, "tiles": whole.tiles}, (label, total)

    def random_shapes(self) -> list[tuple[int, int, int]]:
        cfg = self.cfg
        p = cfg.pes
        k_max = min(cfg.max_k, 40)
        return [
            (1, 1, 1),
            (1, k_max, p),                                  # decode: one full pass
            (1, min(k_max, 2 * cfg.dram_bytes_per_cycle + 3), 2 * p + 1),  # K, N not multiples
            (3, min(k_max, 13), p + max(1, p // 2)),        # M > 1, a partial last pass
            (2, 1, 3 * p - 1 if p > 1 else 3),
        ]

    def corner_shape(self) -> tuple[int, int, int]:
        return 2, min(self.cfg.max_k, 9), self.cfg.pes + 1

    def safe_limit_k(self) -> int:
        return 1024

    def start_csrs(self) -> tuple[dict[int, int], list[dict[int, int]]]:
        return ({OsCsr.M_COUNT: 1, OsCsr.K_COUNT: 1, OsCsr.N_COUNT: 1, OsCsr.W_ROWS: 1},
                [{OsCsr.M_COUNT: 0}, {OsCsr.K_COUNT: 0}, {OsCsr.K_COUNT: self.cfg.max_k + 1},
                 {OsCsr.N_COUNT: 0}, {OsCsr.W_ROWS: 0}])


BENCH = OsBench


@cocotb.test()
async def pass_timing(dut):
    """Busy cycles of single starts, pass by pass: one pass of every width 1..P (and K across
    the activation-row boundary), so each term of stream_tile_cycles is exercised alone."""
    bench, bus, rng = await setup(dut)
    cfg = bench.cfg
    mon = BusyMonitor(dut)
    b = cfg.dram_bytes_per_cycle
    widths = sorted({1, 2, cfg.pes // 2, cfg.pes - 1, cfg.pes} - {0})
    for n in widths:
        for k in sorted({1, b - 1, b, b + 1} & set(range(1, cfg.max_k + 1)))[:3]:
            a = act_values(rng, (1, k), cfg.act_bits)
            await check_gemm(bench, bus, mon, a, weights(rng, k, n), f"pass {k}x{n}")


@cocotb.test()
async def port_registers_read_back(dut):
    """The os CSRs read back what was written; a region-1 word is the server's memory."""
    _, bus, rng = await setup(dut)
    rm = bus.rm
    for reg, value in ((OsCsr.K_COUNT, 7), (OsCsr.N_COUNT, 70000), (OsCsr.W_ROWS, 12345),
                       (OsCsr.O_BASE, rm.dram_words - 1)):
        await bus.write(rm.csr(reg), value)
        assert await bus.read_csr(reg) == value, reg
    word = int(rng.integers(0, 2**32))
    words = await bus.execute(np.array([[OP_WRITE, rm.dram_addr(rm.dram_words - 1, 0), word],
                                        [OP_READ, rm.dram_addr(rm.dram_words - 1, 0), 0]]))
    assert int(words[0]) == word
