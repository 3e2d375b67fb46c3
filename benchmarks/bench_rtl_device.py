"""Simulated cycles per second of the RTL backend, against pyverilator driving the same RTL.

Both columns run the same Verilog of an 8x8 accelerator on the same GEMM programs (the same bus
operations, built by the same host driver):
  * tritium: VerilatorDevice runs the whole program of an M chunk in C++ (sim/cpp/device.cpp);
  * pyverilator: tritium.sim.pyverilated's PyVerilator, driven from Python one named-signal
    write and one clock edge per call (PyVerilatedDevice), as one explores it in a notebook.
pyverilator is slow, so it runs the GEMM on a slice of N (4 column tiles) with the same per-tile
structure; cycles/s is the figure compared.

    python benchmarks/bench_rtl_device.py [--rows 8 --cols 8] [--slice-tiles 4]
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
from tritium.sim.verilated import VerilatorDevice


def measure(cfg: ArrayConfig, m: int, k: int, n: int, pyverilator: bool) -> tuple[float, int]:
    rng = np.random.default_rng(0)
    a = rng.integers(-128, 128, (m, k))
    w = rng.integers(-1, 2, (k, n))
    dev = PyVerilatedDevice(pyverilated("top", cfg), cfg) if pyverilator else VerilatorDevice(cfg)
    acc = driver_for(dev, cfg)
    packed = acc.pack(w)
    acc.gemm(a[:1], packed)  # warm up
    c0, t0 = dev.cycles, time.perf_counter()
    out, _ = acc.gemm(a, packed)
    dt = time.perf_counter() - t0
    cycles = dev.cycles - c0
    assert np.array_equal(out, ternary_gemm(a, w)), "RTL result differs from golden"
    dev.close()
    return cycles / dt, cycles


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--cols", type=int, default=8)
    p.add_argument("--slice-tiles", type=int, default=4,
                   help="pyverilator runs N = this many column tiles of each GEMM")
    args = p.parse_args()
    ws = ArrayConfig(rows=args.rows, cols=args.cols, act_depth=64)
    os_ = ArrayConfig(rows=args.rows, cols=args.cols, dataflow="os", dram_bytes_per_cycle=16)
    shapes = {"ws prefill 64x512x256": (ws, 64, 512, 256),
              "ws decode 1x2560x2560": (ws, 1, 2560, 2560),
              "os decode 1x2560x2560": (os_, 1, 2560, 2560),
              "os decode 1x2560x6912 (FFN up)": (os_, 1, 2560, 6912)}
    info = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in info
                if line.startswith("model name")), platform.machine())
    print(f"machine: {cpu}, {os.cpu_count()} cores, "
          f"{platform.python_implementation()} {platform.python_version()}, one core")
    print(f"array: {args.rows}x{args.cols}; ws act_depth {ws.act_depth}, "
          f"os {os_.dram_bytes_per_cycle} DRAM bytes/cycle\n")
    print("| GEMM (MxKxN) | simulated cycles | tritium cycles/s | pyverilator: N, cycles "
          "| pyverilator cycles/s | speed-up |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, (cfg, m, k, n) in shapes.items():
        fast, cycles = measure(cfg, m, k, n, pyverilator=False)
        ns = min(n, args.slice_tiles * cfg.cols)
        slow, slow_cycles = measure(cfg, m, k, ns, pyverilator=True)
        print(f"| {label} | {cycles:,} | {fast:,.0f} | {ns}, {slow_cycles:,} | {slow:,.0f} "
              f"| {fast / slow:.0f}x |", flush=True)


if __name__ == "__main__":
    main()
