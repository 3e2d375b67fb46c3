"""Baseline PE with an int8 x int8 multiply-accumulate, for area and Fmax comparison only.

It is the conventional design the ternary PE replaces. Registered as PE "mac"; its int8
weights do not fit the accelerator tops' 2-bit weight buffers, so it exists as a bare PE or
array (`tritium synth --pe mac`).
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal

from ..golden.gemm import overflow_signed, wrap_signed
from .pes import PESpec, SystolicPE, accumulate, register_pe

WEIGHT_BITS = 8


def update(psum_in: int, act: int, code: int, acc_bits: int, overflow: str = "wrap") -> int:
    """psum_in + act * weight, the weight being the two's complement int8 `code`, wrapped (or
    clamped, for overflow "saturate") to acc_bits."""
    return overflow_signed(psum_in + act * wrap_signed(code, WEIGHT_BITS), acc_bits, overflow)


class MacPE(SystolicPE):
    weight_bits = WEIGHT_BITS

    def compute(self, m: Module) -> None:
        weight = Signal(WEIGHT_BITS)
        with m.If(self.w_load):
            m.d.sync += weight.eq(self.w_in)
        m.d.comb += self.sum.eq(accumulate(self.psum_in + self.act_in * weight.as_signed(),
                                           self.acc_bits, self.overflow))


SPEC = register_pe(PESpec("mac", MacPE, update, weight_bits=WEIGHT_BITS,
                          description="int8 x int8 multiply-accumulate baseline (array level)",
                          saturates=True))
