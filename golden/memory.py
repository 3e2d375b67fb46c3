"""DRAM and on-chip buffer traffic, and the cycles a GEMM takes once memory is counted.

The compute cycles always come from the RTL-validated cycle models (golden.cycles for "ws",
golden.os_model for "os"); this module adds the one extra assumption, a DRAM that moves
`dram_bytes_per_cycle` bytes per accelerator clock, and how its transfers overlap compute.

Storage formats (DRAM side):
  weights      packed ternary at `weight_bits` per weight (2.0: the HF / bitnet.cpp I2_S
               packing; 1.6: base-3, five per byte, or about TL2's 3 weights in 5 bits),
               unpadded: only the K x N real weights
  activations  int8, act_bytes per element
  results      one 32-bit word per int32 result (out_bytes), as the host bus reads them

Weight-stationary ("ws") schedule, per golden.tiling.plan_gemm (M chunks of act_depth, then N
tiles, then K tiles innermost). For each tile:
  act load     the tile's m x k activations into the activation buffer. The RTL has one
               activation buffer that the array reads while busy, so this load is serial.
  weight load  the tile's k x n packed weights into a weight-buffer slot. With
               weight_tiles >= 2 the next tile's weights are written into the other slot while
               the current tile computes (the RTL accepts weight writes while busy), so a tile
               costs max(compute, weight load); with one slot the load is serial.
  compute      golden.cycles.tile_cycles (R cycles moving the slot into the PEs, then streaming)
  drain        after an output block's last K tile, its m x n results are read out before the
               next block overwrites the output banks: serial.
One DRAM channel serves all of it. The first weight load of a GEMM has nothing to hide under
and the last tile's compute nothing to hide, which is charged once as min(first load, last
compute): exact when consecutive tiles are the same size, off by at most an edge tile's
difference otherwise. DRAM time is fractional (an average rate, not whole bus beats).

Output-stationary / weight-streaming ("os"): golden.os_model's cycle count is exact for the
os RTL and already includes every DRAM transfer (activation load, weight stream, result
drain, serial on one channel at dram_bytes_per_cycle), so nothing is added. Its DRAM rows are
whole multiples of 4 bytes, so a fractional rate is rounded down for os (os_bytes_per_cycle),
and it streams the array's weight_packing (2-bit codes, or base-3 bytes of five weights:
ArrayConfig.weight_packing), whatever weight_bits says; os_model's stream_weight_bytes is what
it moves, row padding included.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass

from . import os_model
from .checks import InputError
from .config import MAX_DRAM_BYTES_PER_CYCLE, ArrayConfig, ConfigError
from .cycles import Events, tile_cycles, ws_gemm_events_from_nnz, ws_run_cycles
from .energy import EnergyEvents
from .tiling import run_shape

WEIGHT_CODE_BITS = 2     # bits per weight in the on-chip weight buffer and PE registers
# Bits per weight in memory of each ArrayConfig.weight_packing (golden/base3.py: 8 / 5).
PACKING_BITS = {"2bit": 2.0, "base3": 1.6}
OUT_WORD_BYTES = 4       # results cross the 32-bit bus one accumulator per word


@dataclass(frozen=True)
class MemoryConfig:
    """The DRAM side of the accelerator."""

    dram_bytes_per_cycle: float
    weight_bits: float = 2.0
    act_bytes: int = 1
    out_bytes: int = OUT_WORD_BYTES

    def __post_init__(self) -> None:
        b = self.dram_bytes_per_cycle
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b) \
                or not b > 0:
            raise ConfigError(f"MemoryConfig.dram_bytes_per_cycle must be > 0, got {b!r}")
        w = self.weight_bits
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 < w <= 8:
            raise ConfigError(f"MemoryConfig.weight_bits must be in (0, 8] bits per weight "
                              f"(2.0 for I2_S/HF packing, 1.6 for TL2), got {w!r}")

    def weight_bytes(self, weights: int | float) -> float:
        return weights * self.weight_bits / 8

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


def bytes_per_cycle(dram_gbps: float, clock_mhz: float) -> float:
    """DRAM bytes per accelerator clock from GB/s (10^9 bytes/s) and MHz."""
    for name, v in (("dram_gbps", dram_gbps), ("clock_mhz", clock_mhz)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                or not v > 0:
            raise ConfigError(f"{name} must be > 0, got {v!r}")
    return dram_gbps * 1e9 / (clock_mhz * 1e6)


@dataclass
class GemmCost:
    """One M x K x N GEMM on one dataflow: compute events, memory traffic and total cycles."""

    dataflow: str
    m: int
    k: int
    n: int
    events: Events                 # tiles, busy (compute) cycles, MACs, zero skips
    cycles: float                  # compute + exposed DRAM time
    dram_weight_bytes: float = 0.0
    dram_act_bytes: float = 0.0
    dram_out_bytes: float = 0.0
    sram_weight_bits: float = 0.0  # reads + writes of each buffer
    sram_act_bits: float = 0.0
    sram_out_bits: float = 0.0
    output_adds: int = 0
    register_write_bits: float = 0.0
    buffer_bytes: tuple[float, float, float] = (0.0, 0.0, 0.0)   # weight, act, out capacity

    @property
    def compute_cycles(self) -> int:
        return self.events.cycles

    @property
    def dram_bytes(self) -> float:
        return self.dram_weight_bytes + self.dram_act_bytes + self.dram_out_bytes

    @property
    def stall_cycles(self) -> float:
        """Cycles the array waits on DRAM (not hidden under compute)."""
        return self.cycles - self.compute_cycles

    @property
    def pe_visits(self) -> int:
        """(vector, PE) meetings: the PE-cycles that do an add or a zero skip."""
        return self.events.macs + self.events.zero_skips

    def energy_events(self, cfg: ArrayConfig) -> EnergyEvents:
        return EnergyEvents(
            pe_adds=self.events.macs, output_adds=self.output_adds, add_bits=cfg.acc_bits,
            # hdl.pes.accumulate clamps every PE add and every K-tile add into the output
            saturating_adds=(self.events.macs + self.output_adds
                             if cfg.acc_overflow == "saturate" else 0),
            register_write_bits=self.register_write_bits,
            idle_pe_cycles=max(0.0, self.cycles * cfg.pes - self.pe_visits),
            pe_register_bits=pe_register_bits(cfg),
            sram_weight_bits=self.sram_weight_bits, sram_act_bits=self.sram_act_bits,
            sram_out_bits=self.sram_out_bits, weight_buffer_bytes=self.buffer_bytes[0],
            act_buffer_bytes=self.buffer_bytes[1], out_buffer_bytes=self.buffer_bytes[2],
            dram_bytes=self.dram_bytes)

    def as_dict(self) -> dict[str, float | int | str]:
        return {
            "dataflow": self.dataflow, "m": self.m, "k": self.k, "n": self.n,
            **self.events.as_dict(), "compute_cycles": self.compute_cycles,
            "cycles": self.cycles, "stall_cycles": self.stall_cycles,
            "dram_bytes": self.dram_bytes, "dram_weight_bytes": self.dram_weight_bytes,
            "dram_act_bytes": self.dram_act_bytes, "dram_out_bytes": self.dram_out_bytes,
        }


def pe_register_bits(cfg: ArrayConfig) -> int:
    """Flip-flops in one PE: activation, partial sum and the 2-bit weight code."""
    return cfg.act_bits + cfg.acc_bits + WEIGHT_CODE_BITS


def buffer_capacities(cfg: ArrayConfig) -> tuple[float, float, float]:
    """Bytes of the weight, activation and output buffers (hdl/ws_top.py)."""
    return (cfg.weight_tiles * cfg.rows * cfg.cols * WEIGHT_CODE_BITS / 8,
            cfg.act_depth * cfg.rows,
            cfg.act_depth * cfg.cols * cfg.acc_bits / 8)


def _classes(total: int, size: int) -> list[tuple[int, int]]:
    """(piece size, how many) for total cut into pieces of `size`: full ones, then the rest."""
    full, rest = divmod(total, size)
    out = [(size, full)] if full else []
    if rest:
        out.append((rest, 1))
    return out


def _check_dims(cfg: ArrayConfig, m: int, k: int, n: int) -> None:
    for name, v in (("M", m), ("K", k), ("N", n)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InputError(f"GEMM dimension {name} must be an integer >= 1, got {v!r}")
    if k > cfg.max_k:
        raise InputError(f"GEMM reduction K={k} exceeds ArrayConfig.max_k={cfg.max_k}, the "
                         f"longest sum acc_bits={cfg.acc_bits} holds: the model does not fit "
                         "the accelerator's accumulators")


def _check_nnz(k: int, n: int, nnz: int) -> None:
    if isinstance(nnz, bool) or not isinstance(nnz, int) or not 0 <= nnz <= k * n:
        raise InputError(f"nnz must be an integer in 0..K*N={k * n}, got {nnz!r}")


def ws_gemm_cost(cfg: ArrayConfig, mem: MemoryConfig, m: int, k: int, n: int,
                 nnz: int) -> GemmCost:
    """Weight-stationary cost in closed form: tiles fall into at most 2 (M chunk) x 2 (K edge)
    x 2 (N edge) size classes, so no loop runs over tiles."""
    _check_dims(cfg, m, k, n)
    _check_nnz(k, n, nnz)
    r, c = cfg.rows, cfg.cols
    bw = mem.dram_bytes_per_cycle
    double = cfg.weight_tiles >= 2
    events = ws_gemm_events_from_nnz(cfg, m, k, n, nnz)

    kt, nt = math.ceil(k / r), math.ceil(n / c)
    k_cls, n_cls, m_cls = _classes(k, r), _classes(n, c), _classes(m, cfg.act_depth)
    time = 0.0
    w_bytes = a_bytes = o_bytes = 0.0
    if cfg.weight_buffers == 2:
        time, w_bytes, a_bytes, o_bytes = _ws_runs_time(cfg, mem, m, k, n)
        m_cls = []
    for mm, cnt_m in m_cls:
        comp = tile_cycles(cfg, mm)
        for kk, cnt_k in k_cls:
            for nn, cnt_n in n_cls:
                count = cnt_m * cnt_k * cnt_n
                w = mem.weight_bytes(kk * nn)
                a = mm * kk * mem.act_bytes
                w_bytes += count * w
                a_bytes += count * a
                tile = a / bw + (max(comp, w / bw) if double else comp + w / bw)
                time += count * tile
        for nn, cnt_n in n_cls:
            o = mm * nn * mem.out_bytes
            o_bytes += cnt_m * cnt_n * o
            time += cnt_m * cnt_n * o / bw
    if double and cfg.weight_buffers == 1:
        first_w = mem.weight_bytes(min(k, r) * min(n, c))
        last_m = m_cls[-1][0]
        time += min(first_w / bw, tile_cycles(cfg, last_m))

    # On-chip traffic: every tile writes and reads a full R x C slot of 2-bit codes and m
    # R-lane activation entries; each column's bank is written m times, and read first when
    # the tile accumulates (all K tiles but the first of a block); results are read out once.
    tiles = events.tiles
    vectors = m * kt * nt                     # activation entries streamed, over all tiles
    acc_vectors = m * (kt - 1) * nt
    slot_bits = r * c * WEIGHT_CODE_BITS
    sram_w = tiles * slot_bits * 2
    sram_a = vectors * r * 8 * 2
    sram_o = (vectors + acc_vectors) * c * cfg.acc_bits + m * n * cfg.acc_bits
    # PE registers: each (vector, PE) meeting writes the activation and partial-sum registers;
    # each tile writes every PE's weight code once
    regs = (events.macs + events.zero_skips) * (cfg.act_bits + cfg.acc_bits) + tiles * slot_bits
    return GemmCost("ws", m, k, n, events, time, w_bytes, a_bytes, o_bytes, sram_w, sram_a,
                    sram_o, acc_vectors * c, regs, buffer_capacities(cfg))


def _ws_runs_time(cfg: ArrayConfig, mem: MemoryConfig, m: int, k: int, n: int
                  ) -> tuple[float, float, float, float]:
    """(cycles, weight, activation, output DRAM bytes) of golden.tiling.plan_runs's schedule
    for weight_buffers=2: a run's weights and activations go into the half of the buffers the
    streaming run does not use, so loading run i+1 overlaps computing run i
    (max(compute, load)); the first load is exposed, and an output block's results are read
    out after its last run, serially. Loops over output blocks, not runs: the runs of a block
    come in at most two sizes."""
    mc, t = run_shape(cfg, m, k)
    r, c = cfg.rows, cfg.cols
    bw = mem.dram_bytes_per_cycle
    kt = math.ceil(k / r)
    full, rest = divmod(kt, t)
    edge_k = k - (kt - 1) * r
    # (count, compute, load, drain after) segments in execution order
    seq: list[tuple[int, float, float, float]] = []
    w_bytes = a_bytes = o_bytes = 0.0
    for m0 in range(0, m, mc):
        mm = min(mc, m - m0)
        for n0 in range(0, n, c):
            nn = min(c, n - n0)

            def load(tiles: int, edge: bool, mm: int = mm, nn: int = nn) -> float:
                kk = (tiles - 1) * r + (edge_k if edge else r)
                return (mem.weight_bytes(kk * nn) + mm * kk * mem.act_bytes) / bw

            drain = mm * nn * mem.out_bytes / bw
            runs = [(full - (rest == 0), t, False)] if full - (rest == 0) > 0 else []
            runs.append((1, rest or t, True))
            for i, (count, tiles, edge) in enumerate(runs):
                last = i == len(runs) - 1
                seq.append((count, ws_run_cycles(cfg, mm, tiles), load(tiles, edge),
                            drain if last else 0.0))
            w_bytes += mem.weight_bytes(k * nn)
            a_bytes += mm * k * mem.act_bytes
            o_bytes += mm * nn * mem.out_bytes
    time = seq[0][2]
    for i, (count, comp, ld, drain) in enumerate(seq):
        nxt = seq[i + 1][2] if i + 1 < len(seq) else 0.0
        time += (count - 1) * max(comp, ld) + max(comp, nxt) + drain
    return time, w_bytes, a_bytes, o_bytes


def os_bytes_per_cycle(mem: MemoryConfig) -> int:
    """The whole DRAM row width the os RTL streams at: the rate rounded down to a multiple of
    4 bytes (a row holds whole int32 results), never above the rate, so os is not flattered."""
    rate = mem.dram_bytes_per_cycle
    row = int(math.floor(rate + 1e-9)) // 4 * 4      # 1e-9: GB/s / MHz rounding noise
    if row < 4:
        raise ConfigError(f"the os dataflow streams whole DRAM rows of a multiple of 4 bytes "
                          f"per cycle; a DRAM rate of {rate:.4g} bytes/cycle is below 4 "
                          "(raise the bandwidth or lower the clock, or use ws)")
    if row > MAX_DRAM_BYTES_PER_CYCLE:
        raise ConfigError(f"the os dataflow streams at most {MAX_DRAM_BYTES_PER_CYCLE} bytes "
                          f"per cycle (ArrayConfig.dram_bytes_per_cycle); a DRAM rate of "
                          f"{rate:.4g} bytes/cycle is above it (raise the clock, or use ws)")
    return row


def os_config(cfg: ArrayConfig, mem: MemoryConfig) -> ArrayConfig:
    """cfg as the os RTL is built for this memory: dataflow "os" at os_bytes_per_cycle."""
    row = os_bytes_per_cycle(mem)
    if cfg.dataflow == "os" and cfg.dram_bytes_per_cycle == row:
        return cfg
    return dataclasses.replace(cfg, dataflow="os", dram_bytes_per_cycle=row)


def os_gemm_cost(cfg: ArrayConfig, mem: MemoryConfig, m: int, k: int, n: int,
                 nnz: int) -> GemmCost:
    """Weight-streaming cost from golden.os_model. Its cycle count already holds every DRAM
    transfer (activation load, 2-bit weight stream, result drain, serial on one channel), so
    nothing is added here. The os RTL streams cfg.weight_packing whatever mem.weight_bits
    says."""
    _check_dims(cfg, m, k, n)
    _check_nnz(k, n, nnz)
    oc = os_config(cfg, mem)
    events = os_model.stream_gemm_events_from_nnz(oc, m, k, n, nnz)
    traffic = os_model.stream_traffic(oc, m, k, n)
    visits = events.macs + events.zero_skips
    # On chip only the activation buffer is SRAM: each row's K activations are written once
    # and one is read (and broadcast) per compute beat. Weights go DRAM -> PEs, results
    # PEs -> DRAM, with no buffer between.
    beats = events.cycles - m * os_model.stream_load_cycles(oc, k) - m * sum(
        count * os_model.stream_drain_cycles(oc, cols)
        for cols, count in os_model.stream_passes(oc, n))
    sram_a = (m * k + beats * os_model.k_per_lane(oc)) * 8
    # PE registers: a MAC rewrites the PE's accumulator; every active PE latches its 2-bit
    # code each beat (base3: decodes its lane's byte); each drained result is shifted once.
    regs = events.macs * cfg.acc_bits + visits * WEIGHT_CODE_BITS + m * n * cfg.acc_bits
    return GemmCost("os", m, k, n, events, float(events.cycles),
                    float(traffic["weight_bytes"]), float(traffic["act_bytes"]),
                    float(traffic["out_bytes"]), 0.0, float(sram_a), 0.0, 0, regs,
                    (0.0, float(cfg.max_k), 0.0))


def gemm_cost(cfg: ArrayConfig, mem: MemoryConfig, m: int, k: int, n: int, nnz: int,
              dataflow: str | None = None) -> GemmCost:
    """Cost on one dataflow (cfg.dataflow unless given)."""
    from .dataflows import dataflow as named  # the registry imports this module

    return named(dataflow or cfg.dataflow).model.gemm_cost(cfg, mem, m, k, n, nnz)


def best_dataflow(cfg: ArrayConfig, m: int, k: int, n: int, nnz: int,
                  mem: MemoryConfig | None = None) -> str:
    """The dataflow with the fewest cycles for this GEMM (ties: the first registered, "ws"):
    what the host runtime runs a matmul on, and what `tritium estimate --dataflow auto`
    assumes. mem defaults to the array's own DRAM rate; a dataflow whose cost model rejects
    that memory (os below one 4-byte row per cycle) is left out."""
    from .dataflows import dataflow_names

    mem = mem or MemoryConfig(cfg.dram_bytes_per_cycle)
    cycles = {}
    for df in dataflow_names():
        with contextlib.suppress(ConfigError):
            cycles[df] = gemm_cost(cfg, mem, m, k, n, nnz, df).cycles
    if not cycles:
        raise ConfigError(f"no dataflow can run a {m}x{k}x{n} GEMM at "
                          f"{mem.dram_bytes_per_cycle:.4g} DRAM bytes per cycle")
    return min(cycles, key=cycles.__getitem__)
