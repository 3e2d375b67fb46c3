"""The weight-stationary ("ws") top: buffers and tile control around a SystolicArray."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib.memory import Memory

from ..bus.ws_regmap import Csr, Region
from .array import SystolicArray
from .pes import accumulate as overflow_add
from .top import AcceleratorTop, Control


class WsAccelerator(AcceleratorTop):
    """Weight, activation and output buffers around a SystolicArray.

    One tile: the host fills a weight slot and m activation entries, writes M_COUNT and W_TILE,
    then CTRL.start (optionally with accumulate, which adds results into the output buffer
    instead of overwriting, so K tiles sum on chip). The tile takes exactly
    golden.cycles.tile_cycles(cfg, m) busy cycles:
      LOAD   R cycles: weight rows are read (one cycle ahead) and latched row by row.
      STREAM the activation buffer is read one entry per cycle into the array; each column's
             result is written (or accumulated) into its own output bank as it emerges, and
             the tile ends on column C-1's m-th write.
    With cfg.weight_buffers == 2 a start runs K_TILES tiles back to back instead (see _double
    and golden.cycles.ws_run_cycles); the buffers and the bus are the same.
    """

    dataflow = "ws"

    def elaborate_dataflow(self, m: Module, ctl: Control) -> None:
        cfg, rm = self.cfg, self.map
        rows, cols = cfg.rows, cfg.cols
        bus = self.bus

        m.submodules.array = array = SystolicArray(cfg)

        region, offset = ctl.region, ctl.offset

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
        # Double-buffered runs may accumulate into an entry in the cycle it is written (1-wide
        # tiles back to back), so their reads see that write.
        o_rd = [om.read_port(transparent_for=(wp,) if cfg.weight_buffers == 2 else ())
                for om, wp in zip(omems, o_wr, strict=True)]

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
        m_count = ctl.register(Csr.M_COUNT, 16, "m_count")
        w_tile = ctl.register(Csr.W_TILE, 16, "w_tile")
        if cfg.weight_buffers == 2:
            self._double(m, ctl, array, w_rd, a_rd, o_wr, o_rd, m_count, w_tile)
            self._read_path(m, ctl, w_rd, a_rd, o_rd)
            return
        accumulate = Signal()
        busy, start_ok = ctl.busy, ctl.start_ok
        ctl.allow_start((m_count != 0) & (m_count <= cfg.act_depth) & (w_tile < cfg.weight_tiles))

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
                        accumulate.eq(bus.wdata[1]),
                        load_row.eq(0), nnz.eq(0), stream_j.eq(0),
                    ]
                    m.next = "LOAD"
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
                    ctl.finish()
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
                o_wr[c].data.eq(overflow_add(array.out[c] + old, cfg.acc_bits, cfg.acc_overflow)),
                o_wr[c].en.eq(busy & array.out_valid[c]),
            ]
            with m.If(busy & array.out_valid[c]):
                m.d.sync += wr_cnt[c].eq(wr_cnt[c] + 1)
        m.d.comb += last_write.eq(array.out_valid[cols - 1] & (wr_cnt[cols - 1] + 1 == m_count))

        # --- performance counters: tiles started; MACs and skips as vectors enter --------
        ctl.count("tiles", start_ok)
        ctl.count("macs", Mux(act_valid, nnz, 0))
        ctl.count("zero_skips", Mux(act_valid, rows * cols - nnz, 0))

        self._read_path(m, ctl, w_rd, a_rd, o_rd)

    def _read_path(self, m: Module, ctl: Control, w_rd, a_rd, o_rd) -> None:
        rm, cols = self.map, self.cfg.cols
        # --- bus reads: the word or column a buffer read selects is latched with it ---------
        offset = ctl.offset
        rd_col = Signal(max(rm.out_word_bits, 1))
        rd_word = Signal(max(rm.weight_word_bits, rm.act_word_bits, 1))
        # A single-column or single-word buffer has no select bits: the offset is all entry.
        ctl.on_read(rd_col, offset[: rm.out_word_bits] if rm.out_word_bits else 0)
        ctl.on_read(rd_word, offset[: max(rm.weight_word_bits, rm.act_word_bits)])

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

        out_sel = Signal(32)
        with m.Switch(rd_col):
            for c in range(cols):
                with m.Case(c):
                    m.d.comb += out_sel.eq(o_rd[c].data.as_signed())
        ctl.region_data[Region.WEIGHT] = word_of(w_rd.data, rm.weight_words, rm.weight_word_bits)
        ctl.region_data[Region.ACT] = word_of(a_rd.data, rm.act_words, rm.act_word_bits)
        ctl.region_data[Region.OUT] = out_sel

    def _double(self, m: Module, ctl: Control, array: SystolicArray, w_rd, a_rd, o_wr, o_rd,
                m_count: Signal, w_tile: Signal) -> None:
        """Sequencer of a double-buffered array: one start runs K_TILES tiles back to back
        (golden.cycles.ws_run_cycles). A loader writes each tile's weight rows into the shadow
        registers as soon as the previous copy wave has left them; the streamer starts a tile
        (pulsing `swap` with its first read) once the tile before it has issued every vector
        and the tile's loading began at least a cycle earlier."""
        cfg, rm, bus = self.cfg, self.map, self.bus
        rows, cols, depth, slots = cfg.rows, cfg.cols, cfg.act_depth, cfg.weight_tiles
        busy, start_ok, offset = ctl.busy, ctl.start_ok, ctl.offset
        # K_TILES starts at 1, so a host that never writes it runs one tile per start.
        k_tiles = ctl.register(Csr.K_TILES, 16, "k_tiles", init=1)
        a_base = ctl.register(Csr.A_BASE, 16, "a_base")
        ctl.csr(Csr.CONFIG2, cfg.weight_buffers)
        # M_COUNT * K_TILES <= act_depth without a multiplier: the largest M per tile count.
        max_m = Signal(range(depth + 1))
        with m.Switch(k_tiles):
            for t in range(1, slots + 1):
                with m.Case(t):
                    m.d.comb += max_m.eq(depth // t)
            with m.Default():
                m.d.comb += max_m.eq(0)
        ctl.allow_start((m_count != 0) & (m_count <= max_m) & (w_tile < slots)
                        & (a_base < depth))

        def wrap(value, limit):
            return Mux(value + 1 == limit, 0, value + 1)

        accumulate = Signal()
        # loader
        ld_left = Signal(16)                 # tiles not yet loaded
        ld_slot = Signal(range(slots))       # slot of the next tile to load
        cur_slot = Signal(range(slots))      # slot being loaded
        ld_row = Signal(range(max(rows, 2)))
        loading = Signal()                   # rows 1.. of a tile are being written
        claimed = Signal()                   # the shadow holds a tile its wave has not left
        ready = Signal()                     # a tile's loading began and it has not started
        start_load = Signal()
        # streamer
        tiles_left = Signal(16)
        st_left = Signal(16)                 # vectors of the current tile still to issue
        vec = Signal(range(depth))           # activation entry of the next read
        first = Signal()
        issuing, new_tile, last_vec, acc_flag = Signal(), Signal(), Signal(), Signal()
        act_valid = Signal()

        with m.If(start_ok):
            m.d.sync += [accumulate.eq(bus.wdata[1]), ld_left.eq(k_tiles), ld_slot.eq(w_tile),
                         loading.eq(0), claimed.eq(0), ready.eq(0), tiles_left.eq(k_tiles),
                         st_left.eq(0), vec.eq(a_base), first.eq(1)]

        m.d.comb += start_load.eq(busy & (ld_left != 0) & ~loading
                                  & (~claimed | array.shadow_free))

        def base(slot):
            return slot << rm.row_bits

        row_now = Mux(start_load, 0, ld_row)
        m.d.comb += [
            array.w_row.eq(w_rd.data),
            array.w_sel.eq(row_now),
            array.w_en.eq(start_load | loading),
        ]
        with m.If(~busy):
            m.d.comb += w_rd.addr.eq(Mux(start_ok, base(w_tile), offset[rm.weight_word_bits:]))
        with m.Elif(start_load & int(rows > 1)):
            m.d.comb += w_rd.addr.eq(base(ld_slot) | 1)
        with m.Elif(loading & (ld_row != rows - 1)):
            m.d.comb += w_rd.addr.eq(base(cur_slot) | (ld_row + 1))
        with m.Else():
            m.d.comb += w_rd.addr.eq(base(Mux(start_load, wrap(ld_slot, slots), ld_slot)))
        with m.If(start_load):
            m.d.sync += [ld_left.eq(ld_left - 1), ld_slot.eq(wrap(ld_slot, slots)),
                         cur_slot.eq(ld_slot), ld_row.eq(1), loading.eq(int(rows > 1))]
        with m.Elif(loading):
            m.d.sync += ld_row.eq(ld_row + 1)
            with m.If(ld_row == rows - 1):
                m.d.sync += loading.eq(0)

        # streamer: a vector read issued this cycle enters the array next cycle
        m.d.comb += new_tile.eq(busy & (st_left == 0) & ready & (tiles_left != 0))
        m.d.comb += issuing.eq(busy & ((st_left != 0) | new_tile))
        m.d.comb += [
            array.swap.eq(new_tile),
            last_vec.eq(Mux(new_tile, (m_count == 1) & (tiles_left == 1),
                            (st_left == 1) & (tiles_left == 0))),
            acc_flag.eq(accumulate | ~first),
        ]
        with m.If(issuing):
            m.d.sync += vec.eq(wrap(vec, depth))
        with m.If(new_tile):
            m.d.sync += [st_left.eq(m_count - 1), tiles_left.eq(tiles_left - 1)]
        with m.Elif(st_left != 0):
            m.d.sync += st_left.eq(st_left - 1)
        # Sets win: the loader may begin the next tile in the cycle the current one starts.
        with m.If(start_load):
            m.d.sync += [claimed.eq(1), ready.eq(1)]
        with m.Else():
            with m.If(array.shadow_free):
                m.d.sync += claimed.eq(0)
            with m.If(new_tile):
                m.d.sync += ready.eq(0)
        # Whether the vector issued now adds into the output: its tile's flag, fixed when the
        # tile starts (only tile 0 of a start without CTRL.accumulate overwrites).
        tile_acc = Signal()
        with m.If(new_tile):
            m.d.sync += [first.eq(0), tile_acc.eq(acc_flag)]
        vec_acc = Mux(new_tile, acc_flag, tile_acc)

        m.d.sync += act_valid.eq(issuing)
        m.d.comb += a_rd.addr.eq(Mux(busy, vec, offset[rm.act_word_bits:]))
        for r in range(rows):
            m.d.comb += array.act[r].eq(a_rd.data[8 * r : 8 * r + cfg.act_bits])
        m.d.comb += array.act_valid.eq(act_valid)

        # --- output banks: each vector's accumulate and last flags ride a delay line --------
        flags = [Cat(issuing, vec_acc, issuing & last_vec)]
        for i in range(rows + cols - 1):
            t = Signal(3, name=f"flags_d{i + 1}")
            m.d.sync += t.eq(flags[-1])
            flags.append(t)
        last_write = Signal()
        wr_cnt = [Signal(range(depth), name=f"wr_cnt{c}") for c in range(cols)]
        rd_cnt = [Signal(range(depth), name=f"rd_cnt{c}") for c in range(cols)]
        out_m = offset[rm.out_word_bits:]
        for c in range(cols):
            pre, at_write = flags[rows - 1 + c], flags[rows + c]
            writing = busy & array.out_valid[c]
            with m.If(start_ok):
                m.d.sync += [wr_cnt[c].eq(0), rd_cnt[c].eq(0)]
            with m.If(busy & pre[0]):
                m.d.sync += rd_cnt[c].eq(wrap(rd_cnt[c], m_count))
            m.d.comb += o_rd[c].addr.eq(Mux(busy, rd_cnt[c], out_m))
            m.d.comb += [
                o_wr[c].addr.eq(wr_cnt[c]),
                o_wr[c].data.eq(overflow_add(array.out[c] + Mux(at_write[1], o_rd[c].data, 0),
                                             cfg.acc_bits, cfg.acc_overflow)),
                o_wr[c].en.eq(writing),
            ]
            with m.If(writing):
                m.d.sync += wr_cnt[c].eq(wrap(wr_cnt[c], m_count))
        m.d.comb += last_write.eq(array.out_valid[cols - 1] & flags[rows + cols - 1][2])
        with m.If(busy & last_write):
            ctl.finish()

        ctl.count("tiles", new_tile)
        ctl.count("macs", array.macs)
        ctl.count("zero_skips", array.skips)
