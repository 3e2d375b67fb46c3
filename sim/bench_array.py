"""cocotb bench: the systolic array of cfg.pe (any registered PE) against the PE's golden rule
folded down each column (golden.gemm.systolic_gemm), with exact output timing."""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from ..golden.cycles import column_latency
from ..golden.gemm import systolic_gemm, weight_codes
from .benchutil import act_values, pack_lanes, uint, unpack_lanes
from .pebench import start_pe_bench


async def run_case(dut, cfg, spec, codes: np.ndarray, a: np.ndarray, rng,
                   bubble_rate: float) -> None:
    rows, cols = cfg.rows, cfg.cols
    for r in range(rows):
        dut.w_row.value = pack_lanes(codes[r], spec.weight_bits)
        dut.w_sel.value = r
        dut.w_en.value = 1
        await RisingEdge(dut.clk)
    dut.w_en.value = 0

    expected = systolic_gemm(spec.golden(cfg.acc_overflow), a, codes, cfg.acc_bits)
    m = a.shape[0]
    inject_at: list[int] = []
    got: list[list[tuple[int, int]]] = [[] for _ in range(cols)]
    t = 0
    nxt = 0
    while True:
        valid = nxt < m and rng.random() >= bubble_rate
        if valid:
            dut.act.value = pack_lanes(a[nxt], cfg.act_bits)
            inject_at.append(t)
            nxt += 1
        else:
            # Garbage on an invalid cycle must not leak into any sum.
            dut.act.value = pack_lanes(rng.integers(-8, 8, rows), cfg.act_bits)
        dut.act_valid.value = int(valid)
        await ReadOnly()
        out_valid = uint(dut.out_valid)
        outs = unpack_lanes(uint(dut.out), cfg.acc_bits, cols)
        for c in range(cols):
            if out_valid >> c & 1:
                got[c].append((t, outs[c]))
        await RisingEdge(dut.clk)
        t += 1
        if nxt == m and all(len(g) == m for g in got):
            break
        assert t < 4 * (m + rows + cols) + 100, "array stopped producing results"

    for c in range(cols):
        times = [tt for tt, _ in got[c]]
        values = [v for _, v in got[c]]
        want_times = [ti + column_latency(cfg, c) for ti in inject_at]
        assert times == want_times, f"column {c}: results at cycles {times}, golden {want_times}"
        assert values == [int(x) for x in expected[:, c]], (
            f"column {c}: {values} != golden {expected[:, c].tolist()}"
        )
    dut.act_valid.value = 0
    for _ in range(rows + cols):
        await RisingEdge(dut.clk)


@cocotb.test()
async def array_matches_golden(dut):
    cfg, spec, rng = await start_pe_bench(dut)
    lo, hi = -(2 ** (cfg.act_bits - 1)), 2 ** (cfg.act_bits - 1) - 1
    shape_w = (cfg.rows, cfg.cols)

    def codes(w: np.ndarray) -> np.ndarray:
        return weight_codes(w, spec.weight_bits)

    cases = {
        "random ternary": (codes(rng.integers(-1, 2, shape_w)),
                           act_values(rng, (17, cfg.rows), cfg.act_bits)),
        # Every code the PE's w_in takes, unused ones (ternary 10) and wide weights included.
        "random codes": (rng.integers(0, 2**spec.weight_bits, shape_w),
                         act_values(rng, (11, cfg.rows), cfg.act_bits)),
        "all +1, extremes": (codes(np.ones(shape_w, int)), rng.choice([lo, hi], (9, cfg.rows))),
        "all -1, all -128": (codes(-np.ones(shape_w, int)), np.full((6, cfg.rows), lo)),
        "all zero weights": (codes(np.zeros(shape_w, int)),
                             act_values(rng, (5, cfg.rows), cfg.act_bits)),
        "single vector": (codes(rng.integers(-1, 2, shape_w)), np.full((1, cfg.rows), hi)),
    }
    for name, (w, a) in cases.items():
        for bubbles in (0.0, 0.4):
            dut._log.info("%s PE, case %s, bubble rate %.1f", spec.name, name, bubbles)
            await run_case(dut, cfg, spec, w, a, rng, bubbles)
