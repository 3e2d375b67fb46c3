"""Generate an array, build it with Verilator, run a random ternary GEMM through the host
driver tile by tile and compare results, cycle counts and performance counters with the golden
model; then generate tokens from a small BitNet b1.58 checkpoint (written by host/synthetic.py
into $TRITIUM_BUILD/demo/, default build/demo/) with every ternary matmul on the RTL and compare
the tokens and logits with the golden backend; then let the shipped `tiny-adder` model answer a
few held-out addition problems on the RTL, each answer checked against the golden backend's."""

from __future__ import annotations

import argparse
import hashlib
import json
import textwrap
import time

import numpy as np

from ..golden.config import ArrayConfig
from ..golden.files import build_root
from .options import add_array_args, add_json, array_from_args, emit, progress

HELP = "a checked GEMM and a small BitNet model on the Verilator-simulated accelerator"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_array_args(p, rows=4, cols=4, act_depth=16)
    p.add_argument("--m", type=int, default=24, help="activation rows M (default: 24)")
    p.add_argument("--k", type=int, default=100, help="reduction length K (default: 100)")
    p.add_argument("--n", type=int, default=40, help="output columns N (default: 40)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--tokens", type=int, default=8, metavar="N",
                   help="tokens the small model generates (default: 8)")
    p.add_argument("--problems", type=_problem_count, default=5, metavar="N",
                   help="held-out addition problems tiny-adder solves on the RTL, drawn with "
                        "--seed (default: 5; 0 skips this step)")
    p.add_argument("--gemm-only", action="store_true", help="skip the model steps")
    add_json(p)


def _problem_count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a count of problems (0 or more), got {text!r}")
    return n


def scalesim_note(cfg: ArrayConfig, m: int, cycles: int, scalesim: int) -> str:
    """Why the published SCALE-Sim figure does or does not equal the array's cycle count."""
    if cfg.dataflow != "ws":
        return (f"SCALE-Sim's figure is for weight-stationary; this {cfg.dataflow} array "
                "streams weights instead, so the counts are not comparable")
    if m <= cfg.act_depth:
        same = "equals" if cycles == scalesim else "should equal"
        return f"{same} the ws cycle count, as it does whenever M={m} <= act_depth"
    chunks = -(-m // cfg.act_depth)
    return (f"below the ws count {cycles:,}: M={m} > act_depth={cfg.act_depth}, so each tile "
            f"streams M in {chunks} chunks and pays the fill and drain "
            f"(2*rows+cols-2 = {2 * cfg.rows + cfg.cols - 2} cycles) once per chunk; SCALE-Sim "
            "assumes all M rows stream at once")


def gemm_demo(args: argparse.Namespace) -> dict:
    from ..golden import gemm_events, ternary_gemm
    from ..golden.cycles import scalesim_ws_cycles
    from ..golden.tiling import check_gemm_dims
    from ..host.driver import driver_for
    from ..sim.verilated import VerilatorDevice

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
    scalesim = scalesim_ws_cycles(cfg.rows, cfg.cols, args.m, args.k, args.n)
    return {
        "config": cfg.to_dict(),
        "gemm": {"m": args.m, "k": args.k, "n": args.n},
        "results_identical": mismatches == 0,
        "mismatches": mismatches,
        "outputs": int(want.size),
        "rtl": measured.as_dict(),
        "golden": model.as_dict(),
        "counters_match": measured.as_dict() == model.as_dict(),
        "scalesim_ws_cycles": scalesim,
        "scalesim_note": scalesim_note(cfg, args.m, model.cycles, scalesim),
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
    from ..host import BitNetModel
    from ..host.synthetic import write_random_checkpoint

    cfg = array_from_args(args)
    key = hashlib.sha256(json.dumps(DEMO_MODEL, sort_keys=True).encode()).hexdigest()[:10]
    path = build_root() / "demo" / f"bitnet-tiny-{key}"
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


# The shipped model the demo runs, and the operand size it was trained on (its metadata.json).
ADDER = "tiny-adder"
ADDER_DIGITS = 3


def adder_demo(args: argparse.Namespace) -> dict:
    """tiny-adder's greedy answers to held-out problems on the RTL and on golden: the answers,
    the logits of every prompt and the per-layer event counts must all be equal."""
    from ..host import BitNetModel
    from ..train.eval_add import exact_match, held_out_problems

    cfg = array_from_args(args)
    problems = held_out_problems(args.problems, digits=ADDER_DIGITS, seed=args.seed)

    def run_on(model) -> tuple[list, list[np.ndarray], list[dict]]:
        results = exact_match(model, problems).results
        logits = [model.logits(model.encode(r.prompt)) for r in results]
        return results, logits, _counts(model.stats.as_dict())

    with BitNetModel.from_pretrained(ADDER, backend="golden", array=cfg) as golden:
        want, want_logits, want_counts = run_on(golden)
    t0 = time.perf_counter()
    with BitNetModel.from_pretrained(ADDER, backend="rtl", array=cfg) as rtl:
        got, got_logits, got_counts = run_on(rtl)
        seconds = time.perf_counter() - t0
        tiles = rtl.stats.as_dict()["total"]["tiles"]
    rows = [{"a": g.a, "b": g.b, "prompt": g.prompt, "answer": g.answer if g.stopped else None,
             "golden_answer": w.answer if w.stopped else None, "right": g.right}
            for g, w in zip(got, want, strict=True)]
    correct = sum(r["right"] for r in rows)
    return {
        "model": ADDER,
        "digits": ADDER_DIGITS,
        "seed": args.seed,
        "problems": rows,
        "correct": correct,
        "accuracy": correct / len(rows) if rows else 0.0,
        "answers_identical": got == want,
        "logits_identical": all(np.array_equal(g, w)
                                for g, w in zip(got_logits, want_logits, strict=True)),
        "model_stats_match": got_counts == want_counts,
        "tiles": tiles,
        "seconds": round(seconds, 2),
    }


def _counts(stats: dict) -> list[dict]:
    """Per-layer, per-projection event counts of a ModelStats dict, without timings."""
    keys = ("calls", "tiles", "cycles", "macs", "zero_skips")
    return [{proj: {k: s.get(k) for k in keys} for proj, s in layer["projections"].items()}
            for layer in stats["layers"]]


def run(args: argparse.Namespace) -> int:
    array_from_args(args)   # a bad configuration is reported before the build message
    progress("demo", args)(
        f"building a {args.rows}x{args.cols} ternary array with Verilator (the first build "
        "takes a few seconds)...")
    r = gemm_demo(args)
    ok = r["results_identical"] and r["counters_match"]
    if not args.gemm_only:
        r = {"gemm": r, "model": model_demo(args)}
        mr = r["model"]
        ok = ok and mr["tokens_identical"] and mr["logits_identical"] and \
            mr["model_stats_match"]
        if args.problems > 0:
            r["adder"] = ar = adder_demo(args)
            ok = ok and ar["answers_identical"] and ar["logits_identical"] and \
                ar["model_stats_match"]

    def table() -> str:
        parts = [_gemm_table(r if args.gemm_only else r["gemm"])]
        if not args.gemm_only:
            parts.append(_model_table(r["model"]))
            if "adder" in r:
                parts.append(_adder_table(r["adder"]))
        return "\n\n".join([*parts, "PASS" if ok else "FAIL"])

    emit(args, r, table)
    return 0 if ok else 1


def _model_table(r: dict) -> str:
    m, total = r["model"], r["rtl_stats"]["total"]
    verdict = "identical to golden" if r["tokens_identical"] else (
        f"DIFFER from golden {r['golden_tokens']}")
    lines = [
        f"model     BitNet b1.58, {m['layers']} layers, hidden {m['hidden']}, "
        f"intermediate {m['intermediate']}, {m['heads']} heads / {m['kv_heads']} KV heads, "
        f"vocab {m['vocab']} ({r['checkpoint']})",
        f"prompt    {r['prompt_tokens']}",
        f"RTL       generated {r['rtl_tokens']}: {verdict}"
        + (f"  ({r['text']!r})" if r["text"] else ""),
        f"logits    {'bit-identical to golden' if r['logits_identical'] else 'DIFFER'}; "
        f"per-layer counters {'equal' if r['model_stats_match'] else 'DIFFER from'} the "
        "cycle model",
        f"{'layer':>6s}{'tiles':>10s}{'cycles':>12s}{'MACs':>12s}{'zero skips':>12s}",
    ]
    for layer in r["rtl_stats"]["layers"]:
        t = layer["total"]
        lines.append(f"{layer['layer']:>6d}{t['tiles']:>10,}{t['cycles']:>12,}"
                     f"{t['macs']:>12,}{t['zero_skips']:>12,}")
    lines.append(f"{'all':>6s}{total['tiles']:>10,}{total['cycles']:>12,}{total['macs']:>12,}"
                 f"{total['zero_skips']:>12,}   ({r['seconds']} s on the simulated RTL)")
    return "\n".join(lines)


def _adder_table(r: dict) -> str:
    def shown(answer: str | None) -> str:
        return "(no EOS)" if answer is None else answer

    lines = [f"tiny-adder  the shipped model ({r['model']}) on {len(r['problems'])} held-out "
             f"{r['digits']}-digit problems (seed {r['seed']}), greedy on the RTL",
             f"{'problem':>14s}{'RTL':>8s}{'golden':>8s}   right"]
    for p in r["problems"]:
        same = "" if p["answer"] == p["golden_answer"] else "   <-- differs from golden"
        lines.append(f"{p['prompt']:>14s}{shown(p['answer']):>8s}"
                     f"{shown(p['golden_answer']):>8s}   {'yes' if p['right'] else 'NO'}{same}")
    lines += [
        f"accuracy  {r['correct']}/{len(r['problems'])} = {r['accuracy']:.0%}; answers "
        f"{'identical to' if r['answers_identical'] else 'DIFFER from'} golden, prompt logits "
        f"{'bit-identical' if r['logits_identical'] else 'DIFFER'}, per-layer counters "
        f"{'equal' if r['model_stats_match'] else 'DIFFER'} ({r['tiles']:,} tiles in "
        f"{r['seconds']} s on the simulated RTL)",
    ]
    return "\n".join(lines)


def _gemm_table(r: dict) -> str:
    cfg, g, rtl, gold = r["config"], r["gemm"], r["rtl"], r["golden"]
    verdict = "bit-identical to golden" if r["results_identical"] else (
        f"{r['mismatches']} of {r['outputs']} DIFFER from golden")
    lines = [
        f"array     {cfg['rows']}x{cfg['cols']} {cfg['dataflow']}, int{cfg['act_bits']} "
        f"activations, {cfg['acc_bits']}-bit accumulators, adder-only PEs",
        f"GEMM      {g['m']}x{g['k']} activations @ {g['k']}x{g['n']} ternary weights, "
        f"{rtl['tiles']} tiles",
        f"results   {r['outputs']} int32 outputs {verdict}",
        f"{'':10s}{'RTL counters':>14s}{'golden model':>14s}",
    ]
    for key in ("tiles", "cycles", "macs", "zero_skips"):
        mark = "" if rtl[key] == gold[key] else "   <-- mismatch"
        lines.append(f"{key:10s}{rtl[key]:>14,}{gold[key]:>14,}{mark}")
    lines += [
        f"SCALE-Sim weight-stationary estimate for this GEMM: {r['scalesim_ws_cycles']:,} "
        "cycles,",
        textwrap.fill(r["scalesim_note"], 96, initial_indent=" " * 10,
                      subsequent_indent=" " * 10),
        f"simulated {r['simulated_cycles']:,} clock cycles (bus traffic included) in "
        f"{r['run_seconds']} s: {r['simulated_cycles_per_s']:,} cycles/s",
    ]
    return "\n".join(lines)
