"""Evaluate a grid (or a seeded random sample) of accelerator designs on a BitNet b1.58
model: tokens/s and J/token from the estimator, optionally LUTs, FFs, BRAM, DSP, Fmax and fit
from synthesis, and registered accuracy metrics. Every parameter option takes a
comma-separated list of values. Finished points are cached in DIR/points and skipped when the
sweep runs again. Runs on a local process pool, or on Ray with --ray.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..explore.adapters import SYNTH_MODES, params
from .options import add_json, emit, json_on_stdout, output_dir

HELP = "sweep a design space: estimate, synthesis and accuracy per point, Pareto front"

MAX_ERRORS_SHOWN = 8
DEFAULT_OBJECTIVES = "decode_tokens_per_s:max,energy_j_per_token:min"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="NAME_OR_DIR",
                   help="a named model (e.g. bitnet-b1.58-2B-4T) or a checkpoint folder")
    p.add_argument("-o", "--out", required=True, metavar="DIR", type=output_dir,
                   help="results folder: results.csv, results.json, pareto.png, points/")
    groups = {"array": p.add_argument_group("array parameters (comma-separated lists)"),
              "estimate": p.add_argument_group("estimator options (comma-separated lists)"),
              "synth": p.add_argument_group("synthesis target (with --synth; lists)")}
    for name, param in params().items():
        default = "" if param.default is None else f" (default: {param.default})"
        groups[param.group].add_argument(
            "--" + name.replace("_", "-"), dest=name, default=None, metavar="V[,V...]",
            help=f"{param.help}{default}")
    p.add_argument("--random", type=int, default=None, metavar="N",
                   help="evaluate N points drawn at random from the grid instead of all")
    p.add_argument("--seed", type=int, default=0, metavar="S",
                   help="seed of --random (default: 0)")
    p.add_argument("--synth", nargs="?", const="full", default=None, choices=SYNTH_MODES,
                   help="also synthesise each array: full (Yosys, nextpnr: resources and "
                   "Fmax; the default) or fit (Yosys' fit check only)")
    p.add_argument("--accuracy", nargs="?", const="", default=None, metavar="NAMES",
                   help="also evaluate registered accuracy metrics (comma-separated names; "
                   "all registered ones if none given)")
    p.add_argument("--objectives", default=DEFAULT_OBJECTIVES, metavar="COL:max|min,...",
                   help=f"the two objectives of the Pareto front (default: {DEFAULT_OBJECTIVES})")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="worker processes (default: one per CPU; 1 runs in this process); "
                   "with --ray local, the CPUs Ray may use")
    p.add_argument("--ray", default=None, metavar="ADDRESS|local",
                   help="run on a Ray cluster at ADDRESS, or start one on this machine with "
                   "'local' (needs the 'ray' extra)")
    add_json(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..explore.adapters import SweepError
    from ..explore.executors import make_executor
    from ..explore.metrics import select
    from ..explore.pareto import parse_objectives
    from ..explore.space import Space
    from ..explore.sweep import SweepSpec, sweep

    axes = {n: getattr(args, n) for n in params() if getattr(args, n, None) is not None}
    space = Space.from_strings(axes)
    if args.random is not None and args.random < 1:
        raise SweepError(f"--random: the sample size must be >= 1, got {args.random}")
    metrics = []
    if args.accuracy is not None:
        names = [n.strip() for n in args.accuracy.split(",") if n.strip()]
        metrics = select(names or None)
    spec = SweepSpec(model=args.model, space=space, random=args.random, seed=args.seed,
                     synth=args.synth, metrics=metrics,
                     objectives=parse_objectives(args.objectives))
    executor = make_executor(args.jobs, args.ray)
    try:
        result = sweep(spec, args.out, executor,
                       progress=not (args.no_progress or json_on_stdout(args))
                       and sys.stderr.isatty())
    finally:
        executor.close()
    doc = json.loads((result.out_dir / "results.json").read_text())
    emit(args, doc, lambda: summary(result, spec))
    return 0


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def summary(result: Any, spec: Any) -> str:
    rows = result.rows()
    by = {s: sum(r["status"] == s for r in rows) for s in ("ok", "invalid", "failed")}
    lines = [f"{len(rows)} points ({by['ok']} ok, {by['invalid']} invalid, {by['failed']} "
             f"failed); {result.evaluated} evaluated, {result.cached} cached; "
             f"results in {result.out_dir}"]
    varied = [a for a, v in spec.space.axes.items() if len(v) > 1]
    shown = [*varied, *(o.column for o in spec.objectives)]
    shown = list(dict.fromkeys(shown))
    front = [r for r in rows if r["pareto"]]
    if front:
        lines.append("Pareto front (" + ", ".join(o.spec() for o in spec.objectives) + "):")
        widths = [max(len(c), *(len(_fmt(r.get(c))) for r in front)) for c in shown]
        lines.append("  " + "  ".join(c.rjust(w) for c, w in zip(shown, widths, strict=True)))
        for r in front:
            lines.append("  " + "  ".join(_fmt(r.get(c)).rjust(w)
                                          for c, w in zip(shown, widths, strict=True)))
    bad = [r for r in rows if r["status"] != "ok"]
    for r in bad[:MAX_ERRORS_SHOWN]:
        lines.append(f"{r['status']}: " + ", ".join(f"{a}={_fmt(r.get(a))}"
                                                    for a in spec.space.axes)
                     + f": {r['error']}")
    if len(bad) > MAX_ERRORS_SHOWN:
        lines.append(f"... and {len(bad) - MAX_ERRORS_SHOWN} more not ok: see "
                     f"{result.out_dir / 'results.csv'}")
    return "\n".join(lines)
