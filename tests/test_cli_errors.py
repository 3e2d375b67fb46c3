"""What a user sees when they get something wrong: one line naming the problem, never a
traceback; and the shared option semantics (--json, output paths, $TRITIUM_BUILD)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tritium.cli import main
from tritium.cli.demo import scalesim_note
from tritium.cli.run import parse_tokens
from tritium.golden import ArrayConfig, gemm_events
from tritium.golden.cycles import scalesim_ws_cycles
from tritium.golden.files import atomic_write_bytes, atomic_write_json, build_root

ESTIMATE = ["estimate", "--model", "bitnet-b1.58-2B-4T", "--dram-gbps", "16"]


@pytest.fixture
def paths(tmp_path: Path) -> dict[str, Path]:
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me\n")
    a_dir = tmp_path / "a_dir"
    a_dir.mkdir()
    return {"file": a_file, "dir": a_dir, "missing": tmp_path / "missing"}


# (argv with {file}/{dir}/{missing} placeholders, exit code, text the one line must hold)
BAD_INPUTS = [
    (["gen", "-o", "{file}"], 2, "{file} is a file; give a folder"),
    (["gen", "-o", "{file}/sub"], 2, "is inside {file}, which is a file"),
    (["gen", "-o", "{dir}", "--rows", "0"], 1, "ArrayConfig.rows must be in 1..255, got 0"),
    (["gen", "-o", "{dir}", "--name", "../x"], 1, "--name '../x' is not a Verilog module"),
    (["gen", "-o", "{dir}", "--json", "{dir}"], 2, "--json: {dir} is a folder"),
    (["verify", "--unit", "stream"], 1, "--unit stream is the os dataflow's bench"),
    (["demo", "--acc-bits", "16", "--max-k", "4096"], 1, "the safe K is at most"),
    (["run", "--model", "{missing}", "--tokens", "1,,2"], 1, "entry 2 of '1,,2' is empty"),
    (["run", "--model", "{missing}", "--tokens", "1,x"], 1, "entry 2 of '1,x' is 'x'"),
    (["run", "--model", "{missing}", "--tokens", "1"], 1, "{missing} does not exist"),
    (["run", "--model", "{dir}", "--tokens", "1"], 1, "config.json not found"),
    (["run", "--model", "{dir}", "--tokens", "1", "--json", "{dir}"], 2, "{dir} is a folder"),
    ([*ESTIMATE, "--json", "{dir}"], 2, "--json: {dir} is a folder; give a file path"),
    ([*ESTIMATE, "--json", "{file}/x.json"], 2, "{file} is a file, not a folder"),
    ([*ESTIMATE, "--plot", "{file}"], 2, "--plot: {file} is a file; give a folder"),
    ([*ESTIMATE, "--energy-table", "{dir}"], 1, "energy table {dir}"),
    ([*ESTIMATE, "--dram-gbps", "0"], 1, "--dram-gbps must be > 0"),
    (["synth", "--device", "virtex-7"], 1, "unknown device 'virtex-7'"),
    (["synth", "--device", "ice40-up5k", "--json", "{dir}"], 2, "{dir} is a folder"),
    (["build", "--board", "arty"], 1, "unknown board 'arty'"),
    (["build", "--board", "icebreaker", "-o", "{file}"], 2, "{file} is a file"),
    (["flash", "--board", "icebreaker", "--bitstream", "{missing}.bin"], 1,
     "no bitstream at {missing}.bin (--bitstream)"),
    (["flash", "--board", "icebreaker", "--bitstream", "{dir}"], 1, "{dir} is a folder"),
    (["flash", "--board", "icebreaker", "-o", "{dir}"], 1,
     "build it first with `tritium build --board icebreaker -o {dir}`"),
    (["run", "--model", "{dir}"], 2, "one of the arguments --prompt --tokens is required"),
]


@pytest.mark.parametrize(("argv", "code", "message"), BAD_INPUTS,
                         ids=[" ".join(a[:3]) + f"-{i}" for i, (a, _, _) in enumerate(BAD_INPUTS)])
def test_bad_input_is_one_line_without_traceback(paths, argv, code, message) -> None:
    fill = {k: str(v) for k, v in paths.items()}
    argv = [a.format(**fill) for a in argv]
    proc = subprocess.run([sys.executable, "-m", "tritium", *argv], capture_output=True,
                          text=True, env={**os.environ, "TRITIUM_BUILD": str(paths["dir"])})
    err = proc.stderr
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith(f"tritium {argv[0]}: error: "), err
    assert message.format(**fill) in err, err
    assert paths["file"].read_text() == "keep me\n"        # nothing overwrote the user's file
    assert list(paths["dir"].iterdir()) == []              # a rejected command writes nothing


def test_flash_missing_bitstream_names_the_build_command(paths, monkeypatch, capsys) -> None:
    monkeypatch.setenv("TRITIUM_BUILD", str(paths["dir"]))
    assert main(["flash", "--board", "ulx3s", "--bitstream", "missing.bin"]) == 1
    err = capsys.readouterr().err
    assert "missing.bin" in err and "`tritium build --board ulx3s`" in err
    assert str(paths["dir"] / "boards" / "ulx3s" / "tritium_ulx3s.bit") in err
    assert "-o /" not in err and "-o ." not in err


def test_build_and_flash_honour_tritium_build(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("TRITIUM_BUILD", str(tmp_path / "b"))
    assert build_root() == (tmp_path / "b").resolve()
    assert main(["flash", "--board", "ulx3s", "--dry-run"]) == 0
    want = tmp_path / "b" / "boards" / "ulx3s" / "tritium_ulx3s.bit"
    assert capsys.readouterr().out.strip().endswith(str(want.resolve()))
    monkeypatch.delenv("TRITIUM_BUILD")
    assert build_root() == Path("build").resolve()


def test_parse_tokens() -> None:
    assert parse_tokens(" 4, 5,6") == [4, 5, 6]
    for text, bad in (("1,,2", "entry 2 of '1,,2' is empty"), ("1,2,", "entry 3"),
                      (",1", "entry 1"), ("1,2.5", "entry 2 of '1,2.5' is '2.5'")):
        with pytest.raises(Exception, match=bad.replace("(", r"\(")):
            parse_tokens(text)
    with pytest.raises(Exception, match="--tokens is empty"):
        parse_tokens(" , ")


def test_library_errors_map_to_one_line_and_bugs_keep_tracebacks(monkeypatch, capsys,
                                                                 tmp_path) -> None:
    from tritium.cli import gen

    missing = tmp_path / "gone.v"

    def raise_(exc: BaseException):
        def run(_args):
            raise exc
        return run

    monkeypatch.setattr(gen, "run", raise_(FileNotFoundError(2, "No such file or directory",
                                                               str(missing))))
    assert main(["gen", "-o", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (f"tritium gen: error: {missing}: No such file or "
                                       "directory\n")
    monkeypatch.setattr(gen, "run", raise_(PermissionError(13, "Permission denied", "/x")))
    assert main(["gen", "-o", str(tmp_path)]) == 1
    assert capsys.readouterr().err == "tritium gen: error: /x: Permission denied\n"
    # An error type no tritium library defines is a bug: it must not be dressed up.
    monkeypatch.setattr(gen, "run", raise_(KeyError("oops")))
    with pytest.raises(KeyError):
        main(["gen", "-o", str(tmp_path)])


def test_json_means_the_same_everywhere(tmp_path, capsys) -> None:
    out = tmp_path / "v"
    assert main(["gen", "--rows", "2", "--cols", "3", "-o", str(out), "--json"]) == 0
    on_stdout = json.loads(capsys.readouterr().out)      # flag: JSON only, on stdout
    report = tmp_path / "r" / "gen.json"
    assert main(["gen", "--rows", "2", "--cols", "3", "-o", str(out), "--json",
                 str(report)]) == 0
    text = capsys.readouterr().out                     # FILE: the table, plus the file
    assert text.startswith(f"wrote {out / 'tritium_top.v'}") and f"json: {report}" in text
    assert json.loads(report.read_text()) == on_stdout
    assert on_stdout["config"]["rows"] == 2 and on_stdout["config"]["cols"] == 3
    assert sorted(p.name for p in report.parent.iterdir()) == ["gen.json"]   # no temp left
    assert sorted(p.name for p in out.iterdir()) == ["tritium_top.json", "tritium_top.v"]


def test_atomic_write_leaves_nothing_half_written(tmp_path, monkeypatch) -> None:
    path = tmp_path / "deep" / "r.json"
    atomic_write_json(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask   # not mkstemp's private 0600
    with pytest.raises(TypeError):
        atomic_write_json(path, {"a": object()})         # not serialisable: nothing written
    assert json.loads(path.read_text()) == {"a": 1}

    def fail(_fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_bytes(path, b"half")
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(p.name for p in path.parent.iterdir()) == ["r.json"]   # temp removed


@pytest.mark.parametrize(("m", "act_depth"), [(9, 16), (16, 16), (24, 16), (40, 8)])
def test_demo_explains_the_scalesim_figure(m: int, act_depth: int) -> None:
    import numpy as np

    cfg = ArrayConfig(rows=4, cols=4, act_depth=act_depth)
    w = np.random.default_rng(0).choice([-1, 0, 1], size=(21, 10))
    cycles = gemm_events(cfg, w, m).cycles
    scalesim = scalesim_ws_cycles(cfg.rows, cfg.cols, m, 21, 10)
    note = scalesim_note(cfg, m, cycles, scalesim)
    if m <= act_depth:
        assert cycles == scalesim and note.startswith("equals the ws cycle count")
    else:
        chunks = -(-m // act_depth)
        assert cycles > scalesim
        assert f"M={m} > act_depth={act_depth}" in note and f"{chunks} chunks" in note
    assert "not comparable" in scalesim_note(ArrayConfig(rows=4, cols=4, dataflow="os",
                                                         dram_bytes_per_cycle=4),
                                             m, cycles, scalesim)


def test_run_auto_shows_the_dataflow_split(tmp_path, capsys) -> None:
    from tritium.host.synthetic import write_random_checkpoint

    path = write_random_checkpoint(tmp_path / "m", hidden=32, intermediate=64, layers=1,
                                   heads=2, kv_heads=1, vocab=50, seed=1)
    argv = ["run", "--model", str(path), "--tokens", ",".join(map(str, range(1, 25))),
            "--max-new-tokens", "2", "--no-eos", "--rows", "8", "--cols", "8",
            "--dram-bytes-per-cycle", "4", "--max-k", "128", "--dataflow", "auto"]
    report = tmp_path / "run.json"
    assert main([*argv, "--json", str(report)]) == 0
    text = capsys.readouterr().out
    r = json.loads(report.read_text())
    assert r["dataflow"] == "auto"
    calls, cycles = r["dataflow_calls"], r["dataflow_cycles"]
    # prefill (M=24) on ws, the two decode GEMVs on os: 7 projections each time
    assert calls == {"ws": 7, "os": 7}
    assert cycles["ws"] > 0 and cycles["os"] > 0
    assert cycles["ws"] + cycles["os"] == r["stats"]["total"]["cycles"]
    line = next(x for x in text.splitlines() if x.startswith("backend "))
    assert "dataflow auto" in line and "ws_8x8" not in line
    assert f"ws 7 matmuls / {cycles['ws']:,} cycles" in line
    assert f"os 7 matmuls / {cycles['os']:,} cycles" in line
