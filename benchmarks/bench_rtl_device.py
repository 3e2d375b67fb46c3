"""Simulated cycles per second of the RTL backend, against one-clock-per-Python-call driving.

Both columns run the same Verilated 8x8 accelerator on the same GEMM programs, built by the
same host driver:
  * tritium: the whole program of an M chunk runs in C++ (sim/cpp/device.cpp) per call;
  * per-clock baseline: Python pokes the bus and ticks the clock once per call, the way
    pyverilator-style wrappers drive a model (DESIGN.md measured pyverilator-mm at ~47k
    cycles/s on a one-PE design).

    python benchmarks/bench_rtl_device.py [--rows 8 --cols 8]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from tritium.bus import OP_READ, OP_WAIT, OP_WRITE
from tritium.golden import ArrayConfig, ternary_gemm
from tritium.host.driver import driver_for
from tritium.sim.verilated import VerilatorDevice


def per_clock_execute(dev: VerilatorDevice, ops: np.ndarray) -> np.ndarray:
    """What a per-cycle wrapper does: one Python call per clock edge."""
    reads = []
    for op, addr, word in ops.tolist():
        if op == OP_WRITE:
            dev.poke(addr, word, 1, 0)
            dev.tick()
        elif op == OP_READ:
            dev.poke(addr, 0, 0, 1)
            dev.tick()
            reads.append(dev.rdata())
        elif op == OP_WAIT:
            dev.poke(0, 0, 0, 0)
            while dev.busy():
                dev.tick()
    dev.poke(0, 0, 0, 0)
    return np.array(reads, dtype=np.uint32)


class PerClockDevice:
    def __init__(self, dev: VerilatorDevice) -> None:
        self.dev, self.cfg = dev, dev.cfg

    def execute(self, ops: np.ndarray) -> np.ndarray:
        return per_clock_execute(self.dev, ops)

    def close(self) -> None:
        self.dev.close()


def measure(cfg: ArrayConfig, m: int, k: int, n: int, per_clock: bool) -> tuple[float, int]:
    rng = np.random.default_rng(0)
    a = rng.integers(-128, 128, (m, k))
    w = rng.integers(-1, 2, (k, n))
    dev = VerilatorDevice(cfg)
    acc = driver_for(PerClockDevice(dev) if per_clock else dev, cfg)
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
    print("| GEMM (MxKxN) | simulated cycles | tritium cycles/s | per-clock Python cycles/s "
          "| speed-up |")
    print("|---|---:|---:|---:|---:|")
    for label, (cfg, m, k, n) in shapes.items():
        fast, cycles = measure(cfg, m, k, n, per_clock=False)
        # The baseline is slow: time it on a slice of N with the same per-tile structure.
        slow, _ = measure(cfg, m, k, min(n, 4 * cfg.cols), per_clock=True)
        print(f"| {label} | {cycles:,} | {fast:,.0f} | {slow:,.0f} | {fast / slow:.0f}x |")


if __name__ == "__main__":
    main()
