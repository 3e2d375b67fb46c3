"""Score a trained model under an accelerator's numerics on tritium's golden backend (NumPy,
no torch): exact-match accuracy on held-out addition problems (--task add) or the perplexity
of a text file (--text FILE), with activations quantised to --act-bits, accumulators of
--acc-bits that wrap or saturate as the RTL does (--acc-overflow), and weights decoded from
--weight-packing. Each numerics option takes a comma-separated list; every combination is
scored, printed as a table and, with --plot, drawn against each option.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .options import CliError, add_json, emit, json_on_stdout, output_file

HELP = "accuracy or perplexity of a model under hardware numerics (bits, overflow, packing)"

# option -> (type of one value, default list, help)
_LISTS: dict[str, tuple[type, str, str]] = {
    "act_bits": (int, "8", "activation bits, 2..8 (per-token absmax quantiser at that width)"),
    "acc_bits": (int, "32", "accumulator bits"),
    "acc_overflow": (str, "safe", "safe (acc_bits must hold the model's longest sum), wrap or "
                     "saturate (the RTL's behaviour past acc_bits)"),
    "weight_packing": (str, "2bit", "weight packing: 2bit (HF, 4 per byte) or base3 (5 per "
                       "byte); lossless, so accuracy must not change"),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="NAME_OR_DIR",
                   help="a shipped model (e.g. tiny-adder) or a checkpoint folder")
    task = p.add_mutually_exclusive_group(required=True)
    task.add_argument("--task", choices=["add"],
                      help="exact match on held-out addition problems")
    task.add_argument("--text", metavar="FILE", help="perplexity of this text file, "
                      "tokenised by the model's tokenizer")
    num = p.add_argument_group("numerics (comma-separated lists)")
    for name, (_, default, text) in _LISTS.items():
        num.add_argument("--" + name.replace("_", "-"), dest=name, default=default,
                         metavar="V[,V...]", help=f"{text} (default: {default})")
    arr = p.add_argument_group("array (where a saturating accumulator clamps)")
    arr.add_argument("--dataflow", default="ws", metavar="DF",
                     help="ws: each K tile of --rows adds down the PEs, then into the output "
                     "buffer; os: one accumulator per output (default: ws)")
    arr.add_argument("--rows", type=int, default=4, metavar="R", help="PE rows (default: 4)")
    add = p.add_argument_group("--task add")
    add.add_argument("--problems", type=int, default=1000, metavar="N",
                     help="held-out problems (default: 1000)")
    add.add_argument("--digits", type=int, default=3, metavar="D",
                     help="operand digits (default: 3)")
    add.add_argument("--seed", type=int, default=0, metavar="S",
                     help="seed of the problem order (default: 0)")
    p.add_argument("--max-tokens", type=int, default=None, metavar="N",
                   help="--text: score at most N tokens (default: 4096)")
    p.add_argument("-o", "--plot", type=output_file, default=None, metavar="PNG",
                   help="plot the score against each option with several values")
    add_json(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_list(name: str, text: str) -> list[Any]:
    kind = _LISTS[name][0]
    out = []
    for part in (t.strip() for t in text.split(",")):
        if not part:
            raise CliError(f"--{name.replace('_', '-')}: empty value in {text!r}")
        try:
            out.append(kind(part))
        except ValueError:
            raise CliError(f"--{name.replace('_', '-')}: expected {kind.__name__} values, "
                           f"got {part!r}") from None
    return list(dict.fromkeys(out))


def _bar(args: argparse.Namespace, total: int | None, unit: str):
    from tqdm import tqdm

    show = not (args.no_progress or json_on_stdout(args))
    # disable=None: tqdm draws only on a terminal
    return tqdm(total=total, desc="eval", unit=unit, disable=None if show else True,
                file=sys.stderr, leave=False)


def run(args: argparse.Namespace) -> int:
    from ..golden.config import ArrayConfig
    from ..train.eval_plot import plot_scores
    from ..train.evaluate import DEFAULT_MAX_TOKENS, evaluate, grid

    for name, value in (("--problems", args.problems), ("--rows", args.rows)):
        if value < 1:
            raise CliError(f"{name} must be >= 1, got {value}")
    if args.text is not None and args.max_tokens is not None and args.max_tokens < 2:
        raise CliError(f"--max-tokens must be >= 2, got {args.max_tokens}")
    points = grid({n: parse_list(n, getattr(args, n)) for n in _LISTS})
    base = ArrayConfig(rows=args.rows, dataflow=args.dataflow)
    task = "add" if args.task else "text"
    per_point = args.problems if task == "add" else None
    with _bar(args, per_point * len(points) if per_point else None,
              "problem" if task == "add" else "window") as bar:
        rows = evaluate(args.model, points, task=task, text=args.text, problems=args.problems,
                        seed=args.seed, digits=args.digits,
                        max_tokens=args.max_tokens or DEFAULT_MAX_TOKENS, base=base,
                        on_step=lambda: bar.update(1))
    score = "accuracy" if task == "add" else "perplexity"
    doc = {"model": args.model, "task": task, "text": args.text,
           "array": {"dataflow": args.dataflow, "rows": args.rows}, "points": rows}
    if task == "add":
        doc.update(problems=args.problems, digits=args.digits, seed=args.seed)
    if args.plot is not None:
        what = (f"{args.problems} held-out problems" if task == "add" else args.text)
        doc["plot"] = str(plot_scores(rows, score, args.plot, f"{args.model}: {score} on {what}"))
    emit(args, doc, lambda: table(rows, score, doc.get("plot")))
    return 0


def table(rows: list[dict[str, Any]], score: str, plot: str | None) -> str:
    from ..train.evaluate import OPTIONS

    extra = ["correct", "problems"] if score == "accuracy" else ["tokens"]
    cols = [*OPTIONS, score, *extra, "seconds"]

    def cell(r: dict[str, Any], c: str) -> str:
        v = r.get(c)
        if v is None:
            return ""
        if c == "accuracy":
            return f"{100 * v:.1f}%"
        if isinstance(v, float):
            return f"{v:.4g}" if c != "seconds" else f"{v:.1f}"
        return str(v)

    cells = [[cell(r, c) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True))]
    for r, row in zip(rows, cells, strict=True):
        line = "  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True))
        if r.get("error"):
            line += f"  error: {r['error']}"
        lines.append(line)
    if plot:
        lines.append(f"plot: {plot}")
    return "\n".join(lines)
