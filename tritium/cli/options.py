"""What every subcommand spells the same way: array options, --json, output paths, errors."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from ..golden.config import DATAFLOWS, ArrayConfig
from ..golden.files import atomic_write_json

STDOUT = "-"


class CliError(Exception):
    """An error the user caused; printed as one line without a traceback."""


class Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line (the usage itself is one --help away)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


_HELP = {
    "rows": "PE rows (the K dimension in weight-stationary)",
    "cols": "PE columns (the N dimension)",
    "act_bits": "activation width in bits",
    "acc_bits": "accumulator width in bits",
    "dataflow": f"dataflow ({', '.join(DATAFLOWS)})",
    "weight_tiles": "weight-buffer slots, each one rows x cols tile",
    "act_depth": "activation/output buffer entries (largest M per tile)",
    "max_k": "longest reduction accumulated on chip (checked against acc_bits)",
    "acc_overflow": "what an accumulator does past acc_bits: safe (max_k must not overflow "
                    "it), wrap or saturate",
    "clock_mhz": "clock frequency in MHz",
    "dram_bytes_per_cycle": "DRAM bandwidth in bytes per clock (os: a multiple of 4)",
    "dram_words": "os: rows of dram_bytes_per_cycle bytes in the memory the harness serves "
                  "the top's port from, a power of "
                  "two (0: sized for one pass at max_k)",
    "weight_buffers": "weight registers per ws PE: 1 loads then streams each tile, 2 loads "
                      "the next tile while the current one streams",
    "pe": "processing element of the ws array, a PE registered in tritium.hdl.pes (ternary; "
          "mac, the int8 multiply-accumulate baseline, exists at array level only)",
    "weight_packing": "how the os weight stream packs ternary weights: 2bit (4 per byte) or "
                      "base3 (5 per byte, 1.6 bits)",
}
AUTO = "auto"


def add_array_args(parser: argparse.ArgumentParser, *, auto_dataflow: bool = False,
                   only: Iterable[str] | None = None, hide: Iterable[str] = (),
                   unset: str | None = None, **defaults: Any) -> None:
    """--rows, --cols, --acc-bits, ... for the ArrayConfig fields, defaulting to ArrayConfig's.

    auto_dataflow: --dataflow also takes "auto" (each matmul on the dataflow the cost model
    prices faster; the command handles it). only: just these fields. hide: accepted but left
    out of --help, defaulting to None so the command can tell they were given. unset: every
    default is None, described as this (e.g. "the board's")."""
    group = parser.add_argument_group("array configuration")
    dataflow_default = defaults.pop("dataflow", None)
    base = ArrayConfig(**defaults)
    helps = dict(_HELP)
    if auto_dataflow:
        helps["dataflow"] = (f"dataflow ({', '.join(DATAFLOWS)}, or {AUTO}: each matmul on the "
                             "one the cost model prices faster)")
    wanted = set(only) if only is not None else None
    for f in fields(ArrayConfig):
        if wanted is not None and f.name not in wanted:
            continue
        value = getattr(base, f.name)
        if f.name == "dataflow" and dataflow_default is not None:
            value = dataflow_default
        default: Any = None if unset or f.name in hide else value
        shown = unset or value
        group.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            type=type(getattr(base, f.name)),
            default=default,
            metavar=f.name.split("_")[-1].upper()[:4] if f.name != "dataflow" else "DF",
            help=argparse.SUPPRESS if f.name in hide else f"{helps[f.name]} (default: {shown})",
        )


def array_from_args(args: argparse.Namespace, base: ArrayConfig | None = None,
                    **override: Any) -> ArrayConfig:
    """The ArrayConfig the options describe; with base, only the options given replace it."""
    values = {f.name: getattr(args, f.name) for f in fields(ArrayConfig)
              if getattr(args, f.name, None) is not None}
    values.update(override)
    return replace(base, **values) if base is not None else ArrayConfig(**values)


# --- files the user names ---------------------------------------------------------------

def _existing_ancestor(path: Path) -> Path:
    for parent in (path, *path.parents):
        if parent.exists():
            return parent
    return Path(".")


def output_file(text: str) -> Path:
    """argparse type of a file tritium writes: not a folder, and its folder can be created."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file path")
    above = _existing_ancestor(path.parent)
    if not above.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {text}: {above} is a file, not a folder")
    return path


def output_dir(text: str) -> Path:
    """argparse type of a folder tritium writes into (created if missing)."""
    path = Path(text)
    above = _existing_ancestor(path)
    if not above.is_dir():
        what = "is a file" if above == path else f"is inside {above}, which is a file"
        raise argparse.ArgumentTypeError(f"{text} {what}; give a folder (created if missing)")
    return path


# --- --json -----------------------------------------------------------------------------

JSON_HELP = ("JSON instead of the table: on stdout with no FILE (or '-'); with FILE, also "
             "write it there (atomically) and print the table as usual")


def _json_target(text: str) -> Path | str:
    return STDOUT if text == STDOUT else output_file(text)


def add_json(parser: argparse.ArgumentParser) -> None:
    """--json [FILE], the same in every command: see JSON_HELP."""
    parser.add_argument("--json", nargs="?", const=STDOUT, default=None, type=_json_target,
                        metavar="FILE", help=JSON_HELP)


def json_on_stdout(args: argparse.Namespace) -> bool:
    """True when stdout carries JSON: progress and notes must then go to stderr or nowhere."""
    return args.json == STDOUT


def emit(args: argparse.Namespace, obj: Any, render: Callable[[], str]) -> None:
    """The result of a command as --json asks: JSON on stdout, or render()'s table on stdout
    (and with --json FILE, the JSON written to FILE too)."""
    if json_on_stdout(args):
        json.dump(obj, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    if args.json is not None:
        atomic_write_json(args.json, obj)
    print(render())
    if args.json is not None:
        print(f"json: {args.json}")


def progress(command: str, args: argparse.Namespace | None = None) -> Callable[[str], None]:
    """A logger for progress lines, on stderr and prefixed with the command; silent when the
    command prints JSON on stdout (given its args), so a script reads nothing else."""
    quiet = args is not None and json_on_stdout(args)

    def log(msg: str) -> None:
        if not quiet:
            print(f"tritium {command}: {msg}", file=sys.stderr, flush=True)
    return log
