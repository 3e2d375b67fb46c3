"""An R x C weight-stationary systolic array of registered PEs, with its input skew built in."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..golden.config import ArrayConfig
from .pes import config_pe


class SystolicArray(wiring.Component):
    """K runs down the rows, N across the columns, activation vectors stream in from the left.

    PEs: cfg.pe names a registered PE (hdl/pes.py), each taking a weight code of its
    weight_bits (2 for ternary PEs).
    Weights: `w_row` carries the codes of one row (column c in bits wb*c+wb-1:wb*c) and is
    latched into row `w_sel` when `w_en` is high.
    Streaming: present one unskewed activation vector per cycle on `act` with `act_valid`; row
    r sees it r cycles later. The result for column c of the vector that entered at cycle t is
    on `out[c]` with `out_valid[c]` at cycle t + (R - 1) + c (golden.cycles.column_latency).
    Invalid cycles inject zeros, so bubbles never disturb a sum.

    Double-buffered (cfg.weight_buffers == 2): `w_en` writes row `w_sel` of a shadow register
    bank instead, and a pulse on `swap` (one cycle before a tile's first vector is presented)
    copies the shadow into the PEs as a wave, PE (r, c) r + c cycles later, just ahead of that
    vector. `shadow_free` pulses when the wave has left row 0, so row r may be rewritten from
    then on at one row per cycle. `macs`/`skips` count the non-zero/zero weights the valid
    vectors meet this cycle, row by row, for the performance counters.
    """

    def __init__(self, cfg: ArrayConfig) -> None:
        self.cfg = cfg
        self.pe = config_pe(cfg)
        self.weight_bits = self.pe.weight_bits
        super().__init__({
            "w_row": In(self.weight_bits * cfg.cols),
            "w_sel": In(range(cfg.rows)),
            "w_en": In(1),
            "act": In(data.ArrayLayout(signed(cfg.act_bits), cfg.rows)),
            "act_valid": In(1),
            "out": Out(data.ArrayLayout(signed(cfg.acc_bits), cfg.cols)),
            "out_valid": Out(cfg.cols),
            "nnz_row": Out(range(cfg.cols + 1)),
            **({"swap": In(1), "shadow_free": Out(1), "macs": Out(range(cfg.pes + 1)),
                "skips": Out(range(cfg.pes + 1))} if cfg.weight_buffers == 2 else {}),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        cfg = self.cfg
        rows, cols = cfg.rows, cfg.cols

        wb = self.weight_bits
        pes = [[self.pe.build(cfg.act_bits, cfg.acc_bits, cfg.acc_overflow) for _ in range(cols)]
               for _ in range(rows)]
        double = cfg.weight_buffers == 2
        if double:
            # The copy wave: PE (r, c) loads its shadow r + c cycles after `swap`.
            wave = [self.swap]
            for i in range(rows + cols - 2):
                t = Signal(name=f"swap_d{i + 1}")
                m.d.sync += t.eq(wave[-1])
                wave.append(t)
            m.d.comb += self.shadow_free.eq(wave[cols - 1])
        for r in range(rows):
            for c in range(cols):
                m.submodules[f"pe_{r}_{c}"] = pe = pes[r][c]
                code = self.w_row[wb * c : wb * c + wb]
                load = self.w_en & (self.w_sel == r)
                if double:
                    shadow = Signal(wb, name=f"shadow_{r}_{c}")
                    with m.If(load):
                        m.d.sync += shadow.eq(code)
                    m.d.comb += [pe.w_in.eq(shadow), pe.w_load.eq(wave[r + c])]
                else:
                    m.d.comb += [pe.w_in.eq(code), pe.w_load.eq(load)]

        # Skew: row r's activation passes through r registers before reaching column 0.
        for r in range(rows):
            lane = Signal(signed(cfg.act_bits), name=f"skew_{r}_0")
            m.d.comb += lane.eq(Mux(self.act_valid, self.act[r], 0))
            for d in range(r):
                nxt = Signal(signed(cfg.act_bits), name=f"skew_{r}_{d + 1}")
                m.d.sync += nxt.eq(lane)
                lane = nxt
            m.d.comb += pes[r][0].act_in.eq(lane)

        for r in range(rows):
            for c in range(1, cols):
                m.d.comb += pes[r][c].act_in.eq(pes[r][c - 1].act_out)
        for c in range(cols):
            m.d.comb += pes[0][c].psum_in.eq(0)
            for r in range(1, rows):
                m.d.comb += pes[r][c].psum_in.eq(pes[r - 1][c].psum_out)
            m.d.comb += self.out[c].eq(pes[rows - 1][c].sum)

        # Column c's result trails the vector's entry by rows - 1 + c cycles.
        taps = [self.act_valid]
        for i in range(rows + cols - 2):
            t = Signal(name=f"valid_d{i + 1}")
            m.d.sync += t.eq(taps[-1])
            taps.append(t)
        for c in range(cols):
            m.d.comb += self.out_valid[c].eq(taps[rows - 1 + c])

        # Non-zero codes in the incoming weight row, so the top can count MACs and skips
        # without a counter per PE. Bit 0 of a 2-bit ternary code is its non-zero flag
        # (whatever the PE stores inside); a wider weight is non-zero if any bit is.
        nonzero = [self.w_row[2 * c] if wb == 2 else self.w_row[wb * c : wb * c + wb].any()
                   for c in range(cols)]
        m.d.comb += self.nnz_row.eq(sum(nonzero))
        if double:
            # Each row's non-zero count follows its weights: shadow, then active with the wave
            # at column 0; a vector meets row r's weights r cycles after it entered.
            macs, skips = [], []
            for r in range(rows):
                nz_shadow = Signal(range(cols + 1), name=f"nnz_shadow_{r}")
                nz = Signal(range(cols + 1), name=f"nnz_active_{r}")
                z = Signal(range(cols + 1), name=f"zeros_active_{r}")
                with m.If(self.w_en & (self.w_sel == r)):
                    m.d.sync += nz_shadow.eq(self.nnz_row)
                with m.If(wave[r]):
                    m.d.sync += [nz.eq(nz_shadow), z.eq(cols - nz_shadow)]
                macs.append(Mux(taps[r], nz, 0))
                skips.append(Mux(taps[r], z, 0))
            m.d.comb += [self.macs.eq(sum(macs)), self.skips.eq(sum(skips))]
        return m
