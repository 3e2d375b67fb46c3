"""`tritium eval` and tritium.train.evaluate: the shipped tiny-adder scored under hardware
numerics on the golden backend, against scores computed without the code under test; the
sweep's "accuracy" metric."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

import tritium.cli
from tritium.explore import Space, SweepSpec, metrics, sweep
from tritium.explore.executors import make_executor
from tritium.golden import ArrayConfig
from tritium.golden.checks import InputError
from tritium.golden.gemm import array_gemm, ternary_gemm
from tritium.golden.quant import quantize_activations
from tritium.host import BitNetModel
from tritium.host.backends import GoldenBackend
from tritium.train.eval_add import exact_match, held_out_problems
from tritium.train.evaluate import Numerics, add_accuracy, grid, perplexity

MODEL = "tiny-adder"
N = 30


@pytest.fixture(scope="module")
def reference_answers() -> list[bool]:
    """Right/wrong per problem from the plain golden model (int8, 32-bit accumulators, the
    checkpoint's weights as loaded): what eval must reproduce at 8 bits."""
    with BitNetModel.from_pretrained(MODEL) as m:
        return [r.right for r in exact_match(m, held_out_problems(N, seed=3)).results]


def test_eight_bits_equal_the_plain_golden_model(reference_answers: list[bool]) -> None:
    want = sum(reference_answers) / N
    for packing in ("2bit", "base3"):      # packing is lossless
        got = add_accuracy(MODEL, Numerics(weight_packing=packing), problems=N, seed=3)
        assert got["problems"] == N and got["correct"] == sum(reference_answers)
        assert got["accuracy"] == want
    # a wide enough accumulator never overflows, whatever the mode
    wide = add_accuracy(MODEL, Numerics(acc_bits=17, acc_overflow="saturate"), problems=N,
                        seed=3)
    assert wide["accuracy"] == want


class Recording(GoldenBackend):
    """Remembers the widest activation code and the results, to check what eval feeds."""

    def __init__(self, array: ArrayConfig) -> None:
        super().__init__(array)
        self.widest = 0
        self.calls_checked = 0

    def _matmul(self, a, p):
        self.widest = max(self.widest, int(np.abs(a.astype(np.int16)).max()))
        out, events = super()._matmul(a, p)
        if self.calls_checked < 20:      # results are the array's, not the exact sum
            np.testing.assert_array_equal(out, array_gemm(self.array, a, p.w))
            self.calls_checked += 1
        return out, events


@pytest.mark.parametrize("bits", [3, 4])
def test_the_model_quantises_activations_at_act_bits(bits: int) -> None:
    be = Recording(ArrayConfig(act_bits=bits, acc_bits=12, max_k=256, acc_overflow="wrap"))
    with BitNetModel.from_pretrained(MODEL, backend=be) as m:
        m.generate(m.encode("12+34="), max_new_tokens=3)
    assert be.widest == 2 ** (bits - 1) - 1   # each token's absmax element's code
    assert be.calls_checked == 20


def test_quantiser_width() -> None:
    x = np.array([[0.5, -1.0, 0.26, 0.0], [3.0, 1.0, -1.5, 0.2]], dtype=np.float32)
    q8, s8 = quantize_activations(x)
    q8b, s8b = quantize_activations(x, bits=8)
    assert np.array_equal(q8, q8b) and np.array_equal(s8, s8b)
    q3, s3 = quantize_activations(x, bits=3)
    # by hand: 3 / max|x| per row, rounded half to even
    assert q3.tolist() == [[2, -3, 1, 0], [3, 1, -2, 0]]
    assert np.allclose(s3[:, 0], [3.0, 1.0])
    with pytest.raises(InputError, match="activation bits must be an integer in 2..8"):
        quantize_activations(x, bits=9)


def test_narrow_accumulators_and_activations_cost_accuracy(reference_answers) -> None:
    full = sum(reference_answers) / N
    rows = {(r["act_bits"], r["acc_bits"], r["acc_overflow"]): r["accuracy"]
            for r in _rows([Numerics(act_bits=3), Numerics(acc_bits=10, acc_overflow="wrap"),
                            Numerics(acc_bits=10, acc_overflow="saturate")])}
    assert all(v <= full for v in rows.values())
    assert rows[(8, 10, "wrap")] < full and rows[(8, 10, "saturate")] < full


def _rows(points):
    from tritium.train.evaluate import evaluate

    return evaluate(MODEL, points, problems=N, seed=3)


def test_an_unsafe_accumulator_without_a_mode_is_an_error_row() -> None:
    rows = _rows(grid({"acc_bits": [12]}))
    assert "accuracy" not in rows[0]
    assert "acc_overflow='wrap' or 'saturate'" in rows[0]["error"]


def test_perplexity_matches_its_definition(tmp_path: Path) -> None:
    text = tmp_path / "sums.txt"
    text.write_text("12+34=46" * 3)
    got = perplexity(MODEL, text, max_tokens=16)
    with BitNetModel.from_pretrained(MODEL) as m:
        ids = m.encode(text.read_text())[:16]
        logits = m.logits(ids[:-1]).astype(np.float64)
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1,
                                                                                  keepdims=True)) \
        - logits.max(-1, keepdims=True)
    nll = -np.mean(logp[np.arange(15), ids[1:]])
    assert got["tokens"] == 15
    assert got["perplexity"] == pytest.approx(np.exp(nll), rel=1e-9)


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = tritium.cli.main(argv)
    return rc, out.getvalue(), err.getvalue()


def test_cli_table_json_and_plot(tmp_path: Path, reference_answers: list[bool]) -> None:
    png = tmp_path / "acc.png"
    rc, out, err = run_cli(["eval", "--model", MODEL, "--task", "add", "--problems", str(N),
                            "--seed", "3", "--act-bits", "8,3", "--acc-bits", "32,10",
                            "--acc-overflow", "wrap", "-o", str(png), "--json"])
    assert rc == 0, err
    doc = json.loads(out)
    points = {(p["act_bits"], p["acc_bits"]): p for p in doc["points"]}
    assert list(points) == [(8, 32), (8, 10), (3, 32), (3, 10)]
    assert points[(8, 32)]["correct"] == sum(reference_answers)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rc, out, err = run_cli(["eval", "--model", MODEL, "--task", "add", "--problems", "5",
                            "--acc-bits", "12"])
    assert rc == 0 and "error: ArrayConfig.max_k=256 can overflow acc_bits=12" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["--task", "add", "--act-bits", "9"], "act_bits must be an integer in 2..8, got 9"),
    (["--task", "add", "--act-bits", "8,x"], "--act-bits: expected int values, got 'x'"),
    (["--task", "add", "--weight-packing", "3bit"], "weight_packing must be one of 2bit, base3"),
    (["--task", "add", "--acc-overflow", "clip"], "acc_overflow must be one of safe, wrap"),
    (["--text", "/nonexistent/t.txt"], "/nonexistent/t.txt: No such file"),
    (["--task", "add", "--problems", "0"], "--problems must be >= 1"),
])
def test_cli_bad_input_is_one_line(argv: list[str], message: str) -> None:
    rc, out, err = run_cli(["eval", "--model", MODEL, *argv])
    assert rc != 0 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_sweep_accuracy_metric(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               reference_answers: list[bool]) -> None:
    monkeypatch.setattr(metrics, "ACCURACY_PROBLEMS", N)
    space = Space.from_strings({"rows": "4", "act_bits": "8,3", "acc_bits": "32,10",
                                "acc_overflow": "saturate", "prompt_len": "8", "gen_len": "4"})
    spec = SweepSpec(MODEL, space, metrics=metrics.select(["accuracy"]))
    executor = make_executor(1, None)
    try:
        res = sweep(spec, tmp_path, executor, progress=False)
    finally:
        executor.close()
    rows = {(r["act_bits"], r["acc_bits"]): r for r in res.rows()}
    assert all(r["status"] == "ok" for r in rows.values()), rows
    for (act, acc), r in rows.items():
        want = add_accuracy(MODEL, Numerics(act_bits=act, acc_bits=acc,
                                            acc_overflow="saturate"), problems=N)
        assert r["accuracy"] == want["accuracy"]
        assert r["energy_j_per_token"] > 0
    assert rows[(8, 32)]["accuracy"] == sum(add_accuracy_seed0()) / N


def add_accuracy_seed0() -> list[bool]:
    with BitNetModel.from_pretrained(MODEL) as m:
        return [r.right for r in exact_match(m, held_out_problems(N, seed=0)).results]


def test_rtl_style_accumulator_in_the_backend() -> None:
    cfg = ArrayConfig(rows=4, act_bits=8, acc_bits=10, max_k=64, acc_overflow="saturate")
    rng = np.random.default_rng(0)
    a = rng.integers(60, 128, (3, 40)).astype(np.int8)
    w = np.ones((40, 5), dtype=np.int8)
    be = GoldenBackend(cfg)
    out, _ = be.matmul(a, be.prepare(w))
    assert (out == 511).all()              # every sum saturates at the top
    assert (ternary_gemm(a, w) > 511).all()
