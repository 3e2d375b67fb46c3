"""The shipped tiny-adder model on the hardware backends: every ternary matmul on the Verilated
accelerator (rtl), and on the board top behind a pseudo-terminal (board), must give the golden
backend's answers to held-out addition problems and, on the RTL, its logits bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from tritium.golden import ArrayConfig
from tritium.host import BitNetModel
from tritium.train.eval_add import exact_match, held_out_problems

MODEL = "tiny-adder"
DIGITS = 3      # the operand size tiny-adder was trained on (host/zoo/tiny-adder/metadata.json)
# The demo's array: its Verilator build is shared with `tritium demo`.
RTL_ARRAY = ArrayConfig(rows=4, cols=4, act_depth=16)
# Every weight crosses the simulated UART on each forward pass (~100 kB for tiny-adder), so the
# board gets a larger array (fewer tiles, fewer frames) and the fastest UART the RTL allows.
BOARD_ARRAY = ArrayConfig(rows=8, cols=8, act_depth=16, weight_tiles=2)


def golden_run(problems, array: ArrayConfig):
    with BitNetModel.from_pretrained(MODEL, backend="golden", array=array) as golden:
        results = exact_match(golden, problems).results
        logits = [golden.logits(golden.encode(r.prompt)) for r in results]
    return results, logits


def test_rtl_answers_and_logits_equal_golden() -> None:
    problems = held_out_problems(20, digits=DIGITS, seed=7)
    want, want_logits = golden_run(problems, RTL_ARRAY)
    with BitNetModel.from_pretrained(MODEL, backend="rtl", array=RTL_ARRAY) as rtl:
        got = exact_match(rtl, problems).results
        assert got == want
        for r, w in zip(got, want_logits, strict=True):
            np.testing.assert_array_equal(rtl.logits(rtl.encode(r.prompt)), w,
                                          err_msg=r.prompt)
        assert rtl.stats.as_dict()["total"]["tiles"] > 0
    # The model is the 96 % one: a run where nothing is right would mean a broken load that
    # golden and the RTL share, not agreement worth having.
    assert sum(r.right for r in got) >= len(got) // 2


@pytest.mark.slow
def test_board_answers_equal_golden() -> None:
    """The host code a real board gets, driving the RTL of the board top over a pty. Two-digit
    held-out problems (shorter prompts and answers) keep the forward passes few."""
    from tritium.boards.board_sim import PtyBoard, SimBoard
    from tritium.boards.uart import MIN_DIVISOR

    problems = held_out_problems(3, digits=2, seed=1)
    want, _ = golden_run(problems, BOARD_ARRAY)
    with PtyBoard(SimBoard(BOARD_ARRAY, divisor=MIN_DIVISOR)) as board, \
            BitNetModel.from_pretrained(MODEL, backend="board", port=board.port,
                                        baud=1_000_000, timeout=2.0) as model:
        assert model.backend.array.name() == BOARD_ARRAY.name()
        assert exact_match(model, problems).results == want
        assert model.stats.as_dict()["total"]["tiles"] > 0
