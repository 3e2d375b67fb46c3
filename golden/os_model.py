"""Cycle and event model of the output-stationary, weight-streaming ("os") dataflow.

Exact per start of hdl/os_top.py (checked cycle for cycle against the Verilator-run RTL).

Shape. P = rows x cols adder-only PEs; PE c owns output column n0 + c of one activation row
(outputs stationary). One memory channel moves B = dram_bytes_per_cycle bytes per cycle, one
row per cycle, for every transfer: W weight lanes, A int8 activations, or L = B/4 int32
results. Weights are streamed, never stored on chip. A weight lane carries T weights of one
output column for T consecutive k (ArrayConfig.weight_packing):
  "2bit"   W = 4B lanes of one 2-bit code, T = 1; A = B activations per row.
  "base3"  W = B lanes of one byte holding T = 5 base-3 digits (golden/base3.py), k = 5t..5t+4
           of one column; A = 5 * floor(B/5) activations per row (whole pentads, so a k-step
           never straddles two rows).
A k-step broadcasts the T activations a[m, Tt .. Tt+T-1] to every PE that has a lane this
cycle; the lane's T ternary products are summed by adders beside the lane (base3) and the PE
adds the sum. K is padded to ceil(K/T) k-steps with zero weights.

A GEMM is M activation rows x ceil(N/P) passes; pass p covers n_p = min(P, N - p*P) columns.
For each activation row:
  load     ceil(K/A) cycles: the row's K activations, memory -> on-chip activation buffer.
  then for each pass:
    compute  ceil(K/T) * G_p cycles, G_p = ceil(n_p / W): for each k-step and group
             g = 0..G_p-1 one row brings the lanes of columns g*W .. g*W+W-1 of the pass, and
             those PEs add the lane's sum. (W >= P: one row per k-step, G_p = 1.)
    drain    ceil(n_p / L) cycles: the accumulators of L columns per cycle go into memory.
Memory is what serves the top's port (golden/os_port.py): the Verilator harness or a board,
dram_words rows deep (a harness size, not RTL). A GEMM whose weights outgrow it runs as C
starts of whole passes (stream_plan), and each start loads its activation rows again. Each
start waits 1 + latency cycles for its first row, so with an ideal port the busy cycles are

    cycles(M, K, N) = M * ( C * ceil(K/A) + sum_p ( ceil(K/T) * ceil(n_p/W) + ceil(n_p/L) ) )
                      + S * (1 + latency)

with C = stream_n_chunks(cfg, K, N) and S = stream_starts(...) (C = S = 1 whenever all
passes' weights fit beside one activation row). A slower, shallower or stalling port costs
what golden.os_port.start_cycles simulates (stream_gemm_cycles takes the PortTiming).

No other cycle exists: the top asks for rows ahead of the beats that use them, so phases
follow each other without bubbles, and a PE starts its next pass from zero on its first
k-step, so there is no clear step. The phases share the one channel, so they are serial by
design: overlapping the activation load or the drain with the weight stream would need more
than B bytes per cycle. Both are small next to the weight stream on decode shapes (2560x2560
on a 32x32 array at B = 64, 2-bit: 1 + 40 load + 25,600 compute + 160 drain cycles, 99.2 %
of the bandwidth bound K*N/(4B) = 25,600; base3: 1 + 43 + 20,480 + 160 against
K*N/(5B) = 20,480), so stream_gemm_cycles already includes all memory traffic; an estimator
must not add activation or result transfers on top. stream_traffic gives the bytes each
transfer moves.

Events (the RTL's counters): tiles = passes run (M * ceil(N/P)); on every compute beat each
weight of the active group's lanes is either a MAC (non-zero) or a zero skip (zero, padding
past n_p or past K included), as in "ws". PEs outside the active group are idle, neither.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .checks import InputError, check_ternary
from .config import ArrayConfig, ConfigError
from .cycles import Events
from .os_port import IDEAL, PortTiming, start_cycles
from .tiling import check_gemm_dims

CODES_PER_BYTE = 4     # 2-bit ternary codes
BASE3_TRITS = 5        # base-3 digits per byte (golden/base3.py)
ACT_BYTES = 1          # activations travel as int8 lanes (act_bits <= 8)
RESULT_BYTES = 4       # results travel as int32, one bus word each
MIN_DRAM_WORDS = 16


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def base3(cfg: ArrayConfig) -> bool:
    return cfg.weight_packing == "base3"


def k_per_lane(cfg: ArrayConfig) -> int:
    """T: consecutive k one weight lane carries (1 for 2-bit codes, 5 for a base-3 byte)."""
    return BASE3_TRITS if base3(cfg) else 1


def k_steps(cfg: ArrayConfig, k: int) -> int:
    """Compute beats per group for a reduction of K: ceil(K / T)."""
    return _cdiv(k, k_per_lane(cfg))


def codes_per_row(cfg: ArrayConfig) -> int:
    """W: weight lanes (output columns) one memory row (one cycle of bandwidth) brings."""
    if base3(cfg):
        return cfg.dram_bytes_per_cycle
    return CODES_PER_BYTE * cfg.dram_bytes_per_cycle


def weights_per_row(cfg: ArrayConfig) -> int:
    """Ternary weights one memory row brings: W * T."""
    return codes_per_row(cfg) * k_per_lane(cfg)


def acts_per_row(cfg: ArrayConfig) -> int:
    """A: activations one memory row brings (base3: whole pentads only)."""
    per = cfg.dram_bytes_per_cycle // ACT_BYTES
    t = k_per_lane(cfg)
    return per // t * t


def results_per_row(cfg: ArrayConfig) -> int:
    """L: int32 results one DRAM row holds (dram_bytes_per_cycle is a multiple of 4 for os)."""
    return max(1, cfg.dram_bytes_per_cycle // RESULT_BYTES)


def stream_groups(cfg: ArrayConfig, n: int | None = None) -> int:
    """G: DRAM rows per k for a pass of n <= P columns (default a full pass)."""
    n = cfg.pes if n is None else n
    return _cdiv(min(n, cfg.pes), codes_per_row(cfg))


def stream_passes(cfg: ArrayConfig, n: int) -> tuple[tuple[int, int], ...]:
    """(columns, how many) of the passes that cover n outputs: full passes, then the rest."""
    full, rest = divmod(n, cfg.pes)
    out = [(cfg.pes, full)] if full else []
    if rest:
        out.append((rest, 1))
    return tuple(out)


def stream_load_cycles(cfg: ArrayConfig, k: int) -> int:
    """Cycles to load one activation row of K int8 values from memory."""
    return _cdiv(k, acts_per_row(cfg))


def stream_drain_cycles(cfg: ArrayConfig, n: int | None = None) -> int:
    """Cycles to drain a pass of n <= P results into DRAM (default a full pass)."""
    n = cfg.pes if n is None else n
    return _cdiv(min(n, cfg.pes), results_per_row(cfg))


def stream_tile_cycles(cfg: ArrayConfig, k: int, n: int | None = None) -> int:
    """Busy cycles of one pass over K for one activation row and n <= P outputs (default P):
    compute ceil(K/T) * G plus drain ceil(n / L). The row's activation load
    (stream_load_cycles) is paid once per row, before its first pass."""
    return k_steps(cfg, k) * stream_groups(cfg, n) + stream_drain_cycles(cfg, n)


def stream_row_cycles(cfg: ArrayConfig, k: int, n: int) -> int:
    """Busy cycles of one activation row against N columns in one start: load, then every
    pass."""
    return stream_load_cycles(cfg, k) + sum(
        count * stream_tile_cycles(cfg, k, cols) for cols, count in stream_passes(cfg, n))


def stream_gemm_cycles(cfg: ArrayConfig, m: int, k: int, n: int,
                       timing: PortTiming = IDEAL) -> int:
    """Busy cycles of an M x K x N GEMM as stream_plan runs it: each row re-streams the
    weights, and loads its activations once per N chunk (one chunk unless the weights
    outgrow the memory); each start waits 1 + latency cycles for its first row
    (golden/os_port.py), and more when the port is slower or stalls."""
    check_gemm_dims(cfg, m, k, n)
    if not timing.ideal:
        return sum(start_cycles(cfg, job_beats(cfg, k, job), timing)
                   for job in stream_plan(cfg, m, k, n))
    reloads = stream_n_chunks(cfg, k, n) - 1
    return (m * (stream_row_cycles(cfg, k, n) + reloads * stream_load_cycles(cfg, k))
            + stream_starts(cfg, m, k, n) * (1 + timing.latency))


def job_beats(cfg: ArrayConfig, k: int, job: StreamJob) -> list[tuple[bool, int]]:
    """The beats of one start as runs of (reads a row?, count): per activation row its load,
    then per pass its compute beats and its drain."""
    row: list[tuple[bool, int]] = [(True, stream_load_cycles(cfg, k))]
    for cols, count in stream_passes(cfg, job.n):
        row += [(True, k_steps(cfg, k) * stream_groups(cfg, cols)),
                (False, stream_drain_cycles(cfg, cols))] * count
    return row * job.m


def stream_weight_rows(cfg: ArrayConfig, k: int, n: int) -> int:
    """Memory rows of weights one activation row streams (every pass, padding included)."""
    return k_steps(cfg, k) * sum(count * stream_groups(cfg, cols)
                                 for cols, count in stream_passes(cfg, n))


def stream_weight_bytes(cfg: ArrayConfig, k: int, n: int) -> int:
    """Weight bytes streamed for one activation row over all passes: 2 or 1.6 bits per weight,
    each k-step's lanes of a pass padded to whole rows (G*W lanes). Multiply by M for a
    GEMM."""
    return stream_weight_rows(cfg, k, n) * cfg.dram_bytes_per_cycle


def stream_traffic(cfg: ArrayConfig, m: int, k: int, n: int) -> dict[str, int]:
    """DRAM bytes of an M x K x N GEMM by transfer (each moved in stream_gemm_cycles)."""
    b = cfg.dram_bytes_per_cycle
    out_rows = sum(count * stream_drain_cycles(cfg, cols) for cols, count in stream_passes(cfg, n))
    return {
        "weight_bytes": m * stream_weight_bytes(cfg, k, n),
        "act_bytes": m * stream_n_chunks(cfg, k, n) * stream_load_cycles(cfg, k) * b,
        "out_bytes": m * out_rows * b,
    }


def _visits(cfg: ArrayConfig, k: int, n: int) -> int:
    """Weights visited by active lanes (MAC or skip) for one activation row over all passes."""
    w = codes_per_row(cfg)
    per_step = sum(count * min(stream_groups(cfg, cols) * w, cfg.pes)
                   for cols, count in stream_passes(cfg, n))
    return k_steps(cfg, k) * k_per_lane(cfg) * per_step


def stream_gemm_events_from_nnz(cfg: ArrayConfig, m: int, k: int, n: int, nnz: int,
                                timing: PortTiming = IDEAL) -> Events:
    """Events of an M x K x N GEMM from the weight's non-zero count alone."""
    if not 0 <= nnz <= k * n:
        raise InputError(f"nnz must be in 0..K*N={k * n}, got {nnz}")
    cycles = stream_gemm_cycles(cfg, m, k, n, timing)
    tiles = m * _cdiv(n, cfg.pes)
    return Events(tiles=tiles, cycles=cycles, macs=m * nnz,
                  zero_skips=m * (_visits(cfg, k, n) - nnz))


def stream_gemm_events(cfg: ArrayConfig, w: np.ndarray, m: int,
                       timing: PortTiming = IDEAL) -> Events:
    """Events of an M x K x N GEMM with ternary weights w [K, N]."""
    w = check_ternary("weights", w)
    k, n = w.shape
    return stream_gemm_events_from_nnz(cfg, m, k, n, int(np.count_nonzero(w)), timing)


def check_config(cfg: ArrayConfig) -> None:
    """The ArrayConfig fields the os top needs beyond the generic ranges."""
    b, words = cfg.dram_bytes_per_cycle, cfg.dram_words
    if b % 4:
        raise ConfigError(f"ArrayConfig.dram_bytes_per_cycle must be a multiple of 4 for "
                          f"dataflow os (a DRAM row holds whole 32-bit results), got {b}; "
                          f"use {max(4, b - b % 4)}")
    if base3(cfg) and b < BASE3_TRITS:
        raise ConfigError(f"ArrayConfig.dram_bytes_per_cycle={b} is too narrow for "
                          f"weight_packing='base3' on dataflow os (a row must hold a "
                          f"5-activation pentad); use 8 or more")
    need = min_dram_words(cfg)
    if words and words < need:
        fit = 1 << (need - 1).bit_length()
        raise ConfigError(f"ArrayConfig.dram_words={words} cannot hold one os pass at "
                          f"max_k={cfg.max_k} ({need} rows of {b} bytes: weights, "
                          f"activations and results); raise dram_words to {fit}, lower "
                          f"max_k, or use 0 to size it automatically")


# --- the memory behind the port: how big it is and how a GEMM is cut to fit it ------------


def min_dram_words(cfg: ArrayConfig) -> int:
    """DRAM rows one start needs at K = max_k: a full pass of weights, one activation row and
    its results."""
    k = cfg.max_k
    return (k_steps(cfg, k) * stream_groups(cfg) + stream_load_cycles(cfg, k)
            + stream_drain_cycles(cfg))


def stream_dram_words(cfg: ArrayConfig) -> int:
    """Rows of the memory behind the port: cfg.dram_words, or the power of two that fits
    max_k."""
    if cfg.dram_words:
        return cfg.dram_words
    return max(MIN_DRAM_WORDS, 1 << (min_dram_words(cfg) - 1).bit_length())


@dataclass(frozen=True)
class StreamJob:
    """One start of the os top: rows m0:m0+m of A against columns n0:n0+n of W.

    DRAM layout (rows): the job's weights from w_base (the passes of its n columns, each
    k-major with G rows per k), m activation rows of ceil(K/B) rows each from a_base, and
    the results from o_base (per activation row, per pass, ceil(n_p/L) rows).
    n0 is a multiple of P, so a job's passes are the GEMM's passes.
    """

    m0: int
    m: int
    n0: int
    n: int
    w_base: int
    a_base: int
    o_base: int

    def weight_rows(self, cfg: ArrayConfig, k: int) -> int:
        return stream_weight_rows(cfg, k, self.n)

    def out_rows(self, cfg: ArrayConfig) -> int:
        return self.m * sum(count * stream_drain_cycles(cfg, cols)
                            for cols, count in stream_passes(cfg, self.n))


def stream_chunk_passes(cfg: ArrayConfig, k: int) -> int:
    """Full passes one start can hold in the memory beside one activation row."""
    load = stream_load_cycles(cfg, k)
    per_pass = k_steps(cfg, k) * stream_groups(cfg) + stream_drain_cycles(cfg)
    depth = stream_dram_words(cfg)
    if per_pass + load > depth:
        raise InputError(f"one pass of K={k} needs {per_pass + load} DRAM rows, more than "
                         f"ArrayConfig.dram_words={depth}")
    return (depth - load) // per_pass


def stream_starts(cfg: ArrayConfig, m: int, k: int, n: int) -> int:
    """Starts stream_plan runs the GEMM in (without building the plan)."""
    starts = 0
    chunk = stream_chunk_passes(cfg, k) * cfg.pes
    depth = stream_dram_words(cfg)
    load = stream_load_cycles(cfg, k)
    for n0 in range(0, n, chunk):
        probe = StreamJob(0, 1, n0, min(n - n0, chunk), 0, 0, 0)
        rows_fit = (depth - probe.weight_rows(cfg, k)) // (load + probe.out_rows(cfg))
        starts += _cdiv(m, rows_fit)
    return starts


def stream_n_chunks(cfg: ArrayConfig, k: int, n: int) -> int:
    """N chunks stream_plan cuts the GEMM into (each reloads the activation rows)."""
    return _cdiv(_cdiv(n, cfg.pes), stream_chunk_passes(cfg, k))


def stream_plan(cfg: ArrayConfig, m: int, k: int, n: int) -> list[StreamJob]:
    """Starts that run an M x K x N GEMM within the memory: N in chunks of whole
    passes (as many as fit with one activation row), then M in chunks that fit beside them.
    Every job runs the GEMM's own passes; each N chunk costs one more activation load per
    row (stream_gemm_cycles counts it)."""
    check_gemm_dims(cfg, m, k, n)
    depth = stream_dram_words(cfg)
    load = stream_load_cycles(cfg, k)
    chunk = stream_chunk_passes(cfg, k) * cfg.pes
    jobs = []
    for n0 in range(0, n, chunk):
        nn = min(n - n0, chunk)
        probe = StreamJob(0, 1, n0, nn, 0, 0, 0)
        w_rows, o_rows = probe.weight_rows(cfg, k), probe.out_rows(cfg)
        rows_fit = (depth - w_rows) // (load + o_rows)
        for m0 in range(0, m, rows_fit):
            mm = min(m - m0, rows_fit)
            a_base = w_rows
            jobs.append(StreamJob(m0, mm, n0, nn, 0, a_base, a_base + mm * load))
    return jobs
