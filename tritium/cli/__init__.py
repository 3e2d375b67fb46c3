"""The `tritium` command. Each subcommand lives beside the code it drives and registers itself
here through a `register(subparsers)` function that sets `func` on its parser."""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__

# module path -> registers these subcommands
SUBCOMMANDS = (
    "tritium.hdl.cli",       # gen
    "tritium.sim.cli",       # verify
    "tritium.demo",          # demo
    "tritium.host.estimate_cli",  # estimate
    "tritium.host.cli",      # run
    "tritium.hdl.synth_cli",  # synth
    "tritium.boards.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tritium",
        description="Co-design toolkit for ternary (BitNet b1.58) LLM accelerators.",
    )
    parser.add_argument("--version", action="version", version=f"tritium {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(name).register(sub)
    return parser


class CliError(Exception):
    """An error the user caused; printed without a traceback."""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from .golden.checks import InputError
    from .golden.config import ConfigError

    try:
        return int(args.func(args) or 0)
    except (CliError, ConfigError, InputError, FileNotFoundError) as exc:
        print(f"tritium {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
