"""`tritium verify`: run the cocotb benches on Verilator for one configuration."""

from __future__ import annotations

import argparse
import sys
import time

from ..cliutil import add_array_args, array_from_args, print_json
from ..hdl.generate import UNITS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify",
        help="prove the RTL equals the golden model (cocotb + Verilator)",
        description="Build each unit with Verilator and run its cocotb bench against the "
        "golden model: the PE cycle by cycle, the array with exact output timing, and the top "
        "as a host would drive it (tiled GEMMs, cycle counts, performance counters).",
    )
    add_array_args(p, rows=4, cols=4, act_depth=8)
    p.add_argument("--unit", choices=(*UNITS, "all"), default="all")
    p.add_argument("--seed", type=int, help="cocotb random seed (default: random)")
    p.add_argument("--waves", action="store_true", help="dump FST waveforms in the build folder")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    p.set_defaults(func=run)


# The benches each dataflow's RTL has: "stream" is the os top's bench, driven over the same bus.
_BENCHES = {"ws": ("pe", "array", "top"), "os": ("stream",)}


def _units(dataflow: str, unit: str) -> tuple[str, ...]:
    from ..cli import CliError

    if unit == "all":
        return _BENCHES[dataflow]
    if dataflow == "os" and unit == "top":
        return ("stream",)
    if unit == "stream" and dataflow != "os":
        raise CliError("--unit stream is the os dataflow's bench; add --dataflow os")
    return (unit,)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .runner import BenchFailure, run_bench, unit_build_dir

    cfg = array_from_args(args)
    units = _units(cfg.dataflow, args.unit)
    results = []
    bar = tqdm(units, desc="verify", unit="bench", disable=args.json or not sys.stderr.isatty())
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
    if args.json:
        print_json({"config": cfg.to_dict(), "results": results})
    else:
        for r in results:
            print(f"{r['unit']:6s} {'PASS' if r['passed'] else 'FAIL'}  {r['seconds']:6.1f} s  "
                  f"{r['build_dir']}")
            if r["detail"]:
                print(r["detail"])
    return 0 if all(r["passed"] for r in results) else 1
