"""Build a unit with Verilator and run its cocotb bench; called from pytest and `tritium verify`."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..golden.config import ArrayConfig
from ..golden.dataflows import dataflow
from ..hdl.generate import UNITS, top_dataflow, write_unit
from .toolchain import ensure_verilator

HDL_DIR = Path(__file__).resolve().parent.parent / "hdl"
BENCH_MODULE = "tritium.sim.bench_{unit}"   # units below the top; a top's is its dataflow's


class BenchFailure(AssertionError):
    pass


def default_build_root() -> Path:
    return Path(os.environ.get("TRITIUM_BUILD", "build")).resolve()


# The modules Verilog generation reads; editing any other hdl/ file keeps simulator builds.
RTL_SOURCES = ("pe.py", "array.py", "top.py", "ws_top.py", "os_top.py", "generate.py",
               "../bus/contract.py", "../bus/ws_regmap.py", "../bus/os_regmap.py")


def hdl_hash() -> str:
    """Hash of the RTL sources, so an edit to the RTL never reuses a stale simulator build."""
    h = hashlib.sha256()
    for path in (HDL_DIR / name for name in RTL_SOURCES):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:10]


def unit_build_dir(unit: str, cfg: ArrayConfig, root: Path | None = None) -> Path:
    root = root or default_build_root()
    return root / "sim" / f"{unit}_{cfg.name()}_{cfg.key()}_{hdl_hash()}"


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
    """Generate `unit` for `cfg`, build it with Verilator, run tritium.sim.bench_<unit>.

    Returns the results XML; raises BenchFailure naming the failed cocotb tests.
    """
    from cocotb_tools.runner import get_results, get_runner

    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}; expected one of {', '.join(UNITS)}")
    ensure_verilator()
    build_dir = unit_build_dir(unit, cfg, build_root)
    name = f"tritium_{unit}"
    source = build_dir / f"{name}.v"
    if not source.exists():
        write_unit(unit, cfg, build_dir, name)

    runner = get_runner("verilator")
    try:
        runner.build(
            sources=[source],
            hdl_toplevel=name,
            build_dir=build_dir,
            build_args=["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-O2"],
            waves=waves,
            log_file=build_dir / "build.log",
        )
    except (RuntimeError, SystemExit) as exc:
        log = (build_dir / "build.log").read_text(errors="replace")
        raise BenchFailure(f"Verilator build of {unit} for {cfg.name()} failed "
                           f"(log: {build_dir}/build.log)\n{log[-3000:]}") from exc
    env = {"TRITIUM_CONFIG": json.dumps(cfg.to_dict())}
    env.update(extra_env or {})
    try:
        results = runner.test(
            test_module=(dataflow(df).bench if (df := top_dataflow(unit, cfg))
                         else BENCH_MODULE.format(unit=unit)),
            hdl_toplevel=name,
            testcase=testcase,
            build_dir=build_dir,
            test_dir=build_dir,
            extra_env=env,
            waves=waves,
            seed=seed,
            log_file=build_dir / "test.log",
        )
    except SystemExit:
        # cocotb's runner exits when a test fails; the results file still says which.
        results = build_dir / "results.xml"
    total, failed = get_results(results)
    if total == 0:
        raise BenchFailure(f"{unit} bench for {cfg.name()} ran no test; see {build_dir}/test.log")
    if failed:
        log = (build_dir / "test.log").read_text(errors="replace")
        tail = "\n".join(line for line in log.splitlines() if "FAIL" in line or "Error" in line)
        raise BenchFailure(
            f"{failed} of {total} {unit} bench tests failed for {cfg.name()} "
            f"(log: {build_dir}/test.log)\n{tail[-4000:]}"
        )
    return results
