"""cocotb bench: one PE (cfg.pe, any registered PE) against its golden update rule, cycle by
cycle."""

from __future__ import annotations

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from .benchutil import act_values
from .pebench import start_pe_bench


@cocotb.test()
async def pe_matches_golden(dut):
    cfg, spec, rng = await start_pe_bench(dut)
    acc_lo, acc_hi = -(2 ** (cfg.acc_bits - 1)), 2 ** (cfg.acc_bits - 1) - 1
    code = 0  # a PE acts as if code 0 were latched after reset (hdl.pes.pe_signature)
    expect_psum = expect_act = None
    cycles = 3000
    acts = act_values(rng, cycles, cfg.act_bits)
    for i in range(cycles):
        w_load = int(rng.random() < 0.25)
        w_in = int(rng.integers(0, 2**spec.weight_bits))  # every code, 10 of ternary included
        act = int(acts[i])
        psum = int(rng.choice([acc_lo, acc_hi, 0, int(rng.integers(acc_lo, acc_hi + 1))]))
        dut.w_load.value = w_load
        dut.w_in.value = w_in
        dut.act_in.value = act
        dut.psum_in.value = psum
        await ReadOnly()
        want = spec.golden(cfg.acc_overflow)(psum, act, code, cfg.acc_bits)
        got = dut.sum.value.to_signed()
        assert got == want, (
            f"cycle {i}: {spec.name} PE sum {got} != golden {want} "
            f"(psum {psum}, act {act}, code {code:0{spec.weight_bits}b})"
        )
        if expect_psum is not None:
            assert dut.psum_out.value.to_signed() == expect_psum, f"cycle {i}: psum_out"
            assert dut.act_out.value.to_signed() == expect_act, f"cycle {i}: act_out"
        expect_psum, expect_act = want, act
        await RisingEdge(dut.clk)
        if w_load:
            code = w_in
