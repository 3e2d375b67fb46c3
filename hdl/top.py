"""What every accelerator top shares, whatever its dataflow: the host bus, the common CSRs,
start/status control, the 64-bit performance counters and the bus read path.

A dataflow's top subclasses AcceleratorTop and describes only its own part in
elaborate_dataflow: its buffers, its sequencer, which CSRs it adds, when a start is legal,
when the run ends and what the counters count (bus/contract.py has the contract).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..bus.contract import (
    COUNTER_BITS,
    COUNTER_CSRS,
    COUNTERS,
    MAGIC,
    VERSION,
    Csr,
    Region,
    RegMapBase,
)
from ..golden.config import BUS_BITS, ArrayConfig
from ..golden.dataflows import dataflow

__all__ = ["COUNTER_BITS", "AcceleratorTop", "Control", "accelerator_signature",
           "bus_signature"]


def bus_signature(addr_bits: int) -> wiring.Signature:
    """Word-addressed host bus; reads return one cycle after `re` (see bus/contract.py)."""
    return wiring.Signature({
        "addr": Out(addr_bits),
        "wdata": Out(BUS_BITS),
        "we": Out(1),
        "re": Out(1),
        "rdata": In(BUS_BITS),
        "rvalid": In(1),
    })


def accelerator_signature(addr_bits: int) -> wiring.Signature:
    """The ports every accelerator top has, whatever its dataflow: harnesses drive any of them."""
    return wiring.Signature({
        "bus": In(bus_signature(addr_bits)),
        "busy": Out(1),
        "done": Out(1),
    })


class Control:
    """The shared control block of one top, built into Module m.

    The dataflow uses: region/offset (address decode), busy/done/error, start_req/start_ok,
    ctrl_we, register() for its host-writable CSRs, csr() for read-only ones, count() for the
    counters' increments, finish() when a run ends, on_read() and region_data for the read path.
    """

    def __init__(self, m: Module, bus, rm: RegMapBase, ident: int) -> None:
        self.m, self.bus, self.rm = m, bus, rm
        self.region = bus.addr[rm.region_bits :]
        self.offset = bus.addr[: rm.region_bits]
        self.busy = Signal()
        self.done = Signal()
        self.error = Signal()
        self.csr_we = bus.we & (self.region == Region.CSR)
        self.ctrl_we = self.csr_we & (self.offset == Csr.CTRL)
        self.start_req = self.ctrl_we & bus.wdata[0]
        self.start_ok = Signal()
        self._reads: dict[int, Value] = {
            Csr.ID: MAGIC, Csr.VERSION: VERSION, Csr.DATAFLOW: ident,
            **dict(zip(rm.config_csrs(), rm.config_words(), strict=True)),
            Csr.STATUS: Cat(self.busy, self.done, self.error),
        }
        self._increments: dict[str, list[Value]] = {"tiles": [], "macs": [], "zero_skips": []}
        self._latched: list[tuple[Signal, Value]] = []
        self.region_data: dict[Region, Value] = {}

    def allow_start(self, legal: Value) -> None:
        """A CTRL.start write starts a run when idle and `legal`; otherwise it flags error."""
        m = self.m
        m.d.comb += self.start_ok.eq(self.start_req & ~self.busy & legal)
        with m.If(self.start_ok):
            m.d.sync += [self.busy.eq(1), self.done.eq(0), self.error.eq(0)]
        with m.Elif(self.start_req & ~self.busy):
            m.d.sync += self.error.eq(1)

    def finish(self) -> None:
        """Call under the condition that ends a run (in the last busy cycle)."""
        self.m.d.sync += [self.busy.eq(0), self.done.eq(1)]

    def register(self, reg: int, width: int, name: str | None = None, init: int = 0) -> Signal:
        """A CSR the host writes (whole words, truncated to width) and reads back."""
        sig = Signal(width, name=name or f"csr{int(reg)}", init=init)
        with self.m.If(self.csr_we & (self.offset == reg)):
            self.m.d.sync += sig.eq(self.bus.wdata)
        self._reads[reg] = sig
        return sig

    def csr(self, reg: int, value: Value | int) -> None:
        """A read-only CSR."""
        self._reads[reg] = value

    def count(self, counter: str, amount: Value | int) -> None:
        """Add `amount` to a performance counter ("tiles", "macs", "zero_skips") every cycle."""
        self._increments[counter].append(amount)

    def on_read(self, sig: Signal, value: Value) -> None:
        """Latch value into sig when a read is issued, for the region data of the next cycle."""
        self._latched.append((sig, value))

    def elaborate(self) -> None:
        """The counters and the read path; call after the dataflow has said its part."""
        m, bus, offset = self.m, self.bus, self.offset
        counters = {name: Signal(COUNTER_BITS, name=name) for name in COUNTERS}
        with m.If(self.ctrl_we & bus.wdata[2]):       # CTRL.clear
            m.d.sync += [cnt.eq(0) for cnt in counters.values()]
        with m.Else():
            m.d.sync += [
                counters["cycles"].eq(counters["cycles"] + 1),
                counters["busy_cycles"].eq(counters["busy_cycles"] + self.busy),
            ]
            for name, amounts in self._increments.items():
                total = counters[name]
                for amount in amounts:
                    total = total + amount
                if amounts:
                    m.d.sync += counters[name].eq(total)

        csr_value = Signal(BUS_BITS)
        hi_shadow = Signal(BUS_BITS)
        with m.Switch(offset):
            for reg, value in self._reads.items():
                with m.Case(reg):
                    m.d.comb += csr_value.eq(value)
            for name, lo in zip(COUNTERS, COUNTER_CSRS, strict=True):
                with m.Case(lo):
                    m.d.comb += csr_value.eq(counters[name][:32])
                with m.Case(lo + 1):
                    m.d.comb += csr_value.eq(hi_shadow)

        rd_region = Signal(2)
        rd_csr = Signal(BUS_BITS)
        m.d.sync += bus.rvalid.eq(bus.re)
        with m.If(bus.re):
            m.d.sync += [rd_region.eq(self.region), rd_csr.eq(csr_value)]
            m.d.sync += [sig.eq(value) for sig, value in self._latched]
            with m.If(self.region == Region.CSR):
                # Reading a counter's LO word latches its HI word, so LO then HI is one value.
                for name, lo in zip(COUNTERS, COUNTER_CSRS, strict=True):
                    with m.If(offset == lo):
                        m.d.sync += hi_shadow.eq(counters[name][32:])
        with m.Switch(rd_region):
            with m.Case(Region.CSR):
                m.d.comb += bus.rdata.eq(rd_csr)
            for region, value in self.region_data.items():
                with m.Case(region):
                    m.d.comb += bus.rdata.eq(value)


class AcceleratorTop(wiring.Component):
    """Base of every dataflow's top: the ports, the register map and the Control block."""

    dataflow: str = "?"

    def __init__(self, cfg: ArrayConfig) -> None:
        self.cfg = cfg
        self.map = dataflow(self.dataflow).load("regmap")(cfg)
        super().__init__(accelerator_signature(self.map.addr_bits))

    def elaborate(self, platform) -> Module:
        m = Module()
        ctl = Control(m, self.bus, self.map, dataflow(self.dataflow).ident)
        m.d.comb += [self.busy.eq(ctl.busy), self.done.eq(ctl.done)]
        self.elaborate_dataflow(m, ctl)
        ctl.elaborate()
        return m

    def elaborate_dataflow(self, m: Module, ctl: Control) -> None:
        raise NotImplementedError
