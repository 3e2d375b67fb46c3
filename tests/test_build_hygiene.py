"""Simulator build caches: keyed by what was generated, shareable (umask modes), free of
compile intermediates, and compiled in parallel."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tritium.golden import ArrayConfig
from tritium.host.driver import driver_for
from tritium.sim import runner, verilated
from tritium.sim.toolchain import build_jobs, cached_build, failed_log
from tritium.sim.verilated import LIB, TOP, VerilatorDevice, build_dir, ensure_built


@pytest.fixture
def umask() -> Iterator[None]:
    """Run with umask 022, restoring the caller's afterwards."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_cached_build_follows_the_umask(tmp_path: Path) -> None:
    for mask, folder_mode, file_mode in ((0o022, 0o755, 0o644), (0o002, 0o775, 0o664)):
        old = os.umask(mask)
        try:
            final = tmp_path / f"mask{mask:o}"

            def compile_into(work: Path) -> None:
                (work / "sub").mkdir()
                (work / "sub" / "product").write_text("built")

            product = cached_build(final, "sub/product", compile_into)
        finally:
            os.umask(old)
        assert product.read_text() == "built"
        assert mode(final) == folder_mode and mode(final / "sub") == folder_mode
        assert mode(product) == file_mode


def test_failed_build_leaves_no_folder_and_keeps_its_log(tmp_path: Path) -> None:
    final = tmp_path / "broken"

    def compile_into(work: Path) -> None:
        (work / "build.log").write_text("error: no such signal\n")
        raise RuntimeError("compiler failed")

    with pytest.raises(RuntimeError, match="compiler failed"):
        cached_build(final, "product", compile_into)
    assert not final.exists()
    assert failed_log(final).read_text() == "error: no such signal\n"
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith((".lock", ".log"))] == []


def test_caches_are_keyed_by_the_generated_verilog_and_harness(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = ArrayConfig(rows=2, cols=2)
    device_dir = build_dir(cfg, tmp_path)
    bench_dir = runner.unit_build_dir("array", cfg, tmp_path)
    assert build_dir(cfg, tmp_path) == device_dir          # stable for the same Verilog

    generated = verilated.unit_verilog

    def edited(unit: str, c: ArrayConfig, name: str) -> str:
        return generated(unit, c, name) + "// edited\n"

    monkeypatch.setattr(verilated, "unit_verilog", edited)
    monkeypatch.setattr(runner, "unit_verilog", edited)
    assert build_dir(cfg, tmp_path) != device_dir
    assert runner.unit_build_dir("array", cfg, tmp_path) != bench_dir
    assert runner.unit_build_dir("array", cfg, tmp_path, waves=True) != \
        runner.unit_build_dir("array", cfg, tmp_path)
    monkeypatch.undo()

    harness = tmp_path / "device.cpp"
    harness.write_text(verilated.HARNESS.read_text() + "// edited\n")
    monkeypatch.setattr(verilated, "HARNESS", harness)
    assert build_dir(cfg, tmp_path) != device_dir


def test_device_build_is_parallel_pruned_and_shareable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, umask: None) -> None:
    """A real build: Verilator's make gets -j <CPUs>; the cached folder keeps the library, its
    Verilog and the log, with no objects, archives or precompiled headers; modes follow the
    umask; the library still loads and runs."""
    calls = tmp_path / "make_calls"
    make = tmp_path / "make"
    make.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexec make "$@"\n')
    make.chmod(0o755)
    monkeypatch.setenv("MAKE", str(make))      # Verilator's --build runs $MAKE
    cfg = ArrayConfig(rows=1, cols=1, acc_bits=10, max_k=3, act_depth=4)

    library = ensure_built(cfg, tmp_path / "cache")
    assert f"-j {build_jobs()}" in calls.read_text()
    folder = library.parent
    assert sorted(p.name for p in folder.rglob("*")) == sorted(
        [LIB, f"{TOP}.v", f"{TOP}.json", "build.log"])
    assert mode(folder) == 0o755 and mode(folder.parent) == 0o755
    assert mode(folder / f"{TOP}.v") == 0o644 and mode(folder / "build.log") == 0o644
    assert mode(library) == 0o755
    with VerilatorDevice(cfg, build_root=tmp_path / "cache") as dev:
        driver_for(dev).identify()
