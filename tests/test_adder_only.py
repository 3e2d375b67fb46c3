"""Proof that the accelerator has no multiplier: Yosys finds none, at the coarse level or when
iCE40 synthesis is allowed to use DSP blocks. The baseline MAC PE is the positive control."""

from __future__ import annotations

from pathlib import Path

from tritium.golden import ArrayConfig
from tritium.hdl.generate import write_unit
from tritium.hdl.synth import multiplier_report


def test_accelerator_top_has_no_multiplier(tmp_path: Path) -> None:
    verilog = write_unit("top", ArrayConfig(rows=4, cols=4), tmp_path, "tritium_top")
    assert multiplier_report(verilog, "tritium_top") == {"coarse": {}, "ice40": {}}


def test_mac_baseline_is_detected(tmp_path: Path) -> None:
    verilog = write_unit("pe", ArrayConfig(pe="mac"), tmp_path, "mac_pe")
    report = multiplier_report(verilog, "mac_pe")
    assert report["coarse"].get("$mul", 0) >= 1
    assert report["ice40"].get("SB_MAC16", 0) >= 1
