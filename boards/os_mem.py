"""The memory behind the os top's port on a board: one on-chip RAM, filled over the link.

On a board there is no DRAM: the rows the os top streams (weights, activations) and the result
rows it writes live in a block RAM of ArrayConfig.dram_words rows (0: sized for one pass at
max_k, golden.os_model.stream_dram_words) of dram_bytes_per_cycle bytes. The host reaches the
same RAM as bus region 1 (bus/os_regmap.py), so the os driver fills it and reads results back
over the link exactly as it does with the Verilator device (sim/cpp/mem_port.h).

Timing (golden/os_port.py is the contract): a request taken in cycle c reads the RAM in c (a
synchronous read port), its row is in a small response FIFO from c + 2 on, and responses leave
in order. That is PortTiming(latency=1) at full rate, no stalls, depth 3 (latency + 2):
BOARD_TIMING, the timing golden must be given for the board's cycle counters.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..bus.contract import Region
from ..bus.os_regmap import OsRegMap
from ..golden.config import ArrayConfig
from ..golden.os_port import PortTiming
from ..hdl.os_top import mem_port_signature
from ..hdl.top import bus_signature

__all__ = ["BOARD_TIMING", "OsBoardMemory"]

# The RAM's registered read is the one cycle of latency; a FIFO of latency + 2 rows keeps a
# response ready for every load and compute beat (golden.os_port.PortTiming.ideal).
BOARD_TIMING = PortTiming(latency=1)


class OsBoardMemory(wiring.Component):
    """Sits on the host bus in front of the os top and serves its memory port.

    host: the bus from the link. Region 1 operations are served here (word j of row r at offset
      r << word_bits | j); all others pass through to `acc`, whose read data comes back through
      here (reads answer one cycle after `re`, as bus/contract.py says).
    acc: the bus to the os top.
    port: the os top's `mem` port (requests, in-order responses, result writes).
    """

    def __init__(self, cfg: ArrayConfig) -> None:
        if cfg.dataflow != "os":
            raise ValueError(f"OsBoardMemory serves the os top; ArrayConfig.dataflow="
                             f"{cfg.dataflow!r}")
        self.cfg = cfg
        self.map = OsRegMap(cfg)
        rm = self.map
        super().__init__({
            "host": In(bus_signature(rm.addr_bits)),
            "acc": Out(bus_signature(rm.addr_bits)),
            "port": In(mem_port_signature(rm.dram_bits, 8 * rm.row_bytes)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        rm, host, acc, port = self.map, self.host, self.acc, self.port
        timing = BOARD_TIMING
        depth = timing.capacity()

        ram = Memory(shape=unsigned(8 * rm.row_bytes), depth=rm.dram_words, init=[])
        m.submodules.ram = ram
        wr = ram.write_port(granularity=32)
        rd = ram.read_port()

        region = host.addr[rm.region_bits:]
        offset = host.addr[: rm.region_bits]
        mine = region == int(Region.WEIGHT)
        host_row = offset[rm.word_bits : rm.word_bits + rm.dram_bits]
        host_word = offset[: rm.word_bits] if rm.word_bits else 0

        # --- the bus: region 1 here, the rest to the top ---------------------------------------
        m.d.comb += [
            acc.addr.eq(host.addr),
            acc.wdata.eq(host.wdata),
            acc.we.eq(host.we & ~mine),
            acc.re.eq(host.re & ~mine),
        ]
        was_mine = Signal()          # last cycle's read was of region 1: answer from the RAM
        word_sel = Signal(max(rm.word_bits, 1))
        m.d.sync += was_mine.eq(host.re & mine)
        with m.If(host.re & mine):
            m.d.sync += word_sel.eq(host_word)
        words = [rd.data[32 * j : 32 * j + 32] for j in range(rm.row_words)]
        ram_word = Signal(32)
        with m.Switch(word_sel):
            for j, w in enumerate(words):
                with m.Case(j):
                    m.d.comb += ram_word.eq(w)
        m.d.comb += [
            host.rdata.eq(Mux(was_mine, ram_word, acc.rdata)),
            host.rvalid.eq(was_mine | acc.rvalid),
        ]

        # --- one write port: result rows (while busy) or a host word (while idle) ------------
        with m.If(port.wr_valid):
            m.d.comb += [wr.addr.eq(port.wr_addr), wr.data.eq(port.wr_data),
                         wr.en.eq((1 << rm.row_words) - 1)]
        with m.Elif(host.we & mine):
            m.d.comb += [wr.addr.eq(host_row),
                         wr.data.eq(host.wdata.replicate(rm.row_words)),
                         wr.en.eq(Const(1, rm.row_words) << host_word)]
        m.d.comb += port.wr_ready.eq(1)

        # --- reads: requests, the RAM's cycle, the response FIFO ----------------------------
        m.submodules.fifo = fifo = SyncFIFO(width=8 * rm.row_bytes, depth=depth)
        inflight = Signal()          # a request taken last cycle: its row is on rd.data now
        held = fifo.level + inflight     # requests taken and not yet answered
        m.d.comb += [
            port.rd_ready.eq(held < depth),
            rd.addr.eq(Mux(port.rd_valid, port.rd_addr, host_row)),
            fifo.w_data.eq(rd.data),
            fifo.w_en.eq(inflight),
            port.rsp_valid.eq(fifo.r_rdy),
            port.rsp_data.eq(fifo.r_data),
            fifo.r_en.eq(port.rsp_ready),
        ]
        m.d.sync += inflight.eq(port.rd_valid & port.rd_ready)
        return m
