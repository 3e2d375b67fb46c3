"""Verilog generation: the one place that turns a Component into files under a build folder."""

from __future__ import annotations

import functools
import json
from dataclasses import replace
from pathlib import Path

from amaranth.back import verilog
from amaranth.lib import wiring

from ..golden.config import DEFAULT_PE, ArrayConfig, ConfigError
from ..golden.dataflows import dataflow, dataflow_names
from ..golden.files import atomic_write_text
from .array import SystolicArray
from .pes import PESpec, config_pe

# "top" is the accelerator of cfg.dataflow (golden.dataflows); "stream" is always the os top.
UNITS = ("pe", "array", "top", "stream")


def top_dataflow(unit: str, cfg: ArrayConfig) -> str | None:
    """The dataflow whose top `unit` builds for cfg (None for units below the top)."""
    if unit == "stream":
        return "os"
    return cfg.dataflow if unit == "top" else None


def make_unit(unit: str, cfg: ArrayConfig, pe: str | None = None) -> wiring.Component:
    """The component `unit` of cfg; `pe`, if given, replaces cfg.pe."""
    if pe is not None:
        cfg = replace(cfg, pe=pe)
    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}; expected one of {', '.join(UNITS)}")
    spec = config_pe(cfg)
    if unit == "pe":
        return spec.build(cfg.act_bits, cfg.acc_bits, cfg.acc_overflow)
    if unit == "array":
        return SystolicArray(cfg)
    if not spec.fits_accelerator:
        # The top's weight buffer, register map and host packing hold 2-bit codes.
        raise ConfigError(f"the {spec.name} PE takes {spec.weight_bits}-bit weights and exists "
                          f"as unit 'pe' or 'array' only; the accelerator tops store 2-bit "
                          f"ternary codes")
    df = dataflow(top_dataflow(unit, cfg) or cfg.dataflow)
    if not df.pe_array and cfg.pe != DEFAULT_PE:
        takers = ", ".join(n for n in dataflow_names() if dataflow(n).pe_array)
        raise ConfigError(f"ArrayConfig.pe={cfg.pe!r} applies to dataflow {takers}; the "
                          f"{df.name} top builds a PE of its own")
    return df.load("top")(cfg)


def to_verilog(component: wiring.Component, name: str) -> str:
    text = verilog.convert(component, name=name, emit_src=False)
    # A top may rewrite its own Verilog (the os top drops its activation buffer's zero fill).
    fix = getattr(component, "fix_verilog", None)
    return fix(text) if fix is not None else text


def unit_verilog(unit: str, cfg: ArrayConfig, name: str) -> str:
    """The Verilog text of `unit` for cfg, generated once per process. Build caches key on a
    hash of this text, so any change to what is generated (an RTL edit, a new PE) rebuilds."""
    return _cached_verilog(unit, cfg, name, config_pe(cfg))


@functools.lru_cache(maxsize=16)
def _cached_verilog(unit: str, cfg: ArrayConfig, name: str, spec: PESpec) -> str:
    # `spec` is part of the key: the same name registered from another module is another PE.
    return to_verilog(make_unit(unit, cfg), name)


def manifest(cfg: ArrayConfig, unit: str, name: str) -> dict:
    rm = dataflow(top_dataflow(unit, cfg) or cfg.dataflow).load("regmap")(cfg)
    return {
        "tritium_unit": unit,
        "top": name,
        "config": cfg.to_dict(),
        "config_key": cfg.key(),
        "pe": cfg.pe,
        "bus": {"addr_bits": rm.addr_bits, "data_bits": 32, "region_bits": rm.region_bits},
    }


def write_unit(unit: str, cfg: ArrayConfig, out_dir: Path, name: str | None = None,
               pe: str | None = None) -> Path:
    """Write <name>.v and <name>.json into out_dir; returns the Verilog path. `pe`, if given,
    replaces cfg.pe.

    Files are written to temporaries and renamed, so an interrupted run leaves no half file.
    """
    if pe is not None:
        cfg = replace(cfg, pe=pe)
    name = name or f"tritium_{unit}"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = unit_verilog(unit, cfg, name)
    info = manifest(cfg, unit, name)
    files = {
        out_dir / f"{name}.v": text,
        out_dir / f"{name}.json": json.dumps(info, indent=2) + "\n",
    }
    for path, content in files.items():
        atomic_write_text(path, content)
    return out_dir / f"{name}.v"
