from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tritium.cli import main


def test_every_subcommand_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    commands = ["gen", "verify", "demo", "run", "estimate", "synth", "build", "flash"]
    top_help = capsys.readouterr().out
    assert all(c in top_help for c in commands)
    for c in commands:
        with pytest.raises(SystemExit) as info:
            main([c, "--help"])
        assert info.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: tritium {c}")
        if c not in ("flash",):
            assert "--rows" in out, c


def test_demo_runs_a_gemm_and_a_model_on_the_rtl(capsys) -> None:
    from tritium.train.eval_add import held_out_problems

    assert main(["demo", "--json", "--tokens", "4", "--m", "9", "--k", "21", "--n", "10",
                 "--problems", "2", "--seed", "3"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["gemm"]["results_identical"] and r["gemm"]["counters_match"]
    model = r["model"]
    assert len(model["rtl_tokens"]) == 4 and model["rtl_tokens"] == model["golden_tokens"]
    assert model["logits_identical"] and model["model_stats_match"]
    assert model["rtl_stats"]["total"]["tiles"] > 0
    adder = r["adder"]
    assert adder["model"] == "tiny-adder"
    assert [(p["a"], p["b"]) for p in adder["problems"]] == held_out_problems(2, digits=3, seed=3)
    for p in adder["problems"]:
        assert p["answer"] == p["golden_answer"]
        assert p["right"] == (p["answer"] == str(p["a"] + p["b"]))
    assert adder["correct"] == sum(p["right"] for p in adder["problems"])
    assert adder["answers_identical"] and adder["logits_identical"] and adder["model_stats_match"]


def test_demo_gemm_only_and_no_problems(capsys) -> None:
    assert main(["demo", "--json", "--gemm-only", "--m", "5", "--k", "9", "--n", "6"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["results_identical"] and "adder" not in r
    assert main(["demo", "--json", "--tokens", "1", "--m", "5", "--k", "9", "--n", "6",
                 "--problems", "0"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert "adder" not in r and r["model"]["tokens_identical"]


def test_gen_writes_verilog_and_manifest(tmp_path: Path, capsys) -> None:
    assert main(["gen", "--rows", "3", "--cols", "5", "-o", str(tmp_path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    verilog = Path(info["files"]["verilog"])
    text = verilog.read_text()
    assert "module tritium_top" in text and "bus__rdata" in text
    manifest = json.loads(Path(info["files"]["manifest"]).read_text())
    assert manifest["config"]["rows"] == 3 and manifest["config"]["cols"] == 5
    assert manifest["bus"]["addr_bits"] == info["bus"]["addr_bits"]


def test_gen_units(tmp_path: Path) -> None:
    for unit in ("pe", "array"):
        assert main(["gen", "--unit", unit, "-o", str(tmp_path)]) == 0
        assert f"module tritium_{unit}" in (tmp_path / f"tritium_{unit}.v").read_text()


@pytest.mark.parametrize(("argv", "message"), [
    (["--rows", "0"], "ArrayConfig.rows must be in 1..255, got 0"),
    (["--acc-bits", "16", "--max-k", "4096"], "the safe K is at most 255"),
    (["--act-bits", "9"], "ArrayConfig.act_bits must be in 2..8"),
])
def test_bad_config_is_a_clear_error(tmp_path: Path, argv, message) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tritium", "gen", "-o", str(tmp_path), *argv],
        capture_output=True, text=True,
    )
    assert proc.returncode == 1
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.iterdir()), "nothing may be written for a rejected config"


def test_verify_runs_the_pe_bench(capsys) -> None:
    assert main(["verify", "--unit", "pe", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["results"][0] == out["results"][0] | {"unit": "pe", "passed": True}


def test_no_library_package_imports_the_cli_layer() -> None:
    """The command line sits on top: golden, hdl, sim, host and boards raise their own errors
    and never import tritium.cli (imports inside functions included)."""
    import ast

    root = Path(__file__).resolve().parent.parent
    offenders = []
    for package in ("golden", "hdl", "sim", "host", "boards"):
        for path in (root / package).rglob("*.py"):
            depth = len(path.relative_to(root).parts) - 1   # package levels above the module
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    # resolve `from ..cli import x` against tritium.<package>.<module>
                    base = ["tritium", *path.relative_to(root).parts[:depth]]
                    base = base[:len(base) - node.level + 1] if node.level else []
                    mod = ".".join([*base, *(node.module.split(".") if node.module else [])])
                    names = [mod, *(f"{mod}.{a.name}" for a in node.names)]
                else:
                    continue
                if any(n == "tritium.cli" or n.startswith("tritium.cli.") for n in names):
                    offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not offenders, offenders
