"""The ternary processing element: it adds, subtracts or passes; it never multiplies."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


class TernaryPE(wiring.Component):
    """Weight-stationary PE.

    The 2-bit weight code is latched on `w_load`. Bit 0 says "non-zero" and bit 1 "negate", so
    a zero weight passes psum_in through untouched (no adder toggles) and the unused code 10
    behaves as zero. `sum` is combinational so the array's last row can write it straight into
    the output buffer; `act_out` and `psum_out` are the registered systolic outputs.
    """

    def __init__(self, act_bits: int, acc_bits: int) -> None:
        self.act_bits = act_bits
        self.acc_bits = acc_bits
        super().__init__({
            "w_load": In(1),
            "w_in": In(2),
            "act_in": In(signed(act_bits)),
            "psum_in": In(signed(acc_bits)),
            "sum": Out(signed(acc_bits)),
            "act_out": Out(signed(act_bits)),
            "psum_out": Out(signed(acc_bits)),
            "w_code": Out(2),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        code = Signal(2)
        with m.If(self.w_load):
            m.d.sync += code.eq(self.w_in)
        m.d.comb += self.w_code.eq(code)

        with m.If(~code[0]):
            m.d.comb += self.sum.eq(self.psum_in)
        with m.Elif(code[1]):
            m.d.comb += self.sum.eq(self.psum_in - self.act_in)
        with m.Else():
            m.d.comb += self.sum.eq(self.psum_in + self.act_in)

        m.d.sync += [
            self.act_out.eq(self.act_in),
            self.psum_out.eq(self.sum),
        ]
        return m
