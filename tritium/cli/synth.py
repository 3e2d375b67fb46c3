"""Generate the accelerator for an array configuration, synthesise it with Yosys, place and
route it with nextpnr (both from PyPI, as WebAssembly) at the configured clock, and report the
resources it uses and the Fmax nextpnr found. A design Yosys already finds too large is
reported without running nextpnr. Products go to $TRITIUM_BUILD/synth/ (default
build/synth/)."""

from __future__ import annotations

import argparse
from typing import Any

from ..hdl.generate import UNITS
from ..hdl.synth import DEVICES
from .options import add_array_args, add_json, array_from_args, emit, progress

HELP = "synthesise, place and route on an FPGA; report LUTs, FFs, BRAM, DSP and Fmax"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", required=True, metavar="DEVICE",
                   help=f"target FPGA: {' | '.join(DEVICES)}")
    add_array_args(p)   # --pe among them: ternary, or mac (the int8 MAC baseline)
    p.add_argument("--unit", choices=[u for u in UNITS if u != "pe"],
                   help="what to synthesise: the accelerator top with buffers and bus, or the "
                   "bare array (default: top for ternary; array for mac, which has no top)")
    p.add_argument("--no-dsp", dest="dsp", action="store_false",
                   help="keep multipliers in LUTs instead of DSP blocks")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placer seed (default: 1)")
    p.add_argument("--timing-driven", action=argparse.BooleanOptionalAction, default=None,
                   help="timing-driven placement and routing (default: on for ice40; off for "
                   "ecp5, where it makes routing large arrays take hours, for 10-20 %% less "
                   "Fmax)")
    p.add_argument("--no-cache", dest="cache", action="store_false",
                   help="rerun nextpnr even if an identical run is cached")
    add_json(p)


def format_report(r: dict[str, Any]) -> str:
    cfg = r["config"]
    lines = [f"{r['device']} ({r['part']}): {r['unit']} {cfg['rows']}x{cfg['cols']} "
             f"{cfg['dataflow']}, {r['pe']} PE, {cfg['acc_bits']}-bit accumulators",
             f"{'resource':<10}{'used':>8}{'available':>11}{'util':>9}  counted as"]
    for row in r["resources"].values():
        counted = row["cells"]
        if "placed_as" in row:
            counted = f"{row['placed_as']} placed ({row['synth']} {row['cells']} from Yosys)"
        lines.append(f"{row['label']:<10}{row['used']:>8}{row['available']:>11}"
                     f"{row['utilization_pct']:>8.1f}%  {counted}")
    fmax = r["fmax_mhz"]
    verdict = "met" if r["timing_met"] else "NOT met"
    mode = "" if r.get("timing_driven", True) else " (placed without timing-driven mode)"
    lines.append(f"Fmax {fmax:.1f} MHz against a {r['clock_mhz']:g} MHz target: timing "
                 f"{verdict}{mode}" if fmax is not None else "Fmax: nextpnr reported no clock")
    lines.append(f"{r['luts_per_pe']:.1f} LUTs per PE in the {r['unit']} "
                 f"(one bare PE: {r['pe_luts']} LUTs, {r['pe_dsp']} DSP); "
                 f"build folder {r['build_dir']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ..hdl.synth import synth_report

    cfg = array_from_args(args)
    # Progress always goes to stderr: synthesis is slow enough to want it even with --json.
    log = progress("synth")
    if args.pe == "mac" and args.unit is None:
        log("the MAC baseline exists at array level: synthesising the bare array "
            "(compare with --pe ternary --unit array)")
    report = synth_report(cfg, args.device, unit=args.unit, dsp=args.dsp,
                          seed=args.seed, timing_driven=args.timing_driven,
                          use_cache=args.cache, progress=log)
    emit(args, report, lambda: format_report(report))
    return 0
