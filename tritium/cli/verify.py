"""Build each unit with Verilator and run its cocotb bench against the golden model: the PE
cycle by cycle, the array with exact output timing, and the top as a host would drive it
(tiled GEMMs, cycle counts, performance counters). Builds go to $TRITIUM_BUILD/sim/ (default
build/sim/)."""

from __future__ import annotations

import argparse
import sys
import time

from ..hdl.generate import UNITS
from .options import CliError, add_array_args, add_json, array_from_args, emit, json_on_stdout

HELP = "prove the RTL equals the golden model (cocotb + Verilator)"

# The benches each dataflow's RTL has: "stream" is the os top's bench, driven over the same bus.
_BENCHES = {"ws": ("pe", "array", "top"), "os": ("stream",)}


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_array_args(p, rows=4, cols=4, act_depth=8)
    p.add_argument("--unit", choices=(*UNITS, "all"), default="all")
    p.add_argument("--seed", type=int, help="cocotb random seed (default: random)")
    p.add_argument("--waves", action="store_true", help="dump FST waveforms in the build folder")
    add_json(p)


def _units(dataflow: str, unit: str) -> tuple[str, ...]:
    if unit == "all":
        return _BENCHES[dataflow]
    if dataflow == "os" and unit == "top":
        return ("stream",)
    if unit == "stream" and dataflow != "os":
        raise CliError("--unit stream is the os dataflow's bench; add --dataflow os")
    return (unit,)


def _table(results: list[dict]) -> str:
    lines = []
    for r in results:
        lines.append(f"{r['unit']:6s} {'PASS' if r['passed'] else 'FAIL'}  "
                     f"{r['seconds']:6.1f} s  {r['build_dir']}")
        if r["detail"]:
            lines.append(r["detail"])
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..sim.runner import BenchFailure, run_bench, unit_build_dir

    cfg = array_from_args(args)
    units = _units(cfg.dataflow, args.unit)
    results = []
    bar = tqdm(units, desc="verify", unit="bench",
               disable=json_on_stdout(args) or not sys.stderr.isatty())
    for unit in bar:
        bar.set_postfix_str(unit)
        t0 = time.perf_counter()
        try:
            run_bench(unit, cfg, seed=args.seed, waves=args.waves)
            ok, detail = True, ""
        except BenchFailure as exc:
            ok, detail = False, str(exc)
        results.append({"unit": unit, "passed": ok, "seconds": round(time.perf_counter() - t0, 1),
                        "build_dir": str(unit_build_dir(unit, cfg)), "detail": detail})
    emit(args, {"config": cfg.to_dict(), "results": results}, lambda: _table(results))
    return 0 if all(r["passed"] for r in results) else 1
