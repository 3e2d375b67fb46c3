"""Verilog generation: the one place that turns a Component into files under a build folder."""

from __future__ import annotations

import json
from pathlib import Path

from amaranth.back import verilog
from amaranth.lib import wiring

from ..golden.config import ArrayConfig
from ..golden.dataflows import dataflow
from .array import SystolicArray
from .mac_pe import MacPE
from .pe import TernaryPE

# "top" is the accelerator of cfg.dataflow (golden.dataflows); "stream" is always the os top.
UNITS = ("pe", "array", "top", "stream")
# "mac" is the int8 x int8 multiply-accumulate baseline, built for area/Fmax comparison only.
PES = ("ternary", "mac")
MAC_WEIGHT_BITS = 8


def top_dataflow(unit: str, cfg: ArrayConfig) -> str | None:
    """The dataflow whose top `unit` builds for cfg (None for units below the top)."""
    if unit == "stream":
        return "os"
    return cfg.dataflow if unit == "top" else None



def make_unit(unit: str, cfg: ArrayConfig, pe: str = "ternary") -> wiring.Component:
    if pe not in PES:
        raise ValueError(f"unknown PE {pe!r}; expected one of {', '.join(PES)}")
    if pe == "mac":
        if unit == "pe":
            return MacPE(cfg.act_bits, cfg.acc_bits, MAC_WEIGHT_BITS)
        if unit == "array":
            return SystolicArray(cfg, pe=MacPE, weight_bits=MAC_WEIGHT_BITS)
        if unit in ("top", "stream"):
            # The top's weight buffer, register map and host packing hold 2-bit codes.
            raise ValueError("the int8 MAC baseline exists as unit 'pe' or 'array' only; "
                             "the accelerator top stores 2-bit ternary weights")
    if unit == "pe":
        return TernaryPE(cfg.act_bits, cfg.acc_bits)
    if unit == "array":
        return SystolicArray(cfg)
    df = top_dataflow(unit, cfg)
    if df is not None:
        return dataflow(df).load("top")(cfg)
    raise ValueError(f"unknown unit {unit!r}; expected one of {', '.join(UNITS)}")


def to_verilog(component: wiring.Component, name: str) -> str:
    return verilog.convert(component, name=name, emit_src=False)


def manifest(cfg: ArrayConfig, unit: str, name: str) -> dict:
    rm = dataflow(top_dataflow(unit, cfg) or cfg.dataflow).load("regmap")(cfg)
    return {
        "tritium_unit": unit,
        "top": name,
        "config": cfg.to_dict(),
        "config_key": cfg.key(),
        "bus": {"addr_bits": rm.addr_bits, "data_bits": 32, "region_bits": rm.region_bits},
    }


def write_unit(unit: str, cfg: ArrayConfig, out_dir: Path, name: str | None = None,
               pe: str = "ternary") -> Path:
    """Write <name>.v and <name>.json into out_dir; returns the Verilog path.

    Files are written to temporaries and renamed, so an interrupted run leaves no half file.
    """
    name = name or f"tritium_{unit}"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = to_verilog(make_unit(unit, cfg, pe), name)
    info = manifest(cfg, unit, name)
    if pe != "ternary":
        info["pe"] = pe
    files = {
        out_dir / f"{name}.v": text,
        out_dir / f"{name}.json": json.dumps(info, indent=2) + "\n",
    }
    for path, content in files.items():
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(content)
        tmp.replace(path)
    return out_dir / f"{name}.v"
