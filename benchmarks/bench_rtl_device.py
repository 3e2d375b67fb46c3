"""Simulated cycles per second of the RTL backend, against pyverilator driving the same RTL.

Both columns run the same Verilog of an 8x8 accelerator on the same GEMM programs (the same bus
operations, built by the same host driver):
  * tritium: VerilatorDevice runs the whole program of an M chunk in C++ (sim/cpp/device.cpp);
  * pyverilator: tritium.sim.pyverilated's PyVerilator, driven from Python one named-signal
    write and one clock edge per call (PyVerilatedDevice), as one explores it in a notebook.
pyverilator is slow, so it runs the GEMM on a slice of N (4 column tiles) with the same per-tile
structure; cycles/s is the figure compared.

    python benchmarks/bench_rtl_device.py [--rows 8 --cols 8] [--slice-tiles 4] [--repeat 5]
                                          [--no-pyverilator]

tritium's GEMMs run --repeat times: the table shows the fastest wall time (the one least
disturbed by other jobs on a shared machine) and, beside it, cycles per second of this
process's CPU time, which other jobs disturb much less.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from tritium.golden import ArrayConfig, ternary_gemm
from tritium.host.driver import driver_for
from tritium.sim import pyverilated
from tritium.sim.pyverilated import PyVerilatedDevice
from tritium.sim.verilated import VerilatorDevice, ensure_built


def measure(cfg: ArrayConfig, m: int, k: int, n: int, pyverilator: bool,
            repeat: int = 1) -> tuple[float, float, int]:
    """(cycles/s of the fastest wall time, cycles/s of the least CPU time, cycles)."""
    rng = np.random.default_rng(0)
    a = rng.integers(-128, 128, (m, k))
    w = rng.integers(-1, 2, (k, n))
    dev = PyVerilatedDevice(pyverilated("top", cfg), cfg) if pyverilator else VerilatorDevice(cfg)
    acc = driver_for(dev, cfg)
    packed = acc.pack(w)
    acc.gemm(a[:1], packed)  # warm up
    wall = cpu = float("inf")
    for _ in range(repeat):
        c0, t0, p0 = dev.cycles, time.perf_counter(), time.process_time()
        out, _ = acc.gemm(a, packed)
        wall = min(wall, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - p0)
        cycles = dev.cycles - c0
        assert np.array_equal(out, ternary_gemm(a, w)), "RTL result differs from golden"
    dev.close()
    return cycles / wall, cycles / cpu, cycles


def cache_bytes(cfg: ArrayConfig) -> int:
    """Bytes a finished build of cfg keeps (its folder; the shared runtime is listed apart)."""
    return sum(f.stat().st_size for f in ensure_built(cfg).parent.rglob("*") if f.is_file())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--cols", type=int, default=8)
    p.add_argument("--slice-tiles", type=int, default=4,
                   help="pyverilator runs N = this many column tiles of each GEMM")
    p.add_argument("--repeat", type=int, default=5, help="runs of each tritium GEMM")
    p.add_argument("--no-pyverilator", action="store_true", help="tritium's columns only")
    args = p.parse_args()
    ws = ArrayConfig(rows=args.rows, cols=args.cols, act_depth=64)
    ws2 = ArrayConfig(rows=args.rows, cols=args.cols, act_depth=512, weight_tiles=8,
                      weight_buffers=2)
    os_ = ArrayConfig(rows=args.rows, cols=args.cols, dataflow="os", dram_bytes_per_cycle=16)
    shapes = {"ws prefill 64x512x256": (ws, 64, 512, 256),
              "ws double-buffered prefill 512x512x256": (ws2, 512, 512, 256),
              "ws decode 1x2560x2560": (ws, 1, 2560, 2560),
              "os decode 1x2560x2560": (os_, 1, 2560, 2560),
              "os decode 1x2560x6912 (FFN up)": (os_, 1, 2560, 6912)}
    info = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in info
                if line.startswith("model name")), platform.machine())
    print(f"machine: {cpu}, {os.cpu_count()} cores, "
          f"{platform.python_implementation()} {platform.python_version()}, one core")
    print(f"array: {args.rows}x{args.cols}; ws act_depth {ws.act_depth}, "
          f"os {os_.dram_bytes_per_cycle} DRAM bytes/cycle; load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}\n")
    print("| GEMM (MxKxN) | simulated cycles | tritium cycles/s (wall, min of "
          f"{args.repeat}) | tritium cycles/s (CPU time) | pyverilator: N, cycles "
          "| pyverilator cycles/s | speed-up |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, (cfg, m, k, n) in shapes.items():
        fast, fast_cpu, cycles = measure(cfg, m, k, n, pyverilator=False, repeat=args.repeat)
        slow_cols = "| - | - | -"
        if not args.no_pyverilator:
            ns = min(n, args.slice_tiles * cfg.cols)
            slow, _, slow_cycles = measure(cfg, m, k, ns, pyverilator=True)
            slow_cols = f"| {ns}, {slow_cycles:,} | {slow:,.0f} | {fast / slow:.0f}x"
        print(f"| {label} | {cycles:,} | {fast:,.0f} | {fast_cpu:,.0f} {slow_cols} |",
              flush=True)
    sizes = {cfg.name(): cache_bytes(cfg) for cfg in (ws, ws2, os_)}
    print("\nbuild cache kept per configuration: "
          + ", ".join(f"{name} {size / 1024:.0f} KiB" for name, size in sizes.items()))


if __name__ == "__main__":
    main()
