"""Build size and time of a 2x2 os top against a 2x2 ws top (issue 11: the os top no longer
builds DRAM into the RTL, so it must build no slower than the ws top).

Each configuration is generated and compiled into the Verilator device library (Verilog,
verilate, g++) in a fresh temporary build folder, one after the other, --repeat times; the
table reports the Verilog size and the best and median wall time.

    nice -n 10 python benchmarks/bench_os_build.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=2)
    args = p.parse_args()

    from tritium.golden import ArrayConfig
    from tritium.hdl.generate import unit_verilog
    from tritium.sim.verilated import TOP, ensure_built

    configs = {
        "ws 2x2": ArrayConfig(rows=2, cols=2),
        "os 2x2 (2bit)": ArrayConfig(rows=2, cols=2, dataflow="os"),
        "os 2x2 (base3)": ArrayConfig(rows=2, cols=2, dataflow="os", weight_packing="base3"),
    }
    rows = {}
    for _ in range(args.repeat):
        for name, cfg in configs.items():
            with tempfile.TemporaryDirectory(prefix="tritium_build_") as tmp:
                t0 = time.perf_counter()
                ensure_built(cfg, Path(tmp))
                seconds = time.perf_counter() - t0
            row = rows.setdefault(name, {"verilog_bytes": len(unit_verilog("top", cfg, TOP)),
                                         "seconds": []})
            row["seconds"].append(round(seconds, 1))
    for row in rows.values():
        row["best_s"] = min(row["seconds"])
        row["median_s"] = statistics.median(row["seconds"])
    print(json.dumps({"load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
                      "configs": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
