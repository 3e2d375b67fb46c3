"""8N1 UART receiver and transmitter, with stream interfaces (amaranth.lib.stream).

Both are parameterised by `divisor`, the number of clock cycles per bit (clock / baud, rounded):
12 MHz / 1,000,000 baud gives 12 exactly; 12 MHz / 115200 gives 104 (0.16 % fast, well inside the
~2 % an 8N1 link tolerates). Which rates a board makes is decided in one place,
boards/platforms.Board.divisor.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

# The receiver samples each bit once, d // 2 cycles after it sees the start edge through a
# two-flop synchroniser (up to 3 cycles late): below 4 cycles per bit that lands on the edge.
MIN_DIVISOR = 4
# 10 bits per frame, sampled mid-bit: the receiver drifts half a bit after ~5 % total error;
# keep our own share to 2 % so the other end's clock error still fits.
MAX_BAUD_ERROR = 0.02


def baud_error(clock_hz: float, baud: int) -> float:
    """Relative error of the rate a whole-cycle divisor of `clock_hz` makes against `baud`."""
    divisor = max(1, round(clock_hz / baud))
    return abs(clock_hz / divisor - baud) / baud


def divisor_for(clock_hz: float, baud: int) -> int:
    """Clock cycles per bit; raises if the rounding error would break an 8N1 link."""
    if baud <= 0:
        raise ValueError(f"baud must be > 0, got {baud}")
    divisor = round(clock_hz / baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"a {clock_hz / 1e6:g} MHz clock cannot run {baud} baud: "
                         f"needs at least {MIN_DIVISOR} cycles per bit, got {clock_hz / baud:.2f}")
    error = baud_error(clock_hz, baud)
    if error > MAX_BAUD_ERROR:
        raise ValueError(f"{baud} baud from a {clock_hz / 1e6:g} MHz clock is {error:.1%} off "
                         f"(more than {MAX_BAUD_ERROR:.0%}); choose another baud rate")
    return divisor


def _check_divisor(divisor: int) -> None:
    if not isinstance(divisor, int) or divisor < MIN_DIVISOR:
        raise ValueError(f"UART divisor must be an integer >= {MIN_DIVISOR}, got {divisor!r}")


class UARTTx(wiring.Component):
    """Sends each byte taken from `data` as start bit, 8 data bits LSB first, stop bit.

    `tx` idles high; `data.ready` is high whenever the shifter is empty, so a byte offered
    back to back follows the previous stop bit with no idle gap.
    """

    def __init__(self, divisor: int) -> None:
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__({
            "data": In(stream.Signature(8)),
            "tx": Out(1, init=1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        shreg = Signal(10, init=0x3FF)   # stop, data[7:0], start; shifted out LSB first
        bits_left = Signal(range(11))
        timer = Signal(range(self.divisor))

        m.d.comb += [self.tx.eq(shreg[0]), self.data.ready.eq(bits_left == 0)]
        with m.If(bits_left == 0), m.If(self.data.valid):
            m.d.sync += [
                shreg.eq(Cat(0, self.data.payload, 1)),
                bits_left.eq(10),
                timer.eq(self.divisor - 1),
            ]
        with m.Elif(timer == 0):
            m.d.sync += [
                shreg.eq(Cat(shreg[1:], 1)),
                bits_left.eq(bits_left - 1),
                timer.eq(self.divisor - 1),
            ]
        with m.Else():
            m.d.sync += timer.eq(timer - 1)
        return m


class UARTRx(wiring.Component):
    """Receives 8N1 bytes from `rx` into the `data` stream.

    `rx` passes a two-flop synchroniser (it comes from another clock domain and may go
    metastable). Each bit is sampled once in its middle, counted from the start bit's falling
    edge; a start bit that is no longer low at its middle is a glitch and ignored. A byte whose
    stop bit is low is not delivered: `framing_error` pulses instead, and the receiver waits for
    the line to go idle (high) before looking for the next start bit, so a break or a baud
    mismatch cannot make it spin on garbage. A byte that completes while the previous one is
    still unconsumed is dropped and pulses `overrun`.
    """

    def __init__(self, divisor: int) -> None:
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__({
            "rx": In(1, init=1),
            "data": Out(stream.Signature(8)),
            "framing_error": Out(1),
            "overrun": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        d = self.divisor
        rx = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, rx, init=1)

        timer = Signal(range(d))
        bit = Signal(range(8))
        shreg = Signal(8)

        with m.If(self.data.valid & self.data.ready):
            m.d.sync += self.data.valid.eq(0)

        with m.FSM():
            with m.State("IDLE"), m.If(~rx):
                m.d.sync += timer.eq(d // 2 - 1)
                m.next = "START"
            with m.State("START"):
                with m.If(timer == 0):
                    with m.If(rx):
                        m.next = "IDLE"        # a glitch, not a start bit
                    with m.Else():
                        m.d.sync += [timer.eq(d - 1), bit.eq(0)]
                        m.next = "DATA"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("DATA"):
                with m.If(timer == 0):
                    m.d.sync += [shreg.eq(Cat(shreg[1:], rx)), timer.eq(d - 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
                    with m.Else():
                        m.d.sync += bit.eq(bit + 1)
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("STOP"):
                with m.If(timer == 0):
                    with m.If(rx):
                        with m.If(self.data.valid & ~self.data.ready):
                            m.d.comb += self.overrun.eq(1)
                        with m.Else():
                            m.d.sync += [self.data.payload.eq(shreg), self.data.valid.eq(1)]
                        m.next = "IDLE"
                    with m.Else():
                        m.d.comb += self.framing_error.eq(1)
                        m.next = "BREAK"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("BREAK"), m.If(rx):
                m.next = "IDLE"
        return m


class UARTLoop(wiring.Component):
    """A transmitter and a receiver side by side with separate pins: the unit the cocotb bench
    tests (sim/bench_uart.py drives `rx` and `tx_data`, and watches `tx` and `rx_data`)."""

    def __init__(self, divisor: int) -> None:
        self.divisor = divisor
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "tx_data": In(stream.Signature(8)),
            "rx_data": Out(stream.Signature(8)),
            "framing_error": Out(1),
            "overrun": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.tx = tx = UARTTx(self.divisor)
        m.submodules.rx = rx = UARTRx(self.divisor)
        wiring.connect(m, wiring.flipped(self.tx_data), tx.data)
        wiring.connect(m, rx.data, wiring.flipped(self.rx_data))
        m.d.comb += [
            self.tx.eq(tx.tx),
            rx.rx.eq(self.rx),
            self.framing_error.eq(rx.framing_error),
            self.overrun.eq(rx.overrun),
        ]
        return m
