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
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        cfg = self.cfg
        rows, cols = cfg.rows, cfg.cols

        wb = self.weight_bits
        pes = [[self.pe.build(cfg.act_bits, cfg.acc_bits, cfg.acc_overflow) for _ in range(cols)]
               for _ in range(rows)]
        for r in range(rows):
            for c in range(cols):
                m.submodules[f"pe_{r}_{c}"] = pe = pes[r][c]
                m.d.comb += [
                    pe.w_in.eq(self.w_row[wb * c : wb * c + wb]),
                    pe.w_load.eq(self.w_en & (self.w_sel == r)),
                ]

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
        return m
