"""Sweep throughput (points/s) of `tritium sweep` on this machine: in process, on the local
process pool and on a local Ray instance.

Estimate points (bitnet-b1.58-2B-4T; a grid over rows, cols, dataflow, clock and DRAM
bandwidth) measure the executors' overhead, since one estimate takes a few ms. With
--synth-points N, N distinct small arrays also get Yosys' fit check on the iCE40UP5K, each in a
fresh build folder (no synthesis cache): the expensive points the executors exist for. Every
run starts from an empty results folder. Pool times include spawning the workers; Ray's
start-up is reported on its own and its sweeps run on the warm instance.

    nice -n 10 python benchmarks/bench_sweep.py [--jobs 2] [--synth-points 4]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any

from tritium.explore import (
    PoolExecutor,
    RayExecutor,
    SerialExecutor,
    Space,
    SweepSpec,
    parse_objectives,
    sweep,
)

MODEL = "bitnet-b1.58-2B-4T"
ESTIMATE_AXES = {"rows": "8,16,32,64", "cols": "8,16,32,64", "dataflow": "ws,os",
                 "clock_mhz": "100,250,400", "dram_gbps": "8,16"}


def timed(spec: SweepSpec, executor: Any) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        res = sweep(spec, out, executor, progress=False)
        elapsed = time.perf_counter() - t0
    assert res.evaluated == len(res.records), "a benchmark run must not hit the cache"
    return elapsed, len(res.records)


def synth_spec(n: int, build: str) -> SweepSpec:
    """n distinct arrays of 1..3 x 1..3 PEs, drawn with a fixed seed."""
    space = Space.from_strings({"rows": "1,2,3", "cols": "1,2,3"})
    return SweepSpec(MODEL, space, random=n, seed=0, synth="fit", build_root=build,
                     objectives=parse_objectives("decode_tokens_per_s:max,luts:min"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="pool workers and Ray CPUs (default: one per CPU)")
    ap.add_argument("--synth-points", type=int, default=0, metavar="N",
                    help="also time N Yosys fit-check points per executor (default: 0)")
    args = ap.parse_args()

    spec = SweepSpec(MODEL, Space.from_strings(ESTIMATE_AXES))
    print(f"{os.cpu_count()} CPUs, {args.jobs} workers; estimate grid: {spec.space.size} "
          f"points of {MODEL}")
    rows: list[tuple[str, str, float, int]] = []
    rows.append(("estimate", "in process", *timed(spec, SerialExecutor())))
    rows.append(("estimate", f"pool ({args.jobs} workers)",
                 *timed(spec, PoolExecutor(args.jobs))))
    # Ray workers put the driver's working directory first on sys.path: start it elsewhere
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as cwd:
        os.chdir(cwd)
        try:
            t0 = time.perf_counter()
            ray = RayExecutor("local", num_cpus=args.jobs)
            ray_start = time.perf_counter() - t0
            rows.append(("estimate", f"Ray local ({args.jobs} CPUs)", *timed(spec, ray)))
            if args.synth_points:
                for name, make in (("in process", SerialExecutor),
                                   (f"pool ({args.jobs} workers)",
                                    lambda: PoolExecutor(args.jobs)),
                                   (f"Ray local ({args.jobs} CPUs)", lambda: ray)):
                    with tempfile.TemporaryDirectory() as build:
                        rows.append(("synth fit", name,
                                     *timed(synth_spec(args.synth_points, build), make())))
            ray.close()
        finally:
            os.chdir(here)

    print(f"Ray local start-up: {ray_start:.1f} s (not in the Ray rows); load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("| points | executor | n | seconds | points/s |\n|---|---|---|---|---|")
    for kind, name, secs, n in rows:
        print(f"| {kind} | {name} | {n} | {secs:.2f} | {n / secs:.3g} |")


if __name__ == "__main__":
    main()
