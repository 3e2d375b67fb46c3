"""Generate the Verilog of the accelerator top (or one of its units) and a JSON manifest of the
configuration it was built for."""

from __future__ import annotations

import argparse

from ..golden.files import atomic_write_json, atomic_write_text
from ..hdl.generate import UNITS
from .options import CliError, add_array_args, add_json, array_from_args, emit, output_dir

HELP = "generate Verilog for an array configuration"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_array_args(p)
    p.add_argument("-o", "--out", type=output_dir, required=True, metavar="DIR",
                   help="output folder (created if missing)")
    p.add_argument("--unit", choices=UNITS, default="top",
                   help="which unit to generate (default: top)")
    p.add_argument("--name", help="Verilog module name (default: tritium_<unit>)")
    add_json(p)


def run(args: argparse.Namespace) -> int:
    from ..hdl.generate import make_unit, manifest, to_verilog

    cfg = array_from_args(args)
    name = args.name or f"tritium_{args.unit}"
    if not name.isidentifier():
        raise CliError(f"--name {name!r} is not a Verilog module name (letters, digits, _)")
    info = manifest(cfg, args.unit, name)
    verilog = args.out / f"{name}.v"
    # Both files are rendered before either is written: a rejected design writes nothing.
    text = to_verilog(make_unit(args.unit, cfg), name)
    atomic_write_text(verilog, text)
    atomic_write_json(verilog.with_suffix(".json"), info)
    info["files"] = {"verilog": str(verilog), "manifest": str(verilog.with_suffix(".json"))}
    emit(args, info, lambda: f"wrote {verilog} and {verilog.with_suffix('.json')} "
         f"({args.unit}, {cfg.rows}x{cfg.cols} {cfg.dataflow}, {cfg.acc_bits}-bit acc)")
    return 0
