"""The accelerator top: buffers, tile control, performance counters and a 32-bit host bus."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..golden.config import BUS_BITS, ArrayConfig
from . import regmap
from .array import SystolicArray
from .regmap import Csr, Region, RegMap

COUNTER_BITS = 64


def bus_signature(addr_bits: int) -> wiring.Signature:
    """Word-addressed host bus; reads return one cycle after `re` (see hdl/regmap.py)."""
    return wiring.Signature({
        "addr": Out(addr_bits),
        "wdata": Out(BUS_BITS),
        "we": Out(1),
        "re": Out(1),
        "rdata": In(BUS_BITS),
        "rvalid": In(1),
    })


def accelerator_signature(addr_bits: int) -> wiring.Signature:
    """The ports every accelerator top has, whatever its dataflow: harnesses drive any of them."""
    return wiring.Signature({
        "bus": In(bus_signature(addr_bits)),
        "busy": Out(1),
        "done": Out(1),
    })


class TernaryAccelerator(wiring.Component):
    """Weight, activation and output buffers around a SystolicArray.

    One tile: the host fills a weight slot and m activation entries, writes M_COUNT and W_TILE,
    then CTRL.start (optionally with accumulate, which adds results into the output buffer
    instead of overwriting, so K tiles sum on chip). The tile takes exactly
    golden.cycles.tile_cycles(cfg, m) busy cycles:
      LOAD   R cycles: weight rows are read (one cycle ahead) and latched row by row.
      STREAM the activation buffer is read one entry per cycle into the array; each column's
             result is written (or accumulated) into its own output bank as it emerges, and
             the tile ends on column C-1's m-th write.
    """

    def __init__(self, cfg: ArrayConfig) -> None:
        self.cfg = cfg
        self.map = RegMap(cfg)
        super().__init__(accelerator_signature(self.map.addr_bits))

    def elaborate(self, platform) -> Module:
        m = Module()
        cfg, rm = self.cfg, self.map
        rows, cols = cfg.rows, cfg.cols
        bus = self.bus

        m.submodules.array = array = SystolicArray(cfg)

        # --- address decode ---------------------------------------------------------------
        region = bus.addr[rm.region_bits :]
        offset = bus.addr[: rm.region_bits]

        # --- buffers ----------------------------------------------------------------------
        wmem = Memory(shape=unsigned(32 * rm.weight_words),
                      depth=cfg.weight_tiles << rm.row_bits, init=[])
        amem = Memory(shape=unsigned(32 * rm.act_words), depth=cfg.act_depth, init=[])
        omems = [Memory(shape=signed(cfg.acc_bits), depth=cfg.act_depth, init=[])
                 for _ in range(cols)]
        m.submodules.wmem = wmem
        m.submodules.amem = amem
        for c, om in enumerate(omems):
            m.submodules[f"obank{c}"] = om

        w_wr = wmem.write_port(granularity=32)
        a_wr = amem.write_port(granularity=32)
        w_rd = wmem.read_port()
        a_rd = amem.read_port()
        o_wr = [om.write_port() for om in omems]
        o_rd = [om.read_port() for om in omems]

        # Host writes into the weight and activation buffers, one 32-bit word at a time.
        for port, reg, word_bits in ((w_wr, Region.WEIGHT, rm.weight_word_bits),
                                     (a_wr, Region.ACT, rm.act_word_bits)):
            nwords = len(port.en)
            word = offset[:word_bits] if word_bits else Const(0, 1)
            m.d.comb += [
                port.addr.eq(offset[word_bits:]),
                port.data.eq(Cat(*([bus.wdata] * nwords))),
            ]
            for j in range(nwords):
                m.d.comb += port.en[j].eq(bus.we & (region == reg) & (word == j))

        # --- control registers -------------------------------------------------------------
        # Full 16-bit fields, so an out-of-range write is caught by the start check instead of
        # being truncated into a legal value.
        m_count = Signal(16)
        w_tile = Signal(16)
        accumulate = Signal()
        done = Signal()
        error = Signal()
        busy = Signal()
        m.d.comb += [self.busy.eq(busy), self.done.eq(done)]

        csr_we = bus.we & (region == Region.CSR)
        ctrl_we = csr_we & (offset == Csr.CTRL)
        start_req = ctrl_we & bus.wdata[0]
        start_ok = Signal()
        m.d.comb += start_ok.eq(start_req & ~busy & (m_count != 0)
                                & (m_count <= cfg.act_depth) & (w_tile < cfg.weight_tiles))
        with m.If(csr_we & (offset == Csr.M_COUNT)):
            m.d.sync += m_count.eq(bus.wdata)
        with m.If(csr_we & (offset == Csr.W_TILE)):
            m.d.sync += w_tile.eq(bus.wdata)

        # --- tile sequencer -----------------------------------------------------------------
        load_row = Signal(range(max(rows, 2)))
        stream_j = Signal(range(cfg.act_depth + rows + cols))
        in_stream = Signal()
        issuing = Signal()     # an activation read is issued this cycle (data valid next cycle)
        act_valid = Signal()   # the activation port holds vector stream_j, entering the array
        nnz = Signal(range(rows * cols + 1))
        last_write = Signal()

        # Weight read port: during LOAD row i's data arrives in cycle i, read issued in i-1.
        tile_base = Signal(rm.weight_entry_bits)
        m.d.comb += tile_base.eq(w_tile << rm.row_bits)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += w_rd.addr.eq(Mux(start_ok, tile_base, offset[rm.weight_word_bits:]))
                with m.If(start_ok):
                    m.d.sync += [
                        busy.eq(1), done.eq(0), error.eq(0),
                        accumulate.eq(bus.wdata[1]),
                        load_row.eq(0), nnz.eq(0), stream_j.eq(0),
                    ]
                    m.next = "LOAD"
                with m.Elif(start_req):
                    m.d.sync += error.eq(1)
            with m.State("LOAD"):
                m.d.comb += [
                    w_rd.addr.eq(tile_base | (load_row + 1)),
                    array.w_row.eq(w_rd.data),
                    array.w_sel.eq(load_row),
                    array.w_en.eq(1),
                ]
                m.d.sync += [load_row.eq(load_row + 1), nnz.eq(nnz + array.nnz_row)]
                with m.If(load_row == rows - 1):
                    # Read vector 0 now so it reaches the array in the first STREAM cycle.
                    m.d.comb += issuing.eq(1)
                    m.next = "STREAM"
            with m.State("STREAM"):
                m.d.comb += in_stream.eq(1)
                m.d.comb += act_valid.eq(stream_j < m_count)
                m.d.comb += issuing.eq(stream_j + 1 < m_count)
                m.d.sync += stream_j.eq(stream_j + 1)
                with m.If(last_write):
                    m.d.sync += [busy.eq(0), done.eq(1)]
                    m.next = "IDLE"

        # Activation read port: the sequencer owns it while busy, the host otherwise.
        m.d.comb += a_rd.addr.eq(Mux(busy, Mux(in_stream, stream_j + 1, 0),
                                     offset[rm.act_word_bits:]))
        lanes = a_rd.data
        for r in range(rows):
            m.d.comb += array.act[r].eq(lanes[8 * r : 8 * r + cfg.act_bits])
        m.d.comb += array.act_valid.eq(act_valid)

        # --- output banks: write (or accumulate) each column as it emerges ------------------
        # `issuing` runs one cycle ahead of act_valid, so delaying it by the column latency
        # gives the cycle before each write: when the old value must be read to accumulate.
        pre_taps = [issuing]
        for i in range(rows + cols - 2):
            t = Signal(name=f"pre_d{i + 1}")
            m.d.sync += t.eq(pre_taps[-1])
            pre_taps.append(t)

        wr_cnt = [Signal(range(cfg.act_depth + 1), name=f"wr_cnt{c}") for c in range(cols)]
        rd_cnt = [Signal(range(cfg.act_depth + 1), name=f"rd_cnt{c}") for c in range(cols)]
        out_m = offset[rm.out_word_bits:]
        for c in range(cols):
            pre = pre_taps[rows - 1 + c]
            with m.If(start_ok):
                m.d.sync += [wr_cnt[c].eq(0), rd_cnt[c].eq(0)]
            with m.If(busy & pre):
                m.d.sync += rd_cnt[c].eq(rd_cnt[c] + 1)
            m.d.comb += o_rd[c].addr.eq(Mux(busy, rd_cnt[c], out_m))
            old = Mux(accumulate, o_rd[c].data, 0)
            m.d.comb += [
                o_wr[c].addr.eq(wr_cnt[c]),
                o_wr[c].data.eq(array.out[c] + old),
                o_wr[c].en.eq(busy & array.out_valid[c]),
            ]
            with m.If(busy & array.out_valid[c]):
                m.d.sync += wr_cnt[c].eq(wr_cnt[c] + 1)
        m.d.comb += last_write.eq(array.out_valid[cols - 1] & (wr_cnt[cols - 1] + 1 == m_count))

        # --- performance counters ------------------------------------------------------------
        counters = {name: Signal(COUNTER_BITS, name=name) for name in regmap.COUNTERS}
        clear = ctrl_we & bus.wdata[2]
        with m.If(clear):
            m.d.sync += [cnt.eq(0) for cnt in counters.values()]
        with m.Else():
            m.d.sync += [
                counters["cycles"].eq(counters["cycles"] + 1),
                counters["busy_cycles"].eq(counters["busy_cycles"] + busy),
            ]
            with m.If(start_ok):
                m.d.sync += counters["tiles"].eq(counters["tiles"] + 1)
            with m.If(act_valid):
                m.d.sync += [
                    counters["macs"].eq(counters["macs"] + nnz),
                    counters["zero_skips"].eq(counters["zero_skips"] + (rows * cols - nnz)),
                ]

        # --- bus reads ----------------------------------------------------------------------
        csr_value = Signal(BUS_BITS)
        hi_shadow = Signal(BUS_BITS)
        config0, config1 = rm.config_words()
        with m.Switch(offset):
            with m.Case(Csr.ID):
                m.d.comb += csr_value.eq(regmap.MAGIC)
            with m.Case(Csr.VERSION):
                m.d.comb += csr_value.eq(regmap.VERSION)
            with m.Case(Csr.CONFIG0):
                m.d.comb += csr_value.eq(config0)
            with m.Case(Csr.CONFIG1):
                m.d.comb += csr_value.eq(config1)
            with m.Case(Csr.M_COUNT):
                m.d.comb += csr_value.eq(m_count)
            with m.Case(Csr.W_TILE):
                m.d.comb += csr_value.eq(w_tile)
            with m.Case(Csr.STATUS):
                m.d.comb += csr_value.eq(Cat(busy, done, error))
            for name, lo in zip(regmap.COUNTERS, regmap.COUNTER_CSRS, strict=True):
                with m.Case(lo):
                    m.d.comb += csr_value.eq(counters[name][:32])
                with m.Case(lo + 1):
                    m.d.comb += csr_value.eq(hi_shadow)

        rd_region = Signal(2)
        rd_col = Signal(max(rm.out_word_bits, 1))
        rd_word = Signal(max(rm.weight_word_bits, rm.act_word_bits, 1))
        rd_csr = Signal(BUS_BITS)
        m.d.sync += bus.rvalid.eq(bus.re)
        with m.If(bus.re):
            # A single-column or single-word buffer has no select bits: the offset is all entry.
            m.d.sync += [rd_region.eq(region), rd_csr.eq(csr_value),
                         rd_col.eq(offset[: rm.out_word_bits] if rm.out_word_bits else 0),
                         rd_word.eq(offset[: max(rm.weight_word_bits, rm.act_word_bits)])]
            with m.If(region == Region.CSR):
                for name, lo in zip(regmap.COUNTERS, regmap.COUNTER_CSRS, strict=True):
                    with m.If(offset == lo):
                        m.d.sync += hi_shadow.eq(counters[name][32:])

        def word_of(mem_data, nwords, word_bits):
            words = [mem_data[32 * j : 32 * j + 32] for j in range(nwords)]
            if nwords == 1:
                return words[0]
            sel = Signal(32)
            with m.Switch(rd_word[:word_bits]):
                for j, w in enumerate(words):
                    with m.Case(j):
                        m.d.comb += sel.eq(w)
            return sel

        w_word = word_of(w_rd.data, rm.weight_words, rm.weight_word_bits)
        a_word = word_of(a_rd.data, rm.act_words, rm.act_word_bits)
        out_sel = Signal(BUS_BITS)
        with m.Switch(rd_col):
            for c in range(cols):
                with m.Case(c):
                    m.d.comb += out_sel.eq(o_rd[c].data.as_signed())
        with m.Switch(rd_region):
            with m.Case(Region.CSR):
                m.d.comb += bus.rdata.eq(rd_csr)
            with m.Case(Region.WEIGHT):
                m.d.comb += bus.rdata.eq(w_word)
            with m.Case(Region.ACT):
                m.d.comb += bus.rdata.eq(a_word)
            with m.Case(Region.OUT):
                m.d.comb += bus.rdata.eq(out_sel)
        return m
