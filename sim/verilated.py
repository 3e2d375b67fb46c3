"""VerilatorDevice: the accelerator top compiled by Verilator into a shared library that runs
whole host Programs in C++ (sim/cpp/device.cpp), so simulation never returns to Python per clock.

Builds are cached under build/rtl/<config>_<key>_<hash of the generated Verilog, the harness,
the flags and the Verilator release>, made by toolchain.cached_build (locked, assembled in a
temporary folder, renamed when complete); only the library, its Verilog and the log are kept.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..bus.contract import OP_READ, DeviceError
from ..bus.os_regmap import OsRegMap
from ..golden.config import ArrayConfig
from ..golden.os_port import PortTiming
from ..hdl.generate import unit_verilog, write_unit
from .runner import default_build_root
from .toolchain import (
    ToolchainError,
    build_jobs,
    build_key,
    cached_build,
    keep_only,
    run_logged,
    verilate,
)

HARNESS = Path(__file__).resolve().parent / "cpp" / "device.cpp"
# The os top's memory port is served by the harness (golden/os_port.py has the contract).
MEM_PORT = HARNESS.parent / "mem_port.h"
TOP = "tritium_top"
LIB = "libtritium_dev.so"
# A tile of the largest legal config finishes in far fewer cycles; a wait that runs this long
# means the RTL hung, and the host should hear about it rather than spin forever.
WAIT_LIMIT = 50_000_000


class BuildError(ToolchainError):
    pass


# Verilator only translates (no --build): the C++ is compiled by our own makefile below, in
# parallel, without precompiled headers, and the Verilator runtime once per release and flags.
VERILATOR_FLAGS = ("--cc", "-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert",
                   "-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "--top-module", TOP,
                   "--Mdir", "obj")
# The per-cycle code is hot; the constructors and the runtime are not. Without
# -fno-semantic-interposition -fPIC keeps every eval function a call through the PLT rules
# (not inlined); with it a clock runs ~10 % faster.
CXX_FAST = ("-O3", "-fPIC", "-fno-semantic-interposition", "-std=c++17",
            "-fno-stack-protector", "-fno-plt")
CXX_SLOW = ("-O1", "-fPIC", "-std=c++17")
LINK_FLAGS = ("-shared", "-pthread")
RUNTIME = "libverilated_rt.a"


def _cxx_defines() -> list[str]:
    return ["-DVERILATOR=1", "-DVM_COVERAGE=0", "-DVM_SC=0", "-DVM_TIMING=0", "-DVM_TRACE=0",
            "-DVM_TRACE_FST=0", "-DVM_TRACE_VCD=0", "-DVM_TRACE_SAIF=0"]


def _port_flags(cfg: ArrayConfig) -> tuple[str, ...]:
    return ("-DTRITIUM_MEM_PORT", f"-I{MEM_PORT.parent}") if cfg.dataflow == "os" else ()


def build_dir(cfg: ArrayConfig, root: Path | None = None) -> Path:
    key = build_key(unit_verilog("top", cfg, TOP), HARNESS.read_bytes(), *VERILATOR_FLAGS,
                    *CXX_FAST, *CXX_SLOW, *LINK_FLAGS, *_port_flags(cfg),
                    *((MEM_PORT.read_bytes(),) if cfg.dataflow == "os" else ()))
    root = root or default_build_root()
    return root / "rtl" / f"{cfg.name()}_{cfg.key()}_{key}"


def _make_lists(mk: Path) -> dict[str, list[str]]:
    """The VM_* file lists (without .cpp) of Verilator's <prefix>_classes.mk."""
    lists: dict[str, list[str]] = {}
    current = None
    for line in mk.read_text().splitlines():
        if "+=" in line:
            current = line.split("+=")[0].strip()
            lists.setdefault(current, [])
        elif current and line.strip() and line.strip() != "\\":
            lists[current].append(line.strip().rstrip("\\").strip())
        if not line.rstrip().endswith("\\"):
            current = None
    return lists


def _makefile(rules: list[tuple[str, str, tuple[str, ...]]], link: str) -> str:
    """A makefile compiling (object, source, flags) rules, then running `link`."""
    objs = " ".join(o for o, _, _ in rules)
    text = [f"all: {LIB}", f"{LIB}: {objs}", f"\t{link}"]
    for obj, src, flags in rules:
        text += [f"{obj}: {src}", f"\tg++ {' '.join(flags)} -c -o $@ $<"]
    return "\n".join(text) + "\n"


def _make(work: Path) -> None:
    """Run the folder's makefile with one job per CPU ($MAKE, as Verilator's own build)."""
    run_logged([os.environ.get("MAKE", "make"), "-j", str(build_jobs())], work, BuildError)


def _runtime(verilator_root: Path, root: Path) -> Path:
    """The Verilator runtime (verilated.cpp, ...) as one archive, built once per Verilator
    release and flags and shared by every configuration's build."""
    include = verilator_root / "include"
    names = ("verilated", "verilated_threads")
    key = build_key(*CXX_SLOW, *names)

    def compile_into(work: Path) -> None:
        inc = [f"-I{include}", f"-I{include / 'vltstd'}", *_cxx_defines()]
        rules = [(f"{n}.o", str(include / f"{n}.cpp"), (*CXX_SLOW, *inc)) for n in names]
        text = _makefile(rules, f"ar rcs {RUNTIME} " + " ".join(o for o, _, _ in rules))
        (work / "Makefile").write_text(text.replace(f"all: {LIB}\n{LIB}:",
                                                    f"all: {RUNTIME}\n{RUNTIME}:"))
        _make(work)
        keep_only(work, {RUNTIME, "build.log"})

    return cached_build(root / "rtl" / f"_verilated_{key}", RUNTIME, compile_into)


def _compile(cfg: ArrayConfig, work: Path, root: Path) -> None:
    source = write_unit("top", cfg, work, TOP)
    cls = f"V{TOP}"
    vroot = verilate(VERILATOR_FLAGS, [source.name], work, BuildError)
    runtime = _runtime(vroot, root)
    obj = work / "obj"
    include = vroot / "include"
    inc = [f"-I{obj}", f"-I{include}", f"-I{include / 'vltstd'}", *_cxx_defines()]
    lists = _make_lists(obj / f"{cls}_classes.mk")
    rules = []
    for kind, flags in (("FAST", CXX_FAST), ("SLOW", CXX_SLOW)):
        for name in lists.get(f"VM_CLASSES_{kind}", []) + lists.get(f"VM_SUPPORT_{kind}", []):
            rules.append((f"obj/{name}.o", f"obj/{name}.cpp", (*flags, *inc)))
    rules.append(("device.o", str(HARNESS), (*CXX_FAST, *inc, *_port_flags(cfg),
                                             f"-DTOP_HEADER=\\\"{cls}.h\\\"",
                                             f"-DROOT_HEADER=\\\"{cls}___024root.h\\\"",
                                             f"-DTOP_CLASS={cls}")))
    link = f"g++ {' '.join(LINK_FLAGS)} -o $@ $^ {runtime}"
    (work / "Makefile").write_text(_makefile(rules, link))
    _make(work)
    keep_only(work, {LIB, source.name, source.with_suffix(".json").name, "build.log"})


def ensure_built(cfg: ArrayConfig, root: Path | None = None) -> Path:
    """Path of the shared library for cfg, compiling it once per configuration and source."""
    root = root or default_build_root()
    return cached_build(build_dir(cfg, root), LIB, lambda work: _compile(cfg, work, root))


_ERRORS = {
    -1: "the accelerator stayed busy for more than {limit:,} cycles (RTL hang?)",
    -2: "unknown bus operation",
    -3: "more reads than the result buffer holds",
}


class VerilatorDevice:
    """A host Device (bus/contract.py) backed by the Verilated accelerator top."""

    def __init__(self, cfg: ArrayConfig, *, build_root: Path | None = None,
                 port: PortTiming | None = None) -> None:
        """port: how the memory behind an os top's port answers (default PortTiming())."""
        self.cfg = cfg
        self.library = ensure_built(cfg, build_root)
        # Each device gets its own copy of the library: Verilator models keep static state per
        # loaded image, so two devices must never share one.
        self._tmp = tempfile.TemporaryDirectory(prefix="tritium_dev_")
        private = Path(self._tmp.name) / LIB
        shutil.copyfile(self.library, private)
        lib = ctypes.CDLL(str(private), mode=os.RTLD_LOCAL)
        vp, i64, u32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_uint32
        lib.tritium_dev_new.restype = vp
        lib.tritium_dev_free.argtypes = [vp]
        lib.tritium_dev_cycles.argtypes = [vp]
        lib.tritium_dev_cycles.restype = ctypes.c_uint64
        lib.tritium_dev_error_op.argtypes = [vp]
        lib.tritium_dev_error_op.restype = i64
        lib.tritium_dev_execute.argtypes = [vp, ctypes.POINTER(i64), i64, ctypes.POINTER(u32),
                                            i64, i64]
        lib.tritium_dev_execute.restype = i64
        lib.tritium_dev_poke.argtypes = [vp, u32, u32, ctypes.c_int, ctypes.c_int]
        lib.tritium_dev_tick.argtypes = [vp]
        lib.tritium_dev_rdata.argtypes = [vp]
        lib.tritium_dev_rdata.restype = u32
        lib.tritium_dev_busy.argtypes = [vp]
        lib.tritium_dev_busy.restype = ctypes.c_int
        self._lib = lib
        self._h = lib.tritium_dev_new()
        if cfg.dataflow == "os":
            self._serve_port(port or PortTiming())

    def _serve_port(self, timing: PortTiming) -> None:
        rm = OsRegMap(self.cfg)
        u64 = ctypes.c_uint64
        self._lib.tritium_dev_port_layout.argtypes = [ctypes.c_void_p, u64, u64, u64, u64]
        self._lib.tritium_dev_port_timing.argtypes = [ctypes.c_void_p, u64, u64, u64, u64, u64]
        self._lib.tritium_dev_port_layout(self._h, rm.row_words, rm.word_bits, rm.region_bits,
                                          rm.dram_words)
        self._lib.tritium_dev_port_timing(self._h, timing.rate(self.cfg), timing.latency,
                                          timing.stall_ppm, timing.seed, timing.capacity())
        self.port = timing

    @property
    def cycles(self) -> int:
        """Clock cycles simulated since reset, bus traffic included."""
        return int(self._lib.tritium_dev_cycles(self._handle()))

    def _handle(self) -> int:
        if self._h is None:
            raise DeviceError("the Verilator device is closed")
        return self._h

    def execute(self, ops: np.ndarray) -> np.ndarray:
        ops = np.ascontiguousarray(ops, dtype=np.int64)
        if ops.ndim != 2 or ops.shape[1] != 3:
            raise DeviceError(f"a program must be an [n, 3] op array, got shape {ops.shape}")
        nreads = int(np.count_nonzero(ops[:, 0] == OP_READ))
        reads = np.zeros(max(nreads, 1), dtype=np.uint32)
        got = self._lib.tritium_dev_execute(
            self._handle(), ops.ctypes.data_as(ctypes.POINTER(ctypes.c_int64)), len(ops),
            reads.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32)), nreads, WAIT_LIMIT)
        if got < 0:
            where = int(self._lib.tritium_dev_error_op(self._h))
            msg = _ERRORS.get(got, f"error {got}").format(limit=WAIT_LIMIT)
            raise DeviceError(f"Verilator device: {msg} at op {where} of {len(ops)}")
        return reads[:got]

    # --- one clock per call: only for measuring what per-cycle Python driving costs ----------

    def poke(self, addr: int, wdata: int, we: int, re: int) -> None:
        self._lib.tritium_dev_poke(self._handle(), addr, wdata, we, re)

    def tick(self) -> None:
        self._lib.tritium_dev_tick(self._handle())

    def rdata(self) -> int:
        return int(self._lib.tritium_dev_rdata(self._handle()))

    def busy(self) -> bool:
        return bool(self._lib.tritium_dev_busy(self._handle()))

    def close(self) -> None:
        if self._h is not None:
            self._lib.tritium_dev_free(self._h)
            self._h = None
            self._tmp.cleanup()

    def __enter__(self) -> VerilatorDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
