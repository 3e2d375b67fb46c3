"""The os top's memory port and what serves it: timing, and the exact cycles of a start.

The os top (hdl/os_top.py) keeps no memory of its own beyond the activation buffer. It reads
rows of B = dram_bytes_per_cycle bytes through a read port and writes result rows through a
write port, each a valid/ready stream (a transfer happens in a cycle where both are high):

  rd_addr/rd_valid -> rd_ready     read requests, one row address each, in stream order
  rsp_data/rsp_valid -> rsp_ready  read responses, in request order
  wr_addr/wr_data/wr_valid -> wr_ready   result rows

The top raises rd_valid while it has rows left to ask for (it asks ahead, as far as the
server lets it), rsp_ready while its current beat is a load or compute beat, and wr_valid
while it is a drain beat; none of them looks at the other side's valid or ready. A beat
fires when its transfer happens, so the top runs exactly as fast as its memory.

What serves the port (the Verilator harness sim/cpp/mem_port.h, the cocotb bench
sim/bench_os.py) follows PortTiming, and so does `start_cycles` here, cycle for cycle:

  * it holds at most `depth` requests it has accepted and not yet answered;
  * a request accepted in cycle c is answered from cycle c + 1 + latency on, in order;
  * it accepts a request only with a whole row of bandwidth credit: the credit gains
    `bytes_per_cycle` every cycle up to one row (B bytes), and a request spends B;
  * with `stall_ppm` > 0 it also refuses requests in the cycles stall(seed, i) marks, where i
    counts the cycles since the start began (0 in its first busy cycle): a deterministic
    pseudo-random pattern (splitmix64, `stalled`), so the model needs no trace;
  * it takes a result row in every cycle (wr_ready = 1): results are < 1 % of the traffic;
  * a cycle that follows an idle one (busy low) begins with i = 0 and full credit, and the
    server is empty then (a start asks only for rows it consumes), so every start does.

With no stalls, full bandwidth and depth >= latency + 2 (the default), a start takes its
beats plus 1 + latency cycles: the first request goes out in the first busy cycle and is
answered latency + 1 cycles later, and from then on the server keeps a response ready for
every load and compute beat (it fills up during drains). `start_cycles` simulates the
general case beat by beat.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .checks import InputError
from .config import ArrayConfig

MASK64 = (1 << 64) - 1
PPM = 1_000_000


@dataclass(frozen=True)
class PortTiming:
    """How the memory behind the os top's port answers (see the module docstring).

    latency: cycles a response arrives after the minimum of one (0 = the next cycle).
    bytes_per_cycle: read bandwidth; None is one whole row (B bytes) per cycle.
    stall_ppm: refused request cycles per million (random back-pressure), from `seed`.
    depth: requests the server holds at most; None is latency + 2 (enough for full rate).
    """

    latency: int = 0
    bytes_per_cycle: int | None = None
    stall_ppm: int = 0
    seed: int = 0
    depth: int | None = None

    def __post_init__(self) -> None:
        for name, low in (("latency", 0), ("stall_ppm", 0), ("seed", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise InputError(f"PortTiming.{name} must be an integer >= {low}, got {v!r}")
        if self.stall_ppm >= PPM:
            raise InputError(f"PortTiming.stall_ppm must be below {PPM} (always stalled "
                             f"never finishes), got {self.stall_ppm}")
        if self.seed > MASK64:
            raise InputError(f"PortTiming.seed must fit 64 bits, got {self.seed}")
        for name in ("bytes_per_cycle", "depth"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise InputError(f"PortTiming.{name} must be None or an integer >= 1, "
                                 f"got {v!r}")

    def rate(self, cfg: ArrayConfig) -> int:
        """Bytes of credit per cycle, at most one row."""
        b = cfg.dram_bytes_per_cycle
        return b if self.bytes_per_cycle is None else min(self.bytes_per_cycle, b)

    def capacity(self) -> int:
        return self.latency + 2 if self.depth is None else self.depth

    @property
    def ideal(self) -> bool:
        """No stalls, full rate and enough depth: the closed form holds."""
        return (self.stall_ppm == 0 and self.bytes_per_cycle is None
                and self.capacity() >= self.latency + 2)


IDEAL = PortTiming()


def splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def stalled(timing: PortTiming, i: int) -> bool:
    """Whether the server refuses requests in cycle i of a start (the C++ harness agrees)."""
    if not timing.stall_ppm:
        return False
    return splitmix64(timing.seed ^ (i * 0xD1B54A32D192ED03 & MASK64)) % PPM < timing.stall_ppm


def start_cycles(cfg: ArrayConfig, beats: list[tuple[bool, int]], timing: PortTiming,
                 *, closed_form: bool = True) -> int:
    """Busy cycles of one start whose beats are `beats`: runs of (reads?, count), reads being
    load or compute beats (one response each) and the others drain beats (one result row).
    Simulated cycle by cycle against the server of PortTiming (unless the timing is ideal and
    closed_form allows the shortcut; both agree, tests/test_os_port.py checks it)."""
    total_reads = sum(count for reads, count in beats if reads)
    if timing.ideal and closed_form:
        return sum(count for _, count in beats) + 1 + timing.latency
    row, rate, depth = cfg.dram_bytes_per_cycle, timing.rate(cfg), timing.capacity()
    pending: deque[int] = deque()       # cycle from which each accepted request is answered
    asked = 0
    credit = row
    cycle = 0
    for reads, count in beats:
        left = count
        while left:
            ready = (not stalled(timing, cycle) and credit >= row and len(pending) < depth)
            answered = bool(pending) and pending[0] <= cycle
            spend = 0
            if asked < total_reads and ready:
                pending.append(cycle + 1 + timing.latency)
                asked += 1
                spend = row
            if not reads or answered:
                left -= 1
                if reads:
                    pending.popleft()
            credit = min(credit - spend + rate, row)
            cycle += 1
    return cycle
