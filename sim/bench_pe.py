"""cocotb bench: one ternary PE against golden.gemm.pe_update, cycle by cycle."""

from __future__ import annotations

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from ..golden.gemm import pe_update
from .benchutil import act_values, bench_config, bench_rng, start, uint


@cocotb.test()
async def pe_matches_golden(dut):
    cfg = bench_config()
    rng = bench_rng()
    await start(dut)
    acc_lo, acc_hi = -(2 ** (cfg.acc_bits - 1)), 2 ** (cfg.acc_bits - 1) - 1
    code = 0  # reset value of the weight register
    expect_psum = expect_act = None
    cycles = 3000
    acts = act_values(rng, cycles, cfg.act_bits)
    for i in range(cycles):
        w_load = int(rng.random() < 0.25)
        w_in = int(rng.integers(0, 4))  # includes 10, which must act as zero
        act = int(acts[i])
        psum = int(rng.choice([acc_lo, acc_hi, 0, int(rng.integers(acc_lo, acc_hi + 1))]))
        dut.w_load.value = w_load
        dut.w_in.value = w_in
        dut.act_in.value = act
        dut.psum_in.value = psum
        await ReadOnly()
        want = pe_update(psum, act, code, cfg.acc_bits)
        got = dut.sum.value.to_signed()
        assert got == want, (
            f"cycle {i}: sum {got} != golden {want} (psum {psum}, act {act}, code {code:02b})"
        )
        if code & 1 == 0:
            assert got == psum, "a zero weight must leave the partial sum untouched"
        if expect_psum is not None:
            assert dut.psum_out.value.to_signed() == expect_psum, f"cycle {i}: psum_out"
            assert dut.act_out.value.to_signed() == expect_act, f"cycle {i}: act_out"
        assert uint(dut.w_code) == code
        expect_psum, expect_act = want, act
        await RisingEdge(dut.clk)
        if w_load:
            code = w_in
