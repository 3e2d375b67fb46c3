"""Proof that the accelerator has no multiplier: Yosys finds none, at the coarse level or when
iCE40 synthesis is allowed to use DSP blocks. The baseline MAC PE is the positive control."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritium.golden import ArrayConfig
from tritium.hdl.generate import write_unit
from tritium.hdl.synth import multiplier_report


@pytest.mark.parametrize("cfg", [
    ArrayConfig(rows=4, cols=4),
    # the os top decoding base-3 weights (five per byte) with shift-and-add
    ArrayConfig(rows=2, cols=2, dataflow="os", acc_bits=16, max_k=32, dram_bytes_per_cycle=8,
                dram_words=64, weight_packing="base3"),
], ids=["ws", "os_base3"])
def test_accelerator_top_has_no_multiplier(cfg: ArrayConfig, tmp_path: Path) -> None:
    verilog = write_unit("top", cfg, tmp_path, "tritium_top")
    assert multiplier_report(verilog, "tritium_top") == {"coarse": {}, "ice40": {}}


def test_mac_baseline_is_detected(tmp_path: Path) -> None:
    verilog = write_unit("pe", ArrayConfig(pe="mac"), tmp_path, "mac_pe")
    report = multiplier_report(verilog, "mac_pe")
    assert report["coarse"].get("$mul", 0) >= 1
    assert report["ice40"].get("SB_MAC16", 0) >= 1
