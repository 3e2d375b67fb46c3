"""Board builds with the PyPI toolchain (yowasp Yosys + nextpnr), and flashing without a board.

The iCEBreaker bitstream build takes about 1.5 minutes on one core (the first yowasp call also
compiles its WebAssembly)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tritium.boards.build import DesignTooLarge, build, default_dir, loader_command
from tritium.boards.platforms import BOARDS, BoardError, get_board
from tritium.cli import main
from tritium.golden import ArrayConfig


def test_unknown_board_lists_the_known_ones() -> None:
    with pytest.raises(BoardError, match="unknown board 'arty'; expected one of icebreaker, ulx3s"):
        get_board("arty")


def test_cli_unknown_board(capsys) -> None:
    assert main(["flash", "--board", "arty", "--dry-run"]) == 1
    assert "unknown board 'arty'" in capsys.readouterr().err


@pytest.mark.parametrize("name", list(BOARDS))
def test_board_defaults_are_consistent(name: str) -> None:
    from tritium.boards.host import DEFAULT_BAUD
    from tritium.boards.top import BoardCore

    board = get_board(name)
    assert board.default_array.clock_mhz == board.clock_hz / 1e6
    # The host's default rate is every board's, far above 115200 and made exactly by the clock.
    assert board.default_baud == DEFAULT_BAUD >= 8 * 115_200
    divisor = board.divisor(board.default_baud)
    assert board.clock_hz / divisor == board.default_baud
    BoardCore(board.default_array, divisor=divisor, link=board.link)   # addresses fit the link


def test_build_refuses_a_baud_the_board_cannot_make(capsys, tmp_path: Path) -> None:
    """Checked before synthesis, in one line naming the board, the rate and the limit."""
    assert main(["build", "--board", "ulx3s", "--baud", "5000000", "-o", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "5,000,000 baud is too fast for the ulx3s" in err and "3,000,000" in err
    assert "FT231X" in err
    with pytest.raises(BoardError, match=r"1,600,000 baud is 6.2% off on the icebreaker"):
        build("icebreaker", tmp_path, baud=1_600_000)
    assert not list(tmp_path.iterdir())


def test_flash_dry_run_prints_the_command(capsys, tmp_path: Path) -> None:
    assert main(["flash", "--board", "ulx3s", "-o", str(tmp_path), "--dry-run"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.endswith(f"-b ulx3s {tmp_path / 'tritium_ulx3s.bit'}")
    assert "openFPGALoader" in line
    assert loader_command("icebreaker", Path("x.bin"))[1:] == ["-b", "ice40_generic", "x.bin"]


def test_flash_without_a_bitstream(capsys, tmp_path: Path) -> None:
    assert main(["flash", "--board", "icebreaker", "-o", str(tmp_path)]) == 1
    assert "no bitstream at" in capsys.readouterr().err


def test_flash_without_a_board_says_so(capsys, tmp_path: Path) -> None:
    fake = tmp_path / "tritium_icebreaker.bin"
    fake.write_bytes(b"\x00" * 16)
    assert main(["flash", "--board", "icebreaker", "-o", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    # No USB programmer on a CI machine; where libusb itself is missing, that is said instead.
    assert "no icebreaker board found" in err or "cannot start" in err, err


def test_array_too_large_is_reported_from_synthesis(tmp_path: Path) -> None:
    """Output banks of 2 x 4096 x 22 bits need ~45 block RAMs; the UP5K has 30. The error
    comes from the synthesis report, before nextpnr runs."""
    cfg = ArrayConfig(rows=2, cols=2, acc_bits=22, act_depth=4096, clock_mhz=12.0)
    with pytest.raises(DesignTooLarge, match=r"does not fit ice40-up5k .*BRAM \(bram\): "
                       r"needs \d+, the device has 30") as info:
        build("icebreaker", tmp_path, cfg)
    assert info.value.utilisation["SB_RAM40_4K"]["used"] > 30
    assert [o["resource"] for o in info.value.overflows] == ["bram"]
    assert not list(tmp_path.glob("*.nextpnr.log"))


def test_synth_and_build_refuse_alike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys) -> None:
    """The same oversized array through `tritium synth` and `tritium build`: one error type
    from one fit check, naming the same resource, and one-line CLI errors."""
    from tritium.hdl import fpga, synth

    cfg = ArrayConfig(rows=2, cols=2, acc_bits=22, act_depth=4096, clock_mhz=12.0)
    with pytest.raises(DesignTooLarge) as from_build:
        build("icebreaker", tmp_path / "board", cfg)
    with pytest.raises(DesignTooLarge) as from_synth:
        synth.synth_report(cfg, "ice40-up5k", build_root=tmp_path / "synth")
    assert DesignTooLarge is fpga.DesignTooLarge is synth.DesignTooLarge
    for info in (from_build, from_synth):
        assert [o["resource"] for o in info.value.overflows] == ["bram"]
        assert "BRAM (bram): needs" in str(info.value)
    assert not list(tmp_path.rglob("*nextpnr*"))
    monkeypatch.setenv("TRITIUM_BUILD", str(tmp_path))
    for argv in (["build", "--board", "icebreaker"], ["synth", "--device", "ice40-up5k"]):
        assert main([*argv, "--rows", "2", "--cols", "2", "--act-depth", "4096",
                     "--acc-bits", "22"]) == 1
        err = capsys.readouterr().err
        assert "does not fit ice40-up5k" in err and "BRAM" in err and "Traceback" not in err


@pytest.mark.slow
def test_packing_predicts_what_yosys_counts_miss(tmp_path: Path) -> None:
    """4x8 on the iCEBreaker: Yosys' LUTs and FFs each fit the UP5K's 5280 logic cells, but
    nextpnr's packer needs more cells than there are (pass-through LUTs for flip-flops whose
    LUT drives other logic too, carry cells that share no LUT). The build stops after
    packing, naming the cells, instead of failing in the placer."""
    cfg = dataclasses.replace(get_board("icebreaker").default_array, rows=4, cols=8)
    with pytest.raises(DesignTooLarge) as info:
        build("icebreaker", tmp_path, cfg)
    (over,) = info.value.overflows
    assert over["resource"] == "lut" and over["placed_as"] == "ICESTORM_LC"
    assert over["needed"] > over["available"] == 5280
    stat = json.loads((tmp_path / "tritium_icebreaker.stat.json").read_text())
    cells = stat["design"]["num_cells_by_type"]
    assert cells["SB_LUT4"] <= 5280                     # Yosys alone would have let it through
    assert "ICESTORM_LC" in str(info.value) and "placement was not attempted" in str(info.value)
    assert (tmp_path / "tritium_icebreaker.nextpnr-pack.log").exists()
    assert not (tmp_path / "tritium_icebreaker.nextpnr.log").exists()


def test_build_folder_honours_tritium_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys) -> None:
    monkeypatch.setenv("TRITIUM_BUILD", str(tmp_path))
    assert default_dir("ulx3s") == tmp_path / "boards" / "ulx3s"
    assert main(["build", "--board", "icebreaker", "--rows", "1", "--cols", "1",
                 "--synth-only", "--json"]) == 0
    assert (tmp_path / "boards" / "icebreaker" / "tritium_icebreaker.report.json").exists()
    assert main(["flash", "--board", "ulx3s", "--dry-run"]) == 0
    assert str(tmp_path / "boards" / "ulx3s" / "tritium_ulx3s.bit") in capsys.readouterr().out


def test_build_synth_only_reports_utilisation(tmp_path: Path, capsys) -> None:
    from tritium.cli import main

    assert main(["build", "--board", "icebreaker", "--rows", "2", "--cols", "2",
                 "--synth-only", "-o", str(tmp_path), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["config"]["rows"] == 2 and 0 < rep["synth"]["utilisation"]["LC"]["used"] < 5280
    board = get_board("icebreaker")
    assert rep["link"]["baud"] == board.default_baud
    assert rep["link"]["divisor"] == board.clock_hz / board.default_baud
    assert not list(tmp_path.glob("*.bin")) and not list(tmp_path.glob("*.nextpnr.log"))


def test_icebreaker_bitstream(tmp_path: Path) -> None:
    """The board's default array, built as `tritium build --board icebreaker` builds it."""
    result = build("icebreaker", tmp_path)
    report = result.report
    assert result.bitstream is not None and result.bitstream.suffix == ".bin"
    assert result.bitstream.stat().st_size > 100_000
    assert report["config"]["rows"] == get_board("icebreaker").default_array.rows
    lc = report["utilisation"]["ICESTORM_LC"]
    assert 0 < lc["used"] <= lc["available"] == 5280
    assert report["timing"]["board_clock_mhz"] == 12.0
    assert report["timing"]["meets_board_clock"], report["timing"]
    assert json.loads(result.report_path.read_text()) == report


def test_ulx3s_bitstream(tmp_path: Path, capsys) -> None:
    """The ECP5 flow end to end through the CLI, on a 2x2 array (ECP5 place and route of the
    29x29 default takes far longer than CI allows)."""
    from tritium.cli import main

    assert main(["build", "--board", "ulx3s", "--rows", "2", "--cols", "2", "-o",
                 str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    bit = tmp_path / report["bitstream"]
    assert bit.suffix == ".bit" and bit.stat().st_size > 100_000
    comb = report["utilisation"]["TRELLIS_COMB"]
    assert 0 < comb["used"] <= comb["available"] == 83640
    assert report["timing"]["board_clock_mhz"] == 25.0
    assert report["timing"]["meets_board_clock"], report["timing"]
