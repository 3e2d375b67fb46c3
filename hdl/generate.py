"""Verilog generation: the one place that turns a Component into files under a build folder."""

from __future__ import annotations

import json
from pathlib import Path

from amaranth.back import verilog
from amaranth.lib import wiring

from ..golden.config import ArrayConfig
from .array import SystolicArray
from .pe import TernaryPE
from .regmap import RegMap
from .top import TernaryAccelerator

UNITS = ("pe", "array", "top")


def make_unit(unit: str, cfg: ArrayConfig) -> wiring.Component:
    if unit == "pe":
        return TernaryPE(cfg.act_bits, cfg.acc_bits)
    if unit == "array":
        return SystolicArray(cfg)
    if unit == "top":
        return TernaryAccelerator(cfg)
    raise ValueError(f"unknown unit {unit!r}; expected one of {', '.join(UNITS)}")


def to_verilog(component: wiring.Component, name: str) -> str:
    return verilog.convert(component, name=name, emit_src=False)


def manifest(cfg: ArrayConfig, unit: str, name: str) -> dict:
    rm = RegMap(cfg)
    return {
        "tritium_unit": unit,
        "top": name,
        "config": cfg.to_dict(),
        "config_key": cfg.key(),
        "bus": {"addr_bits": rm.addr_bits, "data_bits": 32, "region_bits": rm.region_bits},
    }


def write_unit(unit: str, cfg: ArrayConfig, out_dir: Path, name: str | None = None) -> Path:
    """Write <name>.v and <name>.json into out_dir; returns the Verilog path.

    Files are written to temporaries and renamed, so an interrupted run leaves no half file.
    """
    name = name or f"tritium_{unit}"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = to_verilog(make_unit(unit, cfg), name)
    files = {
        out_dir / f"{name}.v": text,
        out_dir / f"{name}.json": json.dumps(manifest(cfg, unit, name), indent=2) + "\n",
    }
    for path, content in files.items():
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(content)
        tmp.replace(path)
    return out_dir / f"{name}.v"
