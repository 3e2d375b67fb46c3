"""The boards tritium builds for: amaranth-boards platforms plus what tritium needs to know.

Pins, clocks and I/O standards come from amaranth-boards (PyPI), which has the boards' real
assignments: iCEBreaker's 12 MHz clock on pin 35 and its FTDI UART on pins 6 (rx) / 9 (tx);
ULX3S's 25 MHz clock on G2 and its FTDI UART on M1 (rx) / L4 (tx).

Default arrays are configurations seen to place and route with the flow tritium ships
(hdl/fpga.DEVICES: yowasp Yosys 0.70 + nextpnr 0.11.1; ECP5 without timing-driven mode),
with timing met at the board clock, whole board top included (UART, link buffers, 64-bit
counters), with acc_bits=22 and act_depth=64 (BENCHMARKS.md, "Board defaults"):

  iCEBreaker (5280 LCs)   4x6: 4664 LCs (88 %), 19.9 MHz against 12 MHz
                          4x8: packing needs 5584 LCs: refused before placement
  ULX3S (83640 COMBs)     20x20: 44382 TRELLIS_COMB (53 %), 15178 FFs, 60.4 MHz against 25 MHz
                          29x29 (the old default, 95 % of Yosys' LUTs) failed placement:
                          packing needs 87921 TRELLIS_COMB (105 %)

With the weight store every top now carries (boards/store.py, sized by Board.link_for), the
iCEBreaker's 4x6 takes 5190 LCs (98.3 %) at 16.4 MHz; the ULX3S's 20x20 44908 TRELLIS_COMB
(53.7 %) and 169 DP16KD at 39.5 MHz (BENCHMARKS.md, "Resident weights").

Each column costs more than a row (its output bank's accumulate adder and read mux), which is
why 4x8 and 8x4 differ.

The UART link runs at 1 Mbaud by default on both (12 MHz / 12 and 25 MHz / 25, exact).
Board.divisor is the one check of a rate against a board: its USB bridge's limit (FT2232H:
12 Mbaud, FT231X: 3 Mbaud), the clock over MIN_DIVISOR, and the clock-divisor error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..golden.config import ArrayConfig
from ..hdl.fpga import Device, get_device
from .link import LinkParams
from .protocol import DEFAULT_BAUD
from .uart import MAX_BAUD_ERROR, MIN_DIVISOR, baud_error


class BoardError(ValueError):
    """An unknown board, or a request the board cannot satisfy."""


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    device: str                        # its entry in hdl/fpga.DEVICES: capacity and toolchain
    clock_hz: float
    default_array: ArrayConfig
    link: LinkParams
    loader_board: str                  # openFPGALoader's -b name (`openFPGALoader --list-boards`)
    usb_bridge: str                    # the USB-UART chip between the host and the FPGA
    bridge_max_baud: int               # the fastest rate that chip's datasheet gives
    _platform: Callable[[], object]
    default_baud: int = DEFAULT_BAUD

    @property
    def max_baud(self) -> int:
        """The fastest rate both the USB bridge and the UART (MIN_DIVISOR clocks per bit) make."""
        return min(self.bridge_max_baud, int(self.clock_hz // MIN_DIVISOR))

    def divisor(self, baud: int) -> int:
        """Clock cycles per bit for `baud` on this board; a rate the bridge, the clock or the
        receiver's sampler cannot make raises BoardError in one line saying what is possible."""
        possible = (f"the {self.name} makes up to {self.max_baud:,} baud ({self.usb_bridge} "
                    f"bridge, {self.clock_hz / 1e6:g} MHz clock / {MIN_DIVISOR} cycles per bit) "
                    f"at rates within {MAX_BAUD_ERROR:.0%} of {self.clock_hz / 1e6:g} MHz / "
                    f"an integer, e.g. {self.default_baud:,} (the default)")
        if not isinstance(baud, int) or baud <= 0:
            raise BoardError(f"baud must be a positive integer, got {baud!r}; {possible}")
        if baud > self.max_baud:
            raise BoardError(f"{baud:,} baud is too fast for the {self.name}: {possible}")
        divisor = round(self.clock_hz / baud)
        error = baud_error(self.clock_hz, baud)
        if error > MAX_BAUD_ERROR:
            raise BoardError(f"{baud:,} baud is {error:.1%} off on the {self.name} "
                             f"({self.clock_hz / 1e6:g} MHz / {divisor}): {possible}")
        return divisor

    def store_budget(self, cfg: ArrayConfig | None = None, req_bytes: int | None = None,
                     max_reads: int | None = None):
        """The weight store this board has room for next to `cfg` (default: its default array)
        and link buffers of these sizes (default: its own): boards.store.store_budget."""
        from .store import store_budget

        return store_budget(self.device, cfg or self.default_array,
                            self.link.req_bytes if req_bytes is None else req_bytes,
                            self.link.max_reads if max_reads is None else max_reads)

    def link_for(self, cfg: ArrayConfig | None = None, req_bytes: int | None = None,
                 max_reads: int | None = None) -> LinkParams:
        """The link this board's top is built with for `cfg`: its buffers and the weight store
        its memory has room for."""
        budget = self.store_budget(cfg, req_bytes, max_reads)
        return LinkParams(req_bytes=self.link.req_bytes if req_bytes is None else req_bytes,
                          max_reads=self.link.max_reads if max_reads is None else max_reads,
                          store_words=budget.words)

    def platform(self):
        """A fresh amaranth-boards platform object (they carry per-build state)."""
        return self._platform()

    @property
    def fpga(self) -> Device:
        return get_device(self.device)

    @property
    def bitstream_ext(self) -> str:   # `tritium flash` looks for <top><ext>
        return self.fpga.bitstream_ext


def _icebreaker():
    from amaranth_boards.icebreaker import ICEBreakerPlatform

    return ICEBreakerPlatform()


def _ulx3s():
    from amaranth_boards.ulx3s import ULX3S_85F_Platform

    return ULX3S_85F_Platform()


def _array(rows: int, cols: int, clock_hz: float) -> ArrayConfig:
    # Accumulators of 22 bits hold any K up to 16383 (golden.safe_k), enough for every BitNet
    # 2B-4T matmul (K <= 6912), and save a third of the PE adders against 32 bits.
    return ArrayConfig(rows=rows, cols=cols, acc_bits=22, act_depth=64, weight_tiles=2,
                       max_k=8192, clock_mhz=clock_hz / 1e6)


BOARDS: dict[str, Board] = {b.name: b for b in (
    Board("icebreaker", "1BitSquared iCEBreaker (Lattice iCE40UP5K-SG48, 12 MHz)",
          device="ice40-up5k", clock_hz=12e6, default_array=_array(4, 6, 12e6),
          link=LinkParams(req_bytes=512, max_reads=64),
          # openFPGALoader has no "icebreaker" entry: the iCEBreaker's FT2232H programmer is
          # its generic iCE40 board, which writes the SPI flash (kept over power-off).
          loader_board="ice40_generic", usb_bridge="FT2232H", bridge_max_baud=12_000_000,
          _platform=_icebreaker),
    Board("ulx3s", "Radiona ULX3S (Lattice ECP5 LFE5U-85F-6BG381C, 25 MHz)",
          device="ecp5-85k", clock_hz=25e6, default_array=_array(20, 20, 25e6),
          link=LinkParams(req_bytes=1024, max_reads=256),
          loader_board="ulx3s", usb_bridge="FT231X", bridge_max_baud=3_000_000,
          _platform=_ulx3s),
)}


def get_board(name: str) -> Board:
    try:
        return BOARDS[name]
    except KeyError:
        raise BoardError(f"unknown board {name!r}; expected one of {', '.join(BOARDS)}") from None
