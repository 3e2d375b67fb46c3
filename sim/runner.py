"""Build a unit with Verilator and run its cocotb bench; called from pytest and `tritium verify`.

Simulators are cached under build/sim/<unit>_<config>_<key>_<hash>, the hash taken over the
generated Verilog, the build flags and the Verilator and cocotb releases (toolchain.build_key),
and made by toolchain.cached_build: locked, assembled in a temporary folder, renamed when
complete, with only the simulator executable, its Verilog and the build log kept.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import sys
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

from ..golden.config import ArrayConfig
from ..golden.dataflows import dataflow
from ..golden.files import build_root as default_build_root
from ..hdl.generate import UNITS, top_dataflow, unit_verilog, write_unit
from ..hdl.pes import config_pe
from .toolchain import build_key, cached_build, ensure_verilator, failed_log, keep_only

BENCH_MODULE = "tritium.sim.bench_{unit}"   # units below the top; a top's is its dataflow's
BUILD_ARGS = ("-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-O2")
# A bench runs in the simulator's own Python, whose PE registry holds only the built-ins until
# the module that registers cfg.pe (a plug-in, perhaps a test file) is imported there too
# (sim/pebench.py).
PE_MODULE_ENV = "TRITIUM_PE_MODULE"
PE_FILE_ENV = "TRITIUM_PE_FILE"


class BenchFailure(AssertionError):
    pass




def cocotb_build_dir(tag: str, verilog: str, *, waves: bool = False,
                     root: Path | None = None) -> Path:
    key = build_key(verilog, *BUILD_ARGS, f"waves={waves}", f"cocotb {version('cocotb')}")
    return (root or default_build_root()) / "sim" / f"{tag}_{key}"


def unit_build_dir(unit: str, cfg: ArrayConfig, root: Path | None = None, *,
                   waves: bool = False) -> Path:
    name = f"tritium_{unit}"
    return cocotb_build_dir(f"{unit}_{cfg.name()}_{cfg.key()}", unit_verilog(unit, cfg, name),
                            waves=waves, root=root)


def _pe_env(cfg: ArrayConfig) -> dict[str, str]:
    name = config_pe(cfg).module
    env = {PE_MODULE_ENV: name}
    path = getattr(sys.modules.get(name), "__file__", None)
    if path:
        env[PE_FILE_ENV] = path
    return env


def _build_simulator(toplevel: str, write_sources: Callable[[Path], Path], final: Path,
                     waves: bool, label: str) -> Path:
    from cocotb_tools.runner import get_runner

    def compile_into(work: Path) -> None:
        source = write_sources(work)
        try:
            get_runner("verilator").build(
                sources=[source], hdl_toplevel=toplevel, build_dir=work,
                build_args=list(BUILD_ARGS), waves=waves, log_file=work / "build.log")
        except (RuntimeError, SystemExit) as exc:
            log = (work / "build.log").read_text(errors="replace")
            raise BenchFailure(f"Verilator build of {label} failed (log: {failed_log(final)})"
                               f"\n{log[-3000:]}") from exc
        keep_only(work, {toplevel, source.name, source.with_suffix(".json").name, "build.log"})

    return cached_build(final, toplevel, compile_into)


def run_cocotb(
    toplevel: str,
    write_sources: Callable[[Path], Path],
    build_dir: Path,
    bench: str,
    label: str,
    *,
    env: dict[str, str],
    testcase: str | list[str] | None = None,
    waves: bool = False,
    seed: int | None = None,
) -> Path:
    """Build `toplevel` into build_dir once (write_sources(folder) writes its Verilog there and
    returns the path), then run the cocotb module `bench` on it in build_dir/run.

    Returns the results XML; raises BenchFailure naming the failed cocotb tests.
    """
    from cocotb_tools.runner import get_results, get_runner

    ensure_verilator()
    _build_simulator(toplevel, write_sources, build_dir, waves, label)
    run_dir = build_dir / "run"
    # Runs of one simulator share its run folder (results.xml, test.log): one at a time.
    with open(build_dir.with_name(f".{build_dir.name}.run.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        shutil.rmtree(run_dir, ignore_errors=True)
        try:
            results = get_runner("verilator").test(
                test_module=bench, hdl_toplevel=toplevel, hdl_toplevel_lang="verilog",
                testcase=testcase, build_dir=build_dir, test_dir=run_dir, extra_env=env,
                waves=waves, seed=seed, log_file=run_dir / "test.log")
        except SystemExit:
            # cocotb's runner exits when a test fails; the results file still says which.
            results = run_dir / "results.xml"
        total, failed = get_results(results)
        log = run_dir / "test.log"
        if total == 0:
            raise BenchFailure(f"{label} bench ran no test; see {log}")
        if failed:
            text = log.read_text(errors="replace")
            tail = "\n".join(line for line in text.splitlines()
                             if "FAIL" in line or "Error" in line)
            raise BenchFailure(f"{failed} of {total} {label} bench tests failed "
                               f"(log: {log})\n{tail[-4000:]}")
    return results


def run_bench(
    unit: str,
    cfg: ArrayConfig,
    *,
    testcase: str | list[str] | None = None,
    build_root: Path | None = None,
    waves: bool = False,
    seed: int | None = None,
    extra_env: dict[str, str] | None = None,
) -> Path:
    """Generate `unit` for `cfg`, build it with Verilator, run its cocotb bench (a top's is
    its dataflow's, golden.dataflows; the others are tritium.sim.bench_<unit>).

    Returns the results XML; raises BenchFailure naming the failed cocotb tests.
    """
    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}; expected one of {', '.join(UNITS)}")
    name = f"tritium_{unit}"
    env = {"TRITIUM_CONFIG": json.dumps(cfg.to_dict()), **_pe_env(cfg)}
    env.update(extra_env or {})
    df = top_dataflow(unit, cfg)
    bench = dataflow(df).bench if df else BENCH_MODULE.format(unit=unit)
    return run_cocotb(name, lambda work: write_unit(unit, cfg, work, name),
                      unit_build_dir(unit, cfg, build_root, waves=waves), bench,
                      f"{unit} for {cfg.name()}", env=env, testcase=testcase, waves=waves,
                      seed=seed)
