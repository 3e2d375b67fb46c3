"""How long `tritium estimate` takes on bitnet-b1.58-2B-4T (the issue asks for under 2 s).

Three numbers, best of --repeat runs:
  * estimate(): the model itself, in process (imports already done);
  * CLI in process: argument parsing, the estimate and the JSON written to a file;
  * CLI cold: `python -m tritium estimate ...` in a fresh interpreter, imports included,
    which is what a user waits for.

    python benchmarks/bench_estimate.py [--rows 32 --cols 32 --repeat 5]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tritium.cli import main
from tritium.golden import ArrayConfig
from tritium.host.arch import resolve_model
from tritium.host.estimate import EstimateConfig, estimate

LIMIT_S = 2.0


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench(rows: int, cols: int, repeat: int) -> dict[str, float]:
    model = resolve_model("bitnet-b1.58-2B-4T")
    cfg = ArrayConfig(rows=rows, cols=cols, clock_mhz=250.0)
    argv = ["estimate", "--model", model.name, "--rows", str(rows), "--cols", str(cols),
            "--clock-mhz", "250", "--dram-gbps", "16"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "est.json"

        def cli() -> None:
            with contextlib.redirect_stdout(io.StringIO()):
                assert main([*argv, "--json", str(out)]) == 0

        def cold() -> None:
            subprocess.run([sys.executable, "-m", "tritium", *argv, "--json", str(out)],
                           check=True, capture_output=True)

        return {
            "estimate()": best(lambda: estimate(model, EstimateConfig(cfg, 16.0)), repeat),
            "CLI in process": best(cli, repeat),
            "CLI cold (fresh python)": best(cold, repeat),
        }


def main_() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--cols", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    results = bench(args.rows, args.cols, args.repeat)
    print(f"tritium estimate, bitnet-b1.58-2B-4T, {args.rows}x{args.cols}, 250 MHz, 16 GB/s "
          f"(best of {args.repeat})")
    for name, seconds in results.items():
        print(f"  {name:26s} {seconds * 1e3:8.1f} ms")
    worst = results["CLI cold (fresh python)"]
    ok = worst < LIMIT_S
    print(f"  {'PASS' if ok else 'FAIL'}: cold CLI {worst:.2f} s vs the {LIMIT_S:g} s limit")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main_())
