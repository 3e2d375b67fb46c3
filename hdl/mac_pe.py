"""Baseline PE with an int8 x int8 multiply-accumulate, for area and Fmax comparison only.

It is the conventional design the ternary PE replaces; the accelerator never instantiates it.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


class MacPE(wiring.Component):
    def __init__(self, act_bits: int, acc_bits: int, weight_bits: int = 8) -> None:
        self.act_bits = act_bits
        self.acc_bits = acc_bits
        super().__init__({
            "w_load": In(1),
            "w_in": In(signed(weight_bits)),
            "act_in": In(signed(act_bits)),
            "psum_in": In(signed(acc_bits)),
            "sum": Out(signed(acc_bits)),
            "act_out": Out(signed(act_bits)),
            "psum_out": Out(signed(acc_bits)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        weight = Signal.like(self.w_in)
        with m.If(self.w_load):
            m.d.sync += weight.eq(self.w_in)
        m.d.comb += self.sum.eq(self.psum_in + self.act_in * weight)
        m.d.sync += [self.act_out.eq(self.act_in), self.psum_out.eq(self.sum)]
        return m
