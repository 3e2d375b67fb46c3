"""The board's top level: UART, link controller and accelerator.

BoardCore is everything on the chip but the pins' I/O buffers and the clock: the Verilator
end-to-end test (boards/board_sim.py) simulates exactly this component, UART pins included, so
what is proven there is what BoardTop puts on the FPGA. BoardTop adds what a platform supplies:
the board clock, the UART pins and an LED.
"""

from __future__ import annotations

from amaranth.build import ResourceError
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out

from ..golden.config import ArrayConfig
from ..hdl.os_top import OsAccelerator
from ..hdl.ws_top import WsAccelerator
from .link import LinkController, LinkParams
from .os_mem import OsBoardMemory
from .protocol import DEFAULT_BAUD
from .uart import UARTRx, UARTTx, divisor_for

__all__ = ["DEFAULT_BAUD", "BoardCore", "BoardTop"]


class BoardCore(wiring.Component):
    """UART (8N1, `divisor` clocks per bit) + LinkController + the accelerator (WsAccelerator,
    or OsAccelerator with the on-chip memory behind its port, boards/os_mem.py).

    `led` toggles on every good frame the link receives.
    """

    def __init__(self, cfg: ArrayConfig, *, divisor: int, link: LinkParams | None = None) -> None:
        if cfg.dataflow not in ("ws", "os"):
            raise ValueError(f"board tops carry the ws or os accelerator; "
                             f"ArrayConfig.dataflow={cfg.dataflow!r} is not available on a board")
        self.cfg = cfg
        self.divisor = divisor
        self.link = link or LinkParams()
        # Built here, not in elaborate, so a config the link cannot address fails on construction.
        self._link = LinkController(cfg, self.link)
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "led": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.uart_rx = urx = UARTRx(self.divisor)
        m.submodules.uart_tx = utx = UARTTx(self.divisor)
        m.submodules.link = link = self._link
        wiring.connect(m, urx.data, link.rx)
        wiring.connect(m, link.tx, utx.data)
        if self.cfg.dataflow == "os":
            # The os top's memory is on-chip RAM, which the host fills over the link as bus
            # region 1 (boards/os_mem.py).
            m.submodules.acc = acc = OsAccelerator(self.cfg)
            m.submodules.os_mem = os_mem = OsBoardMemory(self.cfg)
            wiring.connect(m, link.bus, os_mem.host)
            wiring.connect(m, os_mem.acc, acc.bus)
            wiring.connect(m, acc.mem, os_mem.port)
        else:
            m.submodules.acc = acc = WsAccelerator(self.cfg)
            wiring.connect(m, link.bus, acc.bus)
        m.d.comb += [
            urx.rx.eq(self.rx),
            self.tx.eq(utx.tx),
            link.rx_error.eq(urx.framing_error),
            link.acc_busy.eq(acc.busy),
            self.led.eq(link.frames),
        ]
        return m


class BoardTop(Elaboratable):
    """BoardCore on a platform: its default clock, `uart` 0 and `led` 0 (when it has one)."""

    def __init__(self, cfg: ArrayConfig, *, baud: int = DEFAULT_BAUD,
                 link: LinkParams | None = None) -> None:
        self.cfg = cfg
        self.baud = baud
        self.link = link or LinkParams()

    def elaborate(self, platform) -> Module:
        if platform is None:
            raise TypeError("BoardTop needs a platform (boards.platforms); simulate BoardCore")
        m = Module()
        divisor = divisor_for(platform.default_clk_frequency, self.baud)
        m.submodules.core = core = BoardCore(self.cfg, divisor=divisor, link=self.link)
        # Raw ports and explicit buffers (Amaranth 0.5 style); the pins' polarity (the
        # iCEBreaker's LEDs are active low) is part of the port, so the buffers honour it.
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx_buf = rx_buf = io.Buffer("i", uart.rx)
        m.submodules.tx_buf = tx_buf = io.Buffer("o", uart.tx)
        m.d.comb += [core.rx.eq(rx_buf.i), tx_buf.o.eq(core.tx)]
        try:
            led = platform.request("led", 0, dir="-")
        except ResourceError:   # a board without LEDs simply shows nothing
            led = None
        if led is not None:
            m.submodules.led_buf = led_buf = io.Buffer("o", led)
            m.d.comb += led_buf.o.eq(core.led)
        return m
