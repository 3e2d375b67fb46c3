"""The weight store: on-chip memory next to the array that holds a model's ternary weights, so
they cross the link once (boards/PROTOCOL.md, "Resident weights").

How big it is comes from one definition, `store_budget`: the device's memory blocks (hdl/fpga
DEVICES' BRAM capacity; the UP5K's SPRAM below) minus what the rest of the board top already
takes, read off the elaborated design itself (every Amaranth memory of the accelerator and the
link, counted as block RAM even where Yosys would put it in LUTs, so the estimate errs towards
leaving room). The host never guesses: the board reports the store's size in its IDENT answer.

- ECP5 (ULX3S, LFE5U-85F): the store is an Amaranth Memory, which Yosys maps onto DP16KD
  block RAMs (512 x 36 each, 32 bits of a word used).
- iCE40UP5K (iCEBreaker): the store is the four SB_SPRAM256KA single-port RAMs (16 K x 16
  each, 128 KB together), instantiated directly: Yosys only infers them with `-spram`, and the
  block RAMs are the array's and the link's.

WeightStore is single-ported (the link either writes or reads it in a cycle), which is what
SPRAM is; the read data appears the cycle after the address, as from any synchronous RAM.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from amaranth.hdl import (
    ClockSignal,
    Const,
    Fragment,
    Instance,
    Module,
    Mux,
    Shape,
    Signal,
    unsigned,
)
from amaranth.hdl._mem import MemoryInstance  # the elaborated form of lib.memory.Memory
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..golden.config import ArrayConfig
from ..hdl.fpga import get_device

WORD_BITS = 32


@dataclass(frozen=True)
class BlockGeometry:
    """One kind of RAM block: the (depth, width) shapes it can take."""

    cell: str
    shapes: tuple[tuple[int, int], ...]

    def blocks(self, depth: int, width: int) -> int:
        """Blocks a depth x width memory takes in the best of the block's shapes."""
        return min(-(-width // w) * -(-depth // d) for d, w in self.shapes)

    def words(self, blocks: int, width: int = WORD_BITS) -> int:
        """The deepest width-bit memory `blocks` blocks hold."""
        return max(blocks // -(-width // w) * d for d, w in self.shapes)


# Block RAM shapes by FPGA family (Lattice's ECP5 and iCE40 memory guides).
BLOCK_RAM = {
    "ecp5": BlockGeometry("DP16KD", ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18),
                                     (512, 36))),
    "ice40": BlockGeometry("SB_RAM40_4K", ((2048, 2), (1024, 4), (512, 8), (256, 16))),
}

# Single-port RAMs beside the block RAM: the iCE40UP5K's four 256 Kbit SPRAMs.
SPRAM_DEPTH, SPRAM_WIDTH = 16384, 16
SPRAM_BLOCKS = {"ice40-up5k": 4}


def design_memories(component) -> list[tuple[str, int, int]]:
    """(path, depth, width) of every memory in an elaborated Amaranth design."""
    found: list[tuple[str, int, int]] = []

    def walk(frag, path: str) -> None:
        if isinstance(frag, MemoryInstance):
            found.append((path, frag._data.depth, Shape.cast(frag._data.shape).width))
        for sub, name, *_ in frag.subfragments:
            walk(sub, f"{path}/{name}")

    walk(Fragment.get(component, None), "")
    return found


@dataclass(frozen=True)
class StoreBudget:
    """How many 32-bit weight words the board top can keep next to the array, and why."""

    kind: str            # "bram", "spram" or "none"
    words: int
    memory_blocks: int   # blocks of that kind on the device
    design_blocks: int   # blocks the array and the link take (0 for SPRAM: they use none)
    store_blocks: int
    detail: str

    def as_dict(self) -> dict[str, int | str]:
        return {"kind": self.kind, "words": self.words, "memory_blocks": self.memory_blocks,
                "design_blocks": self.design_blocks, "store_blocks": self.store_blocks,
                "detail": self.detail}


# Block RAMs left unused for the place-and-route's sake (memory tiles sit in rows; a full
# row forces long routes from the array).
BRAM_RESERVE_PCT = 10


@functools.lru_cache(maxsize=16)
def store_budget(device: str, cfg: ArrayConfig, req_bytes: int, max_reads: int) -> StoreBudget:
    """The weight store a board top with this array and link buffers has room for."""
    from .link import LinkParams
    from .top import BoardCore

    dev = get_device(device)
    if cfg.dataflow != "ws":
        # os streams every weight from the memory behind its port (boards/os_mem.py), which
        # the host fills over the link: that memory is its on-chip weight store already.
        return StoreBudget("none", 0, 0, 0, 0,
                           f"the {cfg.dataflow} dataflow streams its weights from its port "
                           "memory (dram_words); the resident store is for ws")
    if device in SPRAM_BLOCKS:
        n = SPRAM_BLOCKS[device]
        # Pairs of 16-bit SPRAMs make 32-bit words.
        words = n // (WORD_BITS // SPRAM_WIDTH) * SPRAM_DEPTH
        return StoreBudget("spram", words, n, 0, n,
                           f"{n} SB_SPRAM256KA ({n * SPRAM_DEPTH * SPRAM_WIDTH // 8192} KB); "
                           f"the block RAMs stay the array's and the link's")
    geometry = BLOCK_RAM[dev.family]
    capacity = next(r.capacity for r in dev.resources if r.key == "bram")
    # The UART divisor changes no memory; any legal one will do.
    core = BoardCore(cfg, divisor=25, link=LinkParams(req_bytes=req_bytes, max_reads=max_reads))
    used = sum(geometry.blocks(d, w) for _, d, w in design_memories(core))
    free = capacity - used - -(-capacity * BRAM_RESERVE_PCT // 100)
    if free <= 0:
        return StoreBudget("none", 0, capacity, used, 0,
                           f"the array and link take {used} of {capacity} {geometry.cell}")
    words = geometry.words(free)
    return StoreBudget("bram", words, capacity, used, geometry.blocks(words, WORD_BITS),
                       f"{geometry.blocks(words, WORD_BITS)} of {capacity} {geometry.cell} "
                       f"(the array and link take at most {used}, {BRAM_RESERVE_PCT} % kept "
                       f"free)")


class WeightStore(wiring.Component):
    """`words` 32-bit words, one port: `we` writes `wdata` at `addr`, otherwise `rdata` shows
    the word at last cycle's `addr`."""

    def __init__(self, words: int) -> None:
        if not 1 <= words < 1 << 24:
            raise ValueError(f"the weight store holds 1..{(1 << 24) - 1} words, got {words}")
        self.words = words
        super().__init__({
            "addr": In(range(words)),
            "wdata": In(WORD_BITS),
            "we": In(1),
            "rdata": Out(WORD_BITS),
        })

    def elaborate(self, platform) -> Module:
        device = getattr(platform, "device", None)
        if device == "iCE40UP5K":
            return self._spram()
        m = Module()
        m.submodules.mem = mem = Memory(shape=unsigned(WORD_BITS), depth=self.words, init=[])
        wr = mem.write_port()
        rd = mem.read_port(transparent_for=())
        m.d.comb += [wr.addr.eq(self.addr), wr.data.eq(self.wdata), wr.en.eq(self.we),
                     rd.addr.eq(self.addr), rd.en.eq(1), self.rdata.eq(rd.data)]
        return m

    def _spram(self) -> Module:
        m = Module()
        lanes = WORD_BITS // SPRAM_WIDTH
        banks = -(-self.words // SPRAM_DEPTH)
        if banks * lanes > SPRAM_BLOCKS["ice40-up5k"]:
            raise ValueError(f"{self.words} words need {banks * lanes} SPRAMs; the UP5K has "
                             f"{SPRAM_BLOCKS['ice40-up5k']}")
        addr = Signal(max(15, len(self.addr)))
        m.d.comb += addr.eq(self.addr)
        bank = addr[14:]
        last_bank = Signal.like(bank)
        m.d.sync += last_bank.eq(bank)
        outs = []
        for b in range(banks):
            out = Signal(WORD_BITS, name=f"bank{b}")
            outs.append(out)
            for lane in range(lanes):
                sl = slice(lane * SPRAM_WIDTH, (lane + 1) * SPRAM_WIDTH)
                m.submodules[f"spram{b}_{lane}"] = Instance(
                    "SB_SPRAM256KA",
                    i_ADDRESS=addr[:14], i_DATAIN=self.wdata[sl], i_MASKWREN=Const(0xF, 4),
                    i_WREN=self.we & (bank == b), i_CHIPSELECT=Const(1, 1),
                    i_CLOCK=ClockSignal(),
                    i_STANDBY=Const(0, 1), i_SLEEP=Const(0, 1), i_POWEROFF=Const(1, 1),
                    o_DATAOUT=out[sl])
        data = outs[0]
        for b in range(1, banks):
            data = Mux(last_bank == b, outs[b], data)
        m.d.comb += self.rdata.eq(data)
        return m
