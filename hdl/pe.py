"""The ternary processing element: it adds, subtracts or passes; it never multiplies.

Registered as PE "ternary", the default of ArrayConfig.pe; its golden rule `update` sits
beside the RTL so the benches check one against the other.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal

from ..golden.gemm import code_value, overflow_signed
from .pes import PESpec, SystolicPE, accumulate, register_pe


def update(psum_in: int, act: int, code: int, acc_bits: int, overflow: str = "wrap") -> int:
    """Add, subtract or pass psum_in by the ternary weight of `code`, wrapping at acc_bits (or
    clamping, for overflow "saturate"; a pass never changes psum_in)."""
    return overflow_signed(psum_in + act * code_value(code), acc_bits, overflow)


class TernaryPE(SystolicPE):
    """Weight-stationary PE (ports: hdl.pes.pe_signature).

    The 2-bit weight code is latched on `w_load`. Bit 0 says "non-zero" and bit 1 "negate", so
    a zero weight passes psum_in through untouched (no adder toggles) and the unused code 10
    behaves as zero.
    """

    def compute(self, m: Module) -> None:
        code = Signal(2)
        with m.If(self.w_load):
            m.d.sync += code.eq(self.w_in)
        with m.If(~code[0]):
            m.d.comb += self.sum.eq(self.psum_in)
        with m.Elif(code[1]):
            m.d.comb += self.sum.eq(accumulate(self.psum_in - self.act_in, self.acc_bits,
                                               self.overflow))
        with m.Else():
            m.d.comb += self.sum.eq(accumulate(self.psum_in + self.act_in, self.acc_bits,
                                               self.overflow))


SPEC = register_pe(PESpec("ternary", TernaryPE, update,
                          description="adder-only: add, subtract or pass by a 2-bit code",
                          saturates=True))
