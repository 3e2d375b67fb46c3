"""The `tritium` command: the only place that defines subcommands.

Each subcommand is a module of this package holding HELP (one line for `tritium --help`), a
docstring (the description `tritium CMD --help` shows), add_arguments(parser) and run(args).
Library packages never import this one; they raise their own errors, which main() prints as
one line.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from types import ModuleType

from .. import __version__
from .options import CliError, Parser

__all__ = ["COMMANDS", "CliError", "build_parser", "main"]

# in the order `tritium --help` lists them
COMMANDS = ("gen", "verify", "demo", "run", "export", "estimate", "eval", "synth", "sweep",
            "train", "build", "flash")


def _command(name: str) -> ModuleType:
    return importlib.import_module(f"{__name__}.{name}")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="tritium",
                    description="Co-design toolkit for ternary (BitNet b1.58) LLM accelerators.")
    parser.add_argument("--version", action="version", version=f"tritium {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = _command(name)
        p = sub.add_parser(name, help=module.HELP, description=module.__doc__)
        module.add_arguments(p)
        p.set_defaults(func=module.run)
    return parser


def _is_user_error(exc: BaseException) -> bool:
    """Errors tritium's libraries raise on purpose (every class they define: InputError,
    ConfigError, BuildError, DeviceError, ...) and the operating system's (files, serial
    ports). Anything else is a bug and keeps its traceback."""
    if isinstance(exc, OSError):
        return True
    return any(cls.__module__.split(".")[0] == "tritium" for cls in type(exc).__mro__)


def error_line(exc: BaseException) -> str:
    """The message of a user error; an OSError names its file."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        files = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
        return f"{files}: {exc.strerror}"
    text = str(exc).strip() or type(exc).__name__
    # A tool's log may follow the one-line reason; indent it so the reason stands out.
    first, *rest = text.splitlines()
    return "\n".join([first, *("  " + line for line in rest)])


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # stdout went away (`tritium ... | head`): stop quietly, and keep Python's own flush at
        # exit from failing on the closed pipe too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        if not _is_user_error(exc):
            raise
        sys.stdout.flush()
        print(f"tritium {args.command}: error: {error_line(exc)}", file=sys.stderr)
        return 1
