"""The boards tritium builds for: amaranth-boards platforms plus what tritium needs to know.

Pins, clocks and I/O standards come from amaranth-boards (PyPI), which has the boards' real
assignments: iCEBreaker's 12 MHz clock on pin 35 and its FTDI UART on pins 6 (rx) / 9 (tx);
ULX3S's 25 MHz clock on G2 and its FTDI UART on M1 (rx) / L4 (tx).

Default arrays are the largest measured to fit each device (yowasp Yosys 0.70 + nextpnr
0.11), whole board top included (UART, link buffers, 64-bit counters), with acc_bits=22 and
act_depth=64:

  iCEBreaker (5280 LCs)  4x4: 3750 LC (71 %), 21.6 MHz    4x6: 4664 LC (88 %), 20.3 MHz
                         4x8: placement needs 5582 LCs    8x4: placement needs 5627 LCs
                         (`tritium build`: synthesis, place and route)
  ULX3S (83640 LUT4)     16x16: 25.2k LUT4 (30 %)    29x29: 76.7k LUT4 (91.7 %), 12 DP16KD
                         accelerator top alone, LUTs counting carry cells: 29x29 79.0k,
                         30x30 84.3k (over) (`tritium build --synth-only`, hdl.synth.
                         largest_fitting); place and route of 29x29 not yet run to the end:
                         an ECP5 nextpnr run in WebAssembly took over 25 minutes for 16x16

Each column costs more than a row (its output bank's accumulate adder and read mux), which is
why 4x8 and 8x4 differ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..golden.config import ArrayConfig
from .link import LinkParams


class BoardError(ValueError):
    """An unknown board, or a request the board cannot satisfy."""


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    family: str                        # "ice40" or "ecp5": picks the tools
    device: str                        # hdl/synth.py's device name
    clock_hz: float
    capacity: dict[str, int]           # synthesis cell type -> how many the device has
    default_array: ArrayConfig
    link: LinkParams
    bitstream_ext: str                 # ".bin" (iCE40) or ".bit" (ECP5)
    loader_board: str                  # openFPGALoader's -b name (`openFPGALoader --list-boards`)
    _platform: Callable[[], object]

    def platform(self):
        """A fresh amaranth-boards platform object (they carry per-build state)."""
        return self._platform()


def _icebreaker():
    from amaranth_boards.icebreaker import ICEBreakerPlatform

    return ICEBreakerPlatform()


def _ulx3s():
    from amaranth_boards.ulx3s import ULX3S_85F_Platform

    return ULX3S_85F_Platform()


# Accumulators of 22 bits hold any K up to 16383 (golden.safe_k), enough for every BitNet
# 2B-4T matmul (K <= 6912), and save a third of the PE adders against 32 bits.
BOARDS: dict[str, Board] = {
    "icebreaker": Board(
        name="icebreaker",
        description="1BitSquared iCEBreaker (Lattice iCE40UP5K-SG48, 12 MHz)",
        family="ice40",
        device="ice40-up5k",
        clock_hz=12e6,
        capacity={"LC": 5280, "SB_RAM40_4K": 30, "SB_MAC16": 8},
        default_array=ArrayConfig(rows=4, cols=6, acc_bits=22, act_depth=64, weight_tiles=2,
                                  max_k=8192, clock_mhz=12.0),
        link=LinkParams(req_bytes=512, max_reads=64),
        bitstream_ext=".bin",
        # openFPGALoader has no "icebreaker" entry: the iCEBreaker's FT2232H programmer is its
        # generic iCE40 board, which writes the SPI flash (the bitstream survives power-off).
        loader_board="ice40_generic",
        _platform=_icebreaker,
    ),
    "ulx3s": Board(
        name="ulx3s",
        description="Radiona ULX3S (Lattice ECP5 LFE5U-85F-6BG381C, 25 MHz)",
        family="ecp5",
        device="ecp5-85k",
        clock_hz=25e6,
        capacity={"LUT4": 83640, "TRELLIS_FF": 83640, "DP16KD": 208, "MULT18X18D": 156},
        default_array=ArrayConfig(rows=29, cols=29, acc_bits=22, act_depth=64,
                                  weight_tiles=2, max_k=8192, clock_mhz=25.0),
        link=LinkParams(req_bytes=1024, max_reads=256),
        bitstream_ext=".bit",
        loader_board="ulx3s",
        _platform=_ulx3s,
    ),
}


def get_board(name: str) -> Board:
    try:
        return BOARDS[name]
    except KeyError:
        raise BoardError(f"unknown board {name!r}; expected one of {', '.join(BOARDS)}") from None
