"""`tritium estimate`: output files, plots and the errors users get for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tritium.cli import main

BASE = ["estimate", "--model", "bitnet-b1.58-2B-4T", "--rows", "32", "--cols", "32",
        "--clock-mhz", "250", "--dram-gbps", "16"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_json_file_is_written_atomically(tmp_path: Path, capsys) -> None:
    out = tmp_path / "sub" / "est.json"
    assert main([*BASE, "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "decode" in text and "roofline" in text and str(out) in text
    r = json.loads(out.read_text())
    for key in ("tokens_per_s", "roofline_tokens_per_s", "utilization"):
        assert key in r["decode"]
    assert "tokens_per_s" in r["prefill"]
    assert "decode_j_per_token" in r["energy"] and "prefill_j_per_token" in r["energy"]
    assert len(r["layers"]) == 30 and r["assumptions"]
    assert r["config"]["array"]["rows"] == 32 and r["config"]["memory"]["dram_gbps"] == 16
    assert sorted(p.name for p in out.parent.iterdir()) == ["est.json"]   # no temp left
    assert r["decode"]["roofline_fraction"] >= 0.9


def test_json_to_stdout(capsys) -> None:
    assert main([*BASE, "--dataflow", "ws", "--prompt-len", "16", "--gen-len", "4",
                 "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["config"]["dataflow"] == "ws" and r["prefill"]["tokens"] == 16
    assert main([*BASE, "--json", "-", "--sparsity", "0.5", "--weight-bits", "1.6"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["config"]["weight_zero_fraction"] == 0.5
    assert r["config"]["memory"]["weight_bits"] == 1.6


def test_plots_are_nonempty_pngs(tmp_path: Path, capsys) -> None:
    assert main([*BASE, "--plot", str(tmp_path / "plots"), "--json", "-"]) == 0
    r = json.loads(capsys.readouterr().out)
    paths = [Path(p) for p in r["plots"]]
    assert sorted(p.name for p in paths) == ["energy_breakdown.png", "layer_cycles.png",
                                             "roofline.png"]
    for p in paths:
        data = p.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, p


def test_checkpoint_folder_and_energy_table(tmp_path: Path, capsys) -> None:
    from tritium.host import synthetic

    ckpt = synthetic.write_random_checkpoint(tmp_path / "tiny", hidden=40, intermediate=72,
                                             layers=2, heads=4, kv_heads=2, vocab=64)
    table = tmp_path / "table.json"
    table.write_text(json.dumps({"name": "flat", "node_nm": 28, "operations": {
        "int_add_8": 0.01, "int_add_16": 0.02, "int_add_32": 0.04, "sram_64b_8kb": 5,
        "dram_64b": 640, "register_bit_write": 0.002, "register_bit_idle": 0.0}}))
    assert main(["estimate", "--model", str(ckpt), "--rows", "4", "--cols", "4",
                 "--clock-mhz", "100", "--dram-gbps", "1.6", "--prompt-len", "8",
                 "--energy-table", str(table), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["model"]["hidden_size"] == 40 and len(r["layers"]) == 2
    assert r["config"]["nnz_source"].startswith("counted from the weights")
    assert r["energy"]["table"]["name"] == "flat"
    assert r["energy"]["decode_breakdown_j_per_token"]["idle"] == 0.0


@pytest.mark.parametrize(("argv", "message"), [
    (["--model", "gpt-2"], "unknown model 'gpt-2': known models are"),
    (["--dram-gbps", "0"], "--dram-gbps must be > 0, got 0"),
    (["--dram-gbps", "-3"], "--dram-gbps must be > 0, got -3"),
    (["--clock-mhz", "0"], "--clock-mhz must be > 0, got 0"),
    (["--max-k", "4096"], "raise --max-k to at least 6912"),
    (["--dataflow", "is"], "--dataflow must be one of auto, ws, os"),
    (["--sparsity", "1.5"], "--sparsity must be in 0..1"),
    (["--node-nm", "3"], "outside the energy table's scaling range 5..45"),
    (["--prompt-len", "0"], "--prompt-len must be >= 1, got 0"),
    (["--gen-len", "-1"], "--gen-len must be >= 0, got -1"),
    (["--weight-bits", "0"], "--weight-bits must be in (0, 8]"),
    (["--energy-table", "/nonexistent/t.json"], "energy table /nonexistent/t.json not found"),
])
def test_bad_input_is_a_clear_error(argv, message, capsys) -> None:
    args = list(BASE)
    for flag, value in zip(argv[::2], argv[1::2], strict=True):
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert message in err, err
    assert "known models are bitnet" in err if "gpt-2" in argv else True


def test_os_bandwidth_error_and_no_traceback(tmp_path: Path) -> None:
    out = tmp_path / "never.json"
    proc = subprocess.run(
        [sys.executable, "-m", "tritium", *BASE[:-1], "0.5", "--dataflow", "os",
         "--json", str(out)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "below 4" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()
