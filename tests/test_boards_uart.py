"""The board UART: divisor arithmetic in Python, the RTL in a cocotb bench on Verilator."""

from __future__ import annotations

import pytest

from tritium.boards.board_sim import SimBoard, run_board_bench
from tritium.boards.uart import UARTRx, divisor_for
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


@pytest.mark.parametrize("divisor", [4, 7])
def test_uart_bench(divisor: int, waves: bool) -> None:
    run_board_bench("uart", SimBoard(ArrayConfig(rows=1, cols=1), divisor=divisor), waves=waves)
