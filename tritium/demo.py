"""`tritium demo`: the shortest path from nothing to a checked ternary GEMM on the RTL."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from .cliutil import add_array_args, array_from_args, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run a random tiled GEMM on the Verilator-simulated accelerator",
        description="Generate an array, build it with Verilator, run a random ternary GEMM "
        "through the host driver tile by tile, and compare results, cycle counts and "
        "performance counters with the golden model.",
    )
    add_array_args(p, rows=4, cols=4, act_depth=16)
    p.add_argument("--m", type=int, default=24, help="activation rows M (default: 24)")
    p.add_argument("--k", type=int, default=100, help="reduction length K (default: 100)")
    p.add_argument("--n", type=int, default=40, help="output columns N (default: 40)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=run)


def gemm_demo(args: argparse.Namespace) -> dict:
    from .golden import gemm_events, ternary_gemm
    from .golden.cycles import scalesim_ws_cycles
    from .golden.tiling import check_gemm_dims
    from .host.stream_driver import accelerator_for
    from .sim.verilated import VerilatorDevice

    cfg = array_from_args(args)
    check_gemm_dims(cfg, args.m, args.k, args.n)
    rng = np.random.default_rng(args.seed)
    lo, hi = -(2 ** (cfg.act_bits - 1)), 2 ** (cfg.act_bits - 1) - 1
    a = rng.integers(lo, hi + 1, (args.m, args.k))
    w = rng.choice([-1, 0, 1], size=(args.k, args.n), p=[0.35, 0.3, 0.35])

    t0 = time.perf_counter()
    device = VerilatorDevice(cfg)
    build_s = time.perf_counter() - t0
    try:
        acc = accelerator_for(device)
        acc.identify()
        cycles0 = device.cycles
        t1 = time.perf_counter()
        got, measured = acc.gemm(a, w)
        run_s = time.perf_counter() - t1
        sim_cycles = device.cycles - cycles0
    finally:
        device.close()

    want = ternary_gemm(a, w, cfg.act_bits)
    model = gemm_events(cfg, w, args.m)
    mismatches = int(np.count_nonzero(got != want))
    return {
        "config": cfg.to_dict(),
        "gemm": {"m": args.m, "k": args.k, "n": args.n},
        "results_identical": mismatches == 0,
        "mismatches": mismatches,
        "outputs": int(want.size),
        "rtl": measured.as_dict(),
        "golden": model.as_dict(),
        "counters_match": measured.as_dict() == model.as_dict(),
        "scalesim_ws_cycles": scalesim_ws_cycles(cfg.rows, cfg.cols, args.m, args.k, args.n),
        "simulated_cycles": sim_cycles,
        "build_seconds": round(build_s, 2),
        "run_seconds": round(run_s, 3),
        "simulated_cycles_per_s": round(sim_cycles / run_s) if run_s > 0 else None,
    }


def run(args: argparse.Namespace) -> int:
    if not args.json:
        print(f"tritium demo: building a {args.rows}x{args.cols} ternary array with Verilator "
              "(the first build takes a few seconds)...", file=sys.stderr)
    r = gemm_demo(args)
    ok = r["results_identical"] and r["counters_match"]
    if args.json:
        print_json(r)
        return 0 if ok else 1
    cfg, g, rtl, gold = r["config"], r["gemm"], r["rtl"], r["golden"]
    print(f"array     {cfg['rows']}x{cfg['cols']} {cfg['dataflow']}, int{cfg['act_bits']} "
          f"activations, {cfg['acc_bits']}-bit accumulators, adder-only PEs")
    print(f"GEMM      {g['m']}x{g['k']} activations @ {g['k']}x{g['n']} ternary weights, "
          f"{rtl['tiles']} tiles")
    verdict = "bit-identical to golden" if r["results_identical"] else (
        f"{r['mismatches']} of {r['outputs']} DIFFER from golden")
    print(f"results   {r['outputs']} int32 outputs {verdict}")
    print(f"{'':10s}{'RTL counters':>14s}{'golden model':>14s}")
    for key in ("tiles", "cycles", "macs", "zero_skips"):
        mark = "" if rtl[key] == gold[key] else "   <-- mismatch"
        print(f"{key:10s}{rtl[key]:>14,}{gold[key]:>14,}{mark}")
    print(f"SCALE-Sim weight-stationary estimate for this GEMM: {r['scalesim_ws_cycles']:,} cycles")
    print(f"simulated {r['simulated_cycles']:,} clock cycles (bus traffic included) in "
          f"{r['run_seconds']} s: {r['simulated_cycles_per_s']:,} cycles/s")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1
