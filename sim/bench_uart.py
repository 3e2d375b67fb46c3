"""cocotb bench: the UART transmitter and receiver (boards/uart.py UARTLoop) at a small divisor.

The expectation is a plain Python 8N1 model: the bench bit-bangs `rx` and decodes `tx` itself,
checking each bit in the middle of its period, the exact bit period, framing errors, glitch
rejection and tolerance of a baud rate a few per cent off.
"""

from __future__ import annotations

import os

import cocotb
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from .benchutil import bench_rng, start, uint


def divisor() -> int:
    return int(os.environ["TRITIUM_DIVISOR"])


async def send_bits(dut, bits: list[int], period: int) -> None:
    for b in bits:
        dut.rx.value = b
        await ClockCycles(dut.clk, period)


def frame_bits(byte: int, stop: int = 1) -> list[int]:
    return [0, *((byte >> i) & 1 for i in range(8)), stop]


class RxMonitor:
    """Collects bytes and framing errors the receiver reports."""

    def __init__(self, dut) -> None:
        self.dut = dut
        self.bytes: list[int] = []
        self.framing_errors = 0
        self.overruns = 0
        dut.rx_data__ready.value = 1
        cocotb.start_soon(self._run())

    async def _run(self) -> None:
        while True:
            await RisingEdge(self.dut.clk)
            await ReadOnly()
            if uint(self.dut.rx_data__valid) and uint(self.dut.rx_data__ready):
                self.bytes.append(uint(self.dut.rx_data__payload))
            self.framing_errors += uint(self.dut.framing_error)
            self.overruns += uint(self.dut.overrun)


async def setup(dut):
    dut.rx.value = 1
    dut.tx_data__valid.value = 0
    dut.tx_data__payload.value = 0
    await start(dut)
    return divisor(), bench_rng()


async def offer(dut, byte: int) -> None:
    """Offer one byte on tx_data; returns just after the edge that took it."""
    dut.tx_data__payload.value = byte
    dut.tx_data__valid.value = 1
    while True:
        await ReadOnly()
        taken = uint(dut.tx_data__ready)
        await RisingEdge(dut.clk)
        if taken:
            return


async def decode_tx(dut, d: int, count: int, timeout: int = 100_000) -> list[int]:
    """Decode `count` bytes from `tx`, asserting every bit holds steady for its whole period."""
    out = []
    for _ in range(count):
        for _ in range(timeout):
            await RisingEdge(dut.clk)
            await ReadOnly()
            if uint(dut.tx) == 0:
                break
        else:
            raise AssertionError("no start bit on tx")
        levels = []
        for _ in range(10 * d - 1):
            levels.append(uint(dut.tx))
            await RisingEdge(dut.clk)
            await ReadOnly()
        levels.append(uint(dut.tx))
        bits = []
        for i in range(10):
            period = levels[i * d : (i + 1) * d]
            assert len(set(period)) == 1, f"bit {i} not steady for {d} cycles: {period}"
            bits.append(period[0])
        assert bits[0] == 0 and bits[9] == 1, f"bad start/stop bits {bits}"
        out.append(sum(b << i for i, b in enumerate(bits[1:9])))
    return out


@cocotb.test()
async def tx_sends_bytes_back_to_back(dut):
    d, rng = await setup(dut)
    data = [0x00, 0xFF, 0x55, 0xAA, 0xC0, 0xDB] + [int(x) for x in rng.integers(0, 256, 10)]
    task = cocotb.start_soon(decode_tx(dut, d, len(data)))
    for b in data:
        await offer(dut, b)
    dut.tx_data__valid.value = 0
    got = await task
    assert got == data, (got, data)


@cocotb.test()
async def rx_receives_bytes(dut):
    d, rng = await setup(dut)
    mon = RxMonitor(dut)
    data = [0x00, 0xFF, 0x55, 0xAA] + [int(x) for x in rng.integers(0, 256, 12)]
    for b in data:
        await send_bits(dut, frame_bits(b), d)
    await ClockCycles(dut.clk, 2 * d)
    assert mon.bytes == data, (mon.bytes, data)
    assert mon.framing_errors == 0


@cocotb.test()
async def rx_tolerates_baud_error(dut):
    """A sender 3 % slow or fast still decodes (bit periods stretched or shrunk)."""
    d, rng = await setup(dut)
    mon = RxMonitor(dut)
    data = [int(x) for x in rng.integers(0, 256, 8)]
    for scale in (1.03, 0.97):
        for b in data:
            # Spread the error over the frame: bit i ends at round((i+1) * d * scale).
            edges = [round((i + 1) * d * scale) for i in range(10)]
            prev = 0
            for bit, edge in zip(frame_bits(b), edges, strict=True):
                dut.rx.value = bit
                await ClockCycles(dut.clk, edge - prev)
                prev = edge
    await ClockCycles(dut.clk, 2 * d)
    assert mon.bytes == data + data


@cocotb.test()
async def rx_flags_framing_error_and_recovers(dut):
    d, _ = await setup(dut)
    mon = RxMonitor(dut)
    await send_bits(dut, frame_bits(0x3C, stop=0), d)
    # Hold the line low (a break) for a while: one framing error, no bytes, no spinning.
    await send_bits(dut, [0] * 12, d)
    dut.rx.value = 1
    await ClockCycles(dut.clk, 3 * d)
    assert mon.framing_errors == 1, mon.framing_errors
    assert mon.bytes == []
    await send_bits(dut, frame_bits(0xA5), d)
    await ClockCycles(dut.clk, 2 * d)
    assert mon.bytes == [0xA5]


@cocotb.test()
async def rx_ignores_glitch(dut):
    """A low pulse shorter than half a bit is not a start bit."""
    d, _ = await setup(dut)
    mon = RxMonitor(dut)
    dut.rx.value = 0
    await ClockCycles(dut.clk, max(1, d // 2 - 2))
    dut.rx.value = 1
    await ClockCycles(dut.clk, 12 * d)
    assert mon.bytes == [] and mon.framing_errors == 0
    await send_bits(dut, frame_bits(0x5A), d)
    await ClockCycles(dut.clk, 2 * d)
    assert mon.bytes == [0x5A]


@cocotb.test()
async def rx_holds_byte_until_ready_and_flags_overrun(dut):
    d, _ = await setup(dut)
    mon = RxMonitor(dut)
    dut.rx_data__ready.value = 0
    await send_bits(dut, frame_bits(0x11), d)
    await send_bits(dut, frame_bits(0x22), d)
    await ClockCycles(dut.clk, 2 * d)
    assert mon.overruns == 1, mon.overruns
    assert uint(dut.rx_data__valid) == 1 and uint(dut.rx_data__payload) == 0x11
    dut.rx_data__ready.value = 1
    await ClockCycles(dut.clk, 2)
    assert mon.bytes == [0x11]


@cocotb.test()
async def loopback(dut):
    """tx wired to rx by the bench: what goes out comes back."""
    d, rng = await setup(dut)
    mon = RxMonitor(dut)

    async def wire():
        while True:
            await RisingEdge(dut.clk)
            dut.rx.value = uint(dut.tx)

    cocotb.start_soon(wire())
    data = [int(x) for x in rng.integers(0, 256, 6)]
    for b in data:
        await offer(dut, b)
    dut.tx_data__valid.value = 0
    await ClockCycles(dut.clk, 12 * d)
    assert mon.bytes == data
