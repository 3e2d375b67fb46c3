"""`tritium gen`: write the Verilog and a JSON manifest for one configuration."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cliutil import add_array_args, array_from_args, print_json
from .generate import UNITS, write_unit


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gen",
        help="generate Verilog for an array configuration",
        description="Generate the Verilog of the accelerator top (or one of its units) and a "
        "JSON manifest of the configuration it was built for.",
    )
    add_array_args(p)
    p.add_argument("-o", "--out", type=Path, required=True, metavar="DIR",
                   help="output folder (created if missing)")
    p.add_argument("--unit", choices=UNITS, default="top",
                   help="which unit to generate (default: top)")
    p.add_argument("--name", help="Verilog module name (default: tritium_<unit>)")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .generate import manifest

    cfg = array_from_args(args)
    name = args.name or f"tritium_{args.unit}"
    verilog = write_unit(args.unit, cfg, args.out, name)
    if args.json:
        info = manifest(cfg, args.unit, name)
        info["files"] = {"verilog": str(verilog), "manifest": str(verilog.with_suffix(".json"))}
        print_json(info)
    else:
        print(f"wrote {verilog} and {verilog.with_suffix('.json')} "
              f"({args.unit}, {cfg.rows}x{cfg.cols} {cfg.dataflow}, {cfg.acc_bits}-bit acc)")
    return 0
