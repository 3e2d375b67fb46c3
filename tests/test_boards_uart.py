"""The board UART: divisor arithmetic in Python, the RTL in a cocotb bench on Verilator."""

from __future__ import annotations

import pytest

from tritium.boards.board_sim import SimBoard, run_board_bench
from tritium.boards.platforms import BOARDS, BoardError, get_board
from tritium.boards.uart import MIN_DIVISOR, UARTRx, divisor_for
from tritium.golden import ArrayConfig


def test_divisor_for_real_boards() -> None:
    assert divisor_for(12e6, 115200) == 104       # iCEBreaker
    assert divisor_for(25e6, 115200) == 217       # ULX3S
    assert divisor_for(12e6, 1_000_000) == 12


@pytest.mark.parametrize("clock, baud, match", [
    (12e6, 0, "baud must be > 0"),
    (12e6, 4_000_000, "at least 4 cycles per bit"),
    (12e6, 1_600_000, "off"),                     # 7.5 cycles per bit: 6.7 % error
])
def test_divisor_for_rejects_bad_rates(clock: float, baud: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        divisor_for(clock, baud)


def test_divisor_must_be_at_least_four() -> None:
    with pytest.raises(ValueError, match="divisor"):
        UARTRx(3)


def test_max_baud_is_the_bridge_or_the_clock() -> None:
    # iCEBreaker: its FT2232H makes 12 Mbaud, but 12 MHz / 4 cycles per bit is 3 Mbaud.
    assert get_board("icebreaker").max_baud == 12_000_000 // MIN_DIVISOR
    # ULX3S: 25 MHz / 4 would be 6.25 Mbaud; its FT231X stops at 3 Mbaud.
    assert get_board("ulx3s").max_baud == 3_000_000


@pytest.mark.parametrize("board, baud, divisor", [
    ("icebreaker", 3_000_000, 4), ("icebreaker", 115_200, 104), ("icebreaker", 2_000_000, 6),
    ("ulx3s", 2_500_000, 10), ("ulx3s", 115_200, 217),
])
def test_board_makes_rates_within_its_limits(board: str, baud: int, divisor: int) -> None:
    assert get_board(board).divisor(baud) == divisor


@pytest.mark.parametrize("board, baud, match", [
    ("icebreaker", 4_000_000, r"4,000,000 baud is too fast for the icebreaker: .* up to "
                              r"3,000,000 baud \(FT2232H bridge, 12 MHz clock / 4"),
    ("ulx3s", 3_125_000, r"3,125,000 baud is too fast for the ulx3s: .* up to 3,000,000 baud "
                         r"\(FT231X"),
    ("icebreaker", 1_600_000, r"1,600,000 baud is 6.2% off on the icebreaker \(12 MHz / 8\)"),
    ("ulx3s", 0, "baud must be a positive integer, got 0"),
])
def test_board_refuses_rates_it_cannot_make(board: str, baud: int, match: str) -> None:
    with pytest.raises(BoardError, match=match) as info:
        get_board(board).divisor(baud)
    assert "\n" not in str(info.value)


def test_sim_board_runs_the_board_rate() -> None:
    cfg = ArrayConfig(rows=1, cols=1)
    for name, board in BOARDS.items():
        sim = SimBoard.at_baud(cfg, name)
        assert board.clock_hz / sim.divisor == board.default_baud
    assert SimBoard(cfg) == SimBoard.at_baud(cfg, "ulx3s")
    with pytest.raises(BoardError, match="too fast for the ulx3s"):
        SimBoard.at_baud(cfg, "ulx3s", 6_250_000)


# The fewest cycles per bit the receiver works with, and each board's UART at its default rate
# (12 and 25 cycles per bit: even and odd halves of a bit).
@pytest.mark.parametrize("board", ["min", *BOARDS])
def test_uart_bench(board: str, waves: bool) -> None:
    cfg = ArrayConfig(rows=1, cols=1)
    sim = SimBoard(cfg, divisor=MIN_DIVISOR) if board == "min" else SimBoard.at_baud(cfg, board)
    run_board_bench("uart", sim, waves=waves)
