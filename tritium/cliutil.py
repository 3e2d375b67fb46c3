"""Argument helpers shared by subcommands, so every command spells array options the same way."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from typing import Any

from .golden.config import DATAFLOWS, ArrayConfig

_HELP = {
    "rows": "PE rows (the K dimension in weight-stationary)",
    "cols": "PE columns (the N dimension)",
    "act_bits": "activation width in bits",
    "acc_bits": "accumulator width in bits",
    "dataflow": f"dataflow ({', '.join(DATAFLOWS)})",
    "weight_tiles": "weight-buffer slots, each one rows x cols tile",
    "act_depth": "activation/output buffer entries (largest M per tile)",
    "max_k": "longest reduction accumulated on chip (checked against acc_bits)",
    "clock_mhz": "clock frequency in MHz",
    "dram_bytes_per_cycle": "DRAM bandwidth in bytes per clock (os: a multiple of 4)",
    "dram_words": "os simulated-DRAM depth in rows of dram_bytes_per_cycle bytes, a power of "
                  "two (0: sized for one pass at max_k)",
    "pe": "processing element of the ws array, a PE registered in tritium.hdl.pes (ternary; "
          "mac, the int8 multiply-accumulate baseline, exists at array level only)",
}


def add_array_args(parser: argparse.ArgumentParser, *, auto_dataflow: bool = False,
                   **defaults: Any) -> None:
    """--rows, --cols, --acc-bits, ... for every ArrayConfig field, defaulting to ArrayConfig's.

    auto_dataflow: the command also takes --dataflow auto (it then handles that itself)."""
    group = parser.add_argument_group("array configuration")
    base = ArrayConfig(**defaults)
    helps = dict(_HELP)
    if auto_dataflow:
        helps["dataflow"] = (f"dataflow ({', '.join(DATAFLOWS)}, or auto: each matmul on the one "
                             "the cost model prices faster)")
    for f in fields(ArrayConfig):
        value = getattr(base, f.name)
        group.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            type=type(value),
            default=value,
            metavar=f.name.split("_")[-1].upper()[:4] if f.name != "dataflow" else "DF",
            help=f"{helps[f.name]} (default: {value})",
        )


def array_from_args(args: argparse.Namespace) -> ArrayConfig:
    return ArrayConfig(**{f.name: getattr(args, f.name) for f in fields(ArrayConfig)})


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")
