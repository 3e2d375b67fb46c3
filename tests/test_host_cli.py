"""`tritium run` through tritium.cli.main, as a user calls it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tritium.cli import main
from tritium.host import BitNetModel
from tritium.host.synthetic import write_random_checkpoint

SPEC = dict(hidden=32, intermediate=64, layers=2, heads=2, kv_heads=1, vocab=80)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return write_random_checkpoint(tmp_path_factory.mktemp("m"), seed=5, **SPEC)


@pytest.fixture(scope="module")
def ckpt_tok(tmp_path_factory) -> Path:
    return write_random_checkpoint(tmp_path_factory.mktemp("t"), seed=5, tokenizer=True, **SPEC)


def test_run_json(ckpt: Path, capsys) -> None:
    assert main(["run", "--model", str(ckpt), "--tokens", "1,2,3", "--max-new-tokens", "5",
                 "--rows", "2", "--cols", "3", "--json"]) == 0
    out, err = capsys.readouterr()
    info = json.loads(out)
    assert err == ""   # no progress bar with --json
    with BitNetModel.from_pretrained(ckpt) as m:
        want = m.generate([1, 2, 3], 5)
    assert info["prompt_tokens"] == [1, 2, 3] and info["new_tokens"] == want
    assert info["backend"] == "golden" and info["text"] is None
    assert info["array"]["rows"] == 2 and info["array"]["cols"] == 3
    stats = info["stats"]
    assert len(stats["layers"]) == 2
    assert stats["total"]["calls"] == 7 * 2 * 5
    assert stats["total"]["macs"] == sum(x["total"]["macs"] for x in stats["layers"])
    assert stats["layers"][0]["projections"]["q_proj"]["tiles"] > 0


def test_run_text_report(ckpt: Path, capsys) -> None:
    assert main(["run", "--model", str(ckpt), "--tokens", "4, 5", "--max-new-tokens", "3"]) == 0
    out = capsys.readouterr().out
    assert "backend golden on ws_4x4_a8_acc32" in out
    assert "tokens  4, 5 -> " in out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["layer", "calls"])
    assert [lines[header + 2 + i].split()[0] for i in range(3)] == ["0", "1", "total"]


def test_run_prompt_with_tokenizer(ckpt_tok: Path, capsys) -> None:
    assert main(["run", "--model", str(ckpt_tok), "--prompt", "the hot word",
                 "--max-new-tokens", "4", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["prompt_text"] == "the hot word" and len(info["prompt_tokens"]) == 3
    assert isinstance(info["text"], str) and len(info["new_tokens"]) == 4


@pytest.mark.parametrize(("argv", "message"), [
    (["--prompt", "hello"], "--prompt needs .*tokenizer.json, which does not exist"),
    (["--tokens", "1,x"], "--tokens must be comma-separated integers"),
    (["--tokens", ","], "--tokens is empty"),
    (["--tokens", "1,80"], "token id 80 at position 1 is outside the vocabulary"),
    (["--tokens", "1", "--backend", "tpu"],
     "unknown backend 'tpu'; known backends: golden, board, rtl"),
    (["--tokens", "1", "--max-new-tokens", "-2"], "--max-new-tokens must be >= 0"),
    (["--tokens", "1", "--max-k", "50"], "longest reduction is K=64 but ArrayConfig.max_k=50"),
    (["--tokens", "1", "--acc-bits", "12"], "can overflow acc_bits=12"),
])
def test_run_errors(ckpt: Path, capsys, argv, message) -> None:
    assert main(["run", "--model", str(ckpt), *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tritium run: error: ")
    assert re.search(message, err), err


def test_run_empty_prompt(ckpt_tok: Path, capsys) -> None:
    assert main(["run", "--model", str(ckpt_tok), "--prompt", ""]) == 1
    assert "--prompt is empty" in capsys.readouterr().err


def test_missing_model_folder_without_traceback(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "tritium", "run", "--model",
                           str(tmp_path / "none"), "--tokens", "1"],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "does not exist" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "none").exists()


def test_run_needs_a_prompt(ckpt: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--model", str(ckpt)])
    assert "one of the arguments --prompt --tokens is required" in capsys.readouterr().err


def test_run_with_auto_dataflow_reports_both(tmp_path, capsys) -> None:
    import json

    from tritium.cli import main
    from tritium.host.synthetic import write_random_checkpoint

    path = write_random_checkpoint(tmp_path / "m", hidden=32, intermediate=64, layers=1,
                                   heads=2, kv_heads=1, vocab=50, seed=1)
    assert main(["run", "--model", str(path), "--tokens", ",".join(map(str, range(1, 25))),
                 "--max-new-tokens", "2", "--no-eos", "--rows", "8", "--cols", "8",
                 "--dram-bytes-per-cycle", "4", "--max-k", "128", "--dataflow", "auto",
                 "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["dataflow_calls"] == {"ws": 7, "os": 7}
