"""`tritium demo`: the shortest path from nothing to BitNet tokens computed by the RTL.

Two steps, each checked against golden: a random tiled GEMM on the Verilator-simulated
accelerator (results, cycle counts, performance counters), then a small BitNet b1.58 model
(written by host/synthetic.py into the build folder: the default that ships with tritium)
generating tokens with every ternary matmul on the same RTL.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time

import numpy as np

from .cliutil import add_array_args, array_from_args, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="a checked GEMM and a small BitNet model on the Verilator-simulated accelerator",
        description="Generate an array, build it with Verilator, run a random ternary GEMM "
        "through the host driver tile by tile and compare results, cycle counts and "
        "performance counters with the golden model; then generate tokens from a small "
        "BitNet b1.58 checkpoint with every ternary matmul on the RTL and compare the tokens "
        "and logits with the golden backend.",
    )
    add_array_args(p, rows=4, cols=4, act_depth=16)
    p.add_argument("--m", type=int, default=24, help="activation rows M (default: 24)")
    p.add_argument("--k", type=int, default=100, help="reduction length K (default: 100)")
    p.add_argument("--n", type=int, default=40, help="output columns N (default: 40)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--tokens", type=int, default=8, metavar="N",
                   help="tokens the small model generates (default: 8)")
    p.add_argument("--gemm-only", action="store_true", help="skip the model step")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=run)


def gemm_demo(args: argparse.Namespace) -> dict:
    from .golden import gemm_events, ternary_gemm
    from .golden.cycles import scalesim_ws_cycles
    from .golden.tiling import check_gemm_dims
    from .host.driver import driver_for
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
        acc = driver_for(device)
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


# The demo's model: two layers, grouped-query attention, dimensions that are not powers of two
# (so edge tiles occur), and a word-level tokenizer so the prompt can be text.
DEMO_MODEL = {"hidden": 48, "intermediate": 88, "layers": 2, "heads": 4, "kv_heads": 2,
              "vocab": 96, "seed": 1, "tokenizer": True}
DEMO_PROMPT = [3, 14, 15, 92, 65, 35]


def model_demo(args: argparse.Namespace) -> dict:
    from .host import BitNetModel
    from .host.synthetic import write_random_checkpoint
    from .sim.runner import default_build_root

    cfg = array_from_args(args)
    key = hashlib.sha256(json.dumps(DEMO_MODEL, sort_keys=True).encode()).hexdigest()[:10]
    path = default_build_root() / "demo" / f"bitnet-tiny-{key}"
    if not (path / "config.json").exists():
        write_random_checkpoint(path, **DEMO_MODEL)
    with BitNetModel.from_pretrained(path, backend="golden", array=cfg) as golden:
        want = golden.generate(DEMO_PROMPT, max_new_tokens=args.tokens, stop_at_eos=False)
        model_counts = _counts(golden.stats.as_dict())
        want_logits = golden.logits(DEMO_PROMPT)
    t0 = time.perf_counter()
    with BitNetModel.from_pretrained(path, backend="rtl", array=cfg) as rtl:
        got = rtl.generate(DEMO_PROMPT, max_new_tokens=args.tokens, stop_at_eos=False)
        seconds = time.perf_counter() - t0
        stats = rtl.stats.as_dict()
        logits_equal = bool(np.array_equal(rtl.logits(DEMO_PROMPT), want_logits))
        text = rtl.decode(got) if rtl.tokenizer is not None else None
    return {
        "checkpoint": str(path),
        "model": {k: v for k, v in DEMO_MODEL.items() if k not in ("seed", "tokenizer")},
        "prompt_tokens": DEMO_PROMPT,
        "rtl_tokens": [int(t) for t in got],
        "golden_tokens": [int(t) for t in want],
        "text": text,
        "tokens_identical": list(got) == list(want),
        "logits_identical": logits_equal,
        "rtl_stats": stats,
        # The golden backend counts events with the cycle model: equal per-layer counts mean
        # the RTL's counters agree with the model over a whole transformer run.
        "model_stats_match": _counts(stats) == model_counts,
        "seconds": round(seconds, 2),
    }


def _counts(stats: dict) -> list[dict]:
    """Per-layer, per-projection event counts of a ModelStats dict, without timings."""
    keys = ("calls", "tiles", "cycles", "macs", "zero_skips")
    return [{proj: {k: s.get(k) for k in keys} for proj, s in layer["projections"].items()}
            for layer in stats["layers"]]


def run(args: argparse.Namespace) -> int:
    if not args.json:
        print(f"tritium demo: building a {args.rows}x{args.cols} ternary array with Verilator "
              "(the first build takes a few seconds)...", file=sys.stderr)
    r = gemm_demo(args)
    ok = r["results_identical"] and r["counters_match"]
    if not args.gemm_only:
        r = {"gemm": r, "model": model_demo(args)}
        mr = r["model"]
        ok = ok and mr["tokens_identical"] and mr["logits_identical"] and \
            mr["model_stats_match"]
    if args.json:
        print_json(r)
        return 0 if ok else 1
    _print_gemm(r if args.gemm_only else r["gemm"])
    if not args.gemm_only:
        _print_model(r["model"])
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def _print_model(r: dict) -> None:
    m, total = r["model"], r["rtl_stats"]["total"]
    print(f"\nmodel     BitNet b1.58, {m['layers']} layers, hidden {m['hidden']}, "
          f"intermediate {m['intermediate']}, {m['heads']} heads / {m['kv_heads']} KV heads, "
          f"vocab {m['vocab']} ({r['checkpoint']})")
    print(f"prompt    {r['prompt_tokens']}")
    verdict = "identical to golden" if r["tokens_identical"] else (
        f"DIFFER from golden {r['golden_tokens']}")
    print(f"RTL       generated {r['rtl_tokens']}: {verdict}"
          + (f"  ({r['text']!r})" if r["text"] else ""))
    print(f"logits    {'bit-identical to golden' if r['logits_identical'] else 'DIFFER'}; "
          f"per-layer counters {'equal' if r['model_stats_match'] else 'DIFFER from'} the "
          "cycle model")
    print(f"{'layer':>6s}{'tiles':>10s}{'cycles':>12s}{'MACs':>12s}{'zero skips':>12s}")
    for layer in r["rtl_stats"]["layers"]:
        t = layer["total"]
        print(f"{layer['layer']:>6d}{t['tiles']:>10,}{t['cycles']:>12,}{t['macs']:>12,}"
              f"{t['zero_skips']:>12,}")
    print(f"{'all':>6s}{total['tiles']:>10,}{total['cycles']:>12,}{total['macs']:>12,}"
          f"{total['zero_skips']:>12,}   ({r['seconds']} s on the simulated RTL)")


def _print_gemm(r: dict) -> None:
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
