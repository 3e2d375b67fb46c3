"""Synthesise, place and route the board top (UART link + accelerator) and write the bitstream
with a JSON utilisation and timing report, into $TRITIUM_BUILD/boards/BOARD/ (default
build/boards/BOARD/) unless -o says otherwise. Array options default to the board's default
array, the largest that fits it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..boards.platforms import BOARDS
from ..boards.protocol import DEFAULT_BAUD
from .options import add_array_args, add_json, array_from_args, emit, json_on_stdout, output_dir

HELP = "build a board bitstream (yowasp Yosys + nextpnr from PyPI)"

# The options a board's array takes; the clock comes from the board. With --dataflow os the
# memory behind the port is on-chip RAM of --dram-words rows (boards/os_mem.py).
ARRAY_FIELDS = ("rows", "cols", "act_bits", "acc_bits", "weight_tiles", "act_depth", "max_k",
                "dataflow", "dram_bytes_per_cycle", "dram_words", "weight_packing")


def add_board(p: argparse.ArgumentParser) -> None:
    # Not `choices=`: an unknown board gets tritium's own message listing the boards.
    p.add_argument("--board", required=True, metavar="BOARD",
                   help=f"target board ({' | '.join(BOARDS)})")


def add_out(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("-o", "--out", type=output_dir, default=None, metavar="DIR",
                   help=f"{what} (default: $TRITIUM_BUILD/boards/BOARD, $TRITIUM_BUILD "
                   "defaulting to build)")


def board_dir(args: argparse.Namespace, board: str) -> Path:
    from ..boards.build import default_dir

    return args.out if args.out is not None else default_dir(board)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_board(p)
    add_array_args(p, only=ARRAY_FIELDS, unset="the board's")
    p.add_argument("--baud", type=int, default=None,
                   help="UART baud rate, up to what the board's USB bridge and clock make "
                   f"(default: the board's, {DEFAULT_BAUD})")
    add_out(p, "build folder")
    p.add_argument("--synth-only", action="store_true",
                   help="stop after synthesis and the capacity check (no place and route)")
    add_json(p)


def _utilisation(table: dict[str, Any]) -> list[str]:
    return [f"  {name:<14} {u['used']:>6} / {u['available']:<6} {u['percent']:5.1f} %"
            for name, u in table.items()]


def _table(result: Any) -> str:
    rep = result.report
    if result.bitstream is None:
        return "\n".join([f"synthesis fits; wrote {result.report_path}",
                          *_utilisation(rep["synth"]["utilisation"])])
    t = rep["timing"]
    verdict = "meets" if t["meets_board_clock"] else "FAILS"
    return "\n".join([f"wrote {result.bitstream} and {result.report_path}",
                      *_utilisation(rep["utilisation"]),
                      f"  Fmax {t['fmax_mhz']} MHz: {verdict} the {t['board_clock_mhz']:g} MHz "
                      "board clock"])


def run(args: argparse.Namespace) -> int:
    from ..boards.build import build
    from ..boards.platforms import get_board

    board = get_board(args.board)
    cfg = array_from_args(args, base=board.default_array)
    log = (lambda msg: print(msg, file=sys.stderr)) if json_on_stdout(args) else print
    result = build(board.name, board_dir(args, board.name), cfg, baud=args.baud,
                   synth_only=args.synth_only, log=log)
    emit(args, result.report, lambda: _table(result))
    return 0
