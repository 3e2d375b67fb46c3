"""The host's share of a token: what the CPU runs between and around the accelerator's matmuls.

Per op (embedding row, RMSNorms, RoPE, attention over a KV cache of length L, activation
quantisation and dequantisation, the residual adds and gated activation, the LM head in its
stored bf16 precision with the argmax, and the int8/int32 transfers of every matmul over the
host link) the model follows what host/ops.py and host/model.py do:

    cpu seconds = max(streamed bytes / bandwidth, BLAS flops / compute)
                  + sum over the host functions called of calls x (fixed + elements x per-element)

- Streamed bytes are the ones that come from DRAM: the KV cache (a decode token's 30 layers of
  K/V and the golden backend's weights never stay in the CPU caches) and the bf16 LM head. They
  stream at `memory_gbps`, the rate ONE thread reads float32 through attention's BLAS calls,
  because everything but the LM head is single-threaded NumPy.
- BLAS flops are attention's two matmuls (QK^T, probabilities x V) at `compute_gflops`, one
  thread. A decode token's are memory-bound (4 query rows per KV head); a prefill's are not.
  Each KV head's K and V stream also pays a start (`fixed_us["stream_start"]`: the BLAS call,
  DRAM latency), which is what makes short caches slower per byte than long ones.
- Everything else is NumPy elementwise work on cache-resident vectors (a 2,560-wide norm is
  10 kB): priced per host function as a fixed cost per call plus a cost per element (per score
  for attention's scale and softmax), both calibrated on that function at two widths. At decode
  sizes the fixed cost (NumPy's dispatch, a few microseconds per call) dominates. The
  embedding's row is calibrated coming from DRAM, as a token's does.
- The machine is timed in CPU time (the calling thread's; all threads' for the LM head), the
  least of many runs: on a shared machine that leaves out the time other jobs hold the cores.
  The model therefore predicts an idle machine; a token's wall time is its CPU time, except
  the LM head's, which is its CPU time over `threads`.
- The LM head (ops.LMHead) widens bf16 blocks into a reused float32 buffer (in cache) and
  reduces them with einsum, splitting the vocabulary over `threads` threads: one thread gets
  through `head_gbps` of bf16 weights (or `memory_gbps`, if lower), and its wall time is its
  CPU time over the threads (they do not saturate DRAM together: 2 x 5 GB/s here).

Uncalibrated, a function's fixed cost is its NumPy calls counted in the code (CALLS) x
`dispatch_us`, and its per-element cost its float32 passes (PASSES) read and written at
`memory_gbps`.

Overlap: by default host work and accelerator work are serial, because the host waits for each
matmul's result before it can run the next op (a decode token is one dependent chain).
HostParams.overlap=True instead assumes perfect pipelining (e.g. several sequences in flight),
so a token costs the largest of accelerator, host and link time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import mmap
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..golden.checks import InputError
from ..golden.files import atomic_write, build_root
from ..golden.models import ModelShape
from .ops import threads as ops_threads

F32 = 4
BF16 = 2
INT32 = 4
# NumPy calls per invocation of each host function, counted from host/ops.py, host/model.py
# and golden/quant.py: the fallback fixed cost when calibration did not measure the function
CALLS: dict[str, int] = {
    "embedding": 2,        # gather, widen
    "rms_norm": 7,         # square, mean, add eps, sqrt, divide, mul, mul
    "rope": 5,             # per tensor: x*cos, neg, concatenate, *sin, add
    "attention": 14,       # cache update (2 copies), matmul, scale, mask, softmax (5), matmul,
                           # reshapes
    "quantize": 13,        # finiteness check (3), abs, max, maximum, reciprocal, 2 mul, rint,
                           # clip, 2 astype
    "dequantize": 7,       # asarray, int32 range check (min, max), astype, divide, mul, astype
    "lm_head_block": 3,    # slice, widen into the reused buffer, einsum
    "attention_mask": 3,   # prefill only: arange, compare, where
    "elementwise": 1,      # one ufunc: a residual add, a step of the gated activation, argmax
    "stream_start": 1,     # per KV head, K or V: the BLAS call that streams it from DRAM
}
# float32 passes over each element (attention: each score), counted from the same code: the
# fallback per-element cost when calibration did not measure the function
PASSES: dict[str, int] = {
    "embedding": 2, "rms_norm": 4, "rope": 5, "attention": 6, "quantize": 8, "dequantize": 5,
    "lm_head_block": 0, "attention_mask": 1, "stream_start": 0, "elementwise": 1,
}
LM_HEAD_BLOCK_ROWS = 1024  # host/ops.py LMHead's default
# BitLinears that share one quantised input (host/model.py quantises it once)
SHARED_INPUTS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))
CALIBRATION_FILE = "host_calibration.json"
# bump when the calibrated parameters change meaning: an older cache is measured again
CALIBRATION_VERSION = 2


def default_threads() -> int:
    """The threads ops.LMHead splits over ($TRITIUM_THREADS, else one per core) that run at
    once: no more than the cores."""
    return max(1, min(ops_threads(), os.cpu_count() or 1))


@dataclass(frozen=True)
class HostParams:
    """The host CPU and its link to the accelerator.

    memory_gbps: GB/s one thread streams float32 from DRAM through NumPy/BLAS (the KV cache);
    compute_gflops: float32 GFLOP/s of one thread's BLAS (attention's matmuls);
    link_gbps: host <-> accelerator bandwidth; dispatch_us: fixed cost of one NumPy call;
    overlap: whether host work overlaps accelerator work (default False: serial);
    fixed_us / element_ns: measured fixed cost per call (us) and cost per element (ns) of the
    host functions in CALLS (a function not listed falls back to CALLS x dispatch_us and
    PASSES at memory_gbps); head_gbps: bf16 GB/s one thread of ops.LMHead widens and reduces
    (None: only memory_gbps bounds it); threads: the threads ops.LMHead splits over.
    """

    memory_gbps: float = 10.0
    compute_gflops: float = 20.0
    link_gbps: float = 4.0
    dispatch_us: float = 1.5
    overlap: bool = False
    source: str = "given"
    fixed_us: dict[str, float] = field(default_factory=dict)
    element_ns: dict[str, float] = field(default_factory=dict)
    head_gbps: float | None = None
    threads: int = field(default_factory=default_threads)

    def __post_init__(self) -> None:
        for name in ("memory_gbps", "compute_gflops", "link_gbps", "dispatch_us", "head_gbps"):
            v = getattr(self, name)
            if v is None and name == "head_gbps":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or v < 0 or (v == 0 and name != "dispatch_us"):
                raise InputError(f"host parameter {name} must be a finite number > 0"
                                 f"{' (or 0)' if name == 'dispatch_us' else ''}, got {v!r}")
        for what, table in (("fixed_us", self.fixed_us), ("element_ns", self.element_ns)):
            for k, v in table.items():
                if k not in CALLS or isinstance(v, bool) or not isinstance(v, (int, float)) \
                        or not 0 <= v < math.inf:
                    raise InputError(f"host parameter {what}[{k!r}] must name one of "
                                     f"{', '.join(CALLS)} and be >= 0, got {v!r}")
        t = self.threads
        if isinstance(t, bool) or not isinstance(t, int) or t < 1:
            raise InputError(f"host parameter threads must be an integer >= 1, got {t!r}")

    def fixed_seconds(self, function: str) -> float:
        return self.fixed_us.get(function, CALLS[function] * self.dispatch_us) * 1e-6

    def element_seconds(self, function: str) -> float:
        if function in self.element_ns:
            return self.element_ns[function] * 1e-9
        return PASSES[function] * 2 * F32 / (self.memory_gbps * 1e9)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class OpCost:
    """One host op's work for one token (or one prefill).

    bytes: compulsory traffic (each input read once, each output written once, in host/ops.py's
    dtypes), reported; stream_bytes: the part of it that comes from DRAM, priced against the
    bandwidth; invocations: (host function, calls, elements per call).
    """

    name: str
    bytes: float
    flops: float
    invocations: tuple[tuple[str, int, int], ...]
    on: str = "host"        # "host" or "link"
    stream_bytes: float = 0.0
    lm_head: bool = False   # ops.LMHead: bf16 widened at head_gbps, split over threads

    @property
    def calls(self) -> int:
        """NumPy calls, counted from the code."""
        return sum(CALLS[f] * n for f, n, _ in self.invocations)

    def cpu_seconds(self, p: HostParams) -> float:
        """CPU time summed over the threads the op runs on."""
        if self.on == "link":
            return self.bytes / (p.link_gbps * 1e9)
        gbps = p.memory_gbps
        if self.lm_head and p.head_gbps is not None:
            gbps = min(gbps, p.head_gbps)
        return (max(self.stream_bytes / (gbps * 1e9), self.flops / (p.compute_gflops * 1e9))
                + sum(n * (p.fixed_seconds(f) + e * p.element_seconds(f))
                      for f, n, e in self.invocations))

    def seconds(self, p: HostParams) -> float:
        """Wall time."""
        return self.cpu_seconds(p) / (p.threads if self.lm_head else 1)

    def as_dict(self, p: HostParams) -> dict[str, Any]:
        calls: dict[str, int] = {}
        for f, n, _ in self.invocations:
            calls[f] = calls.get(f, 0) + n
        return {"bytes": self.bytes, "stream_bytes": self.stream_bytes, "flops": self.flops,
                "calls": self.calls, "invocations": calls,
                "elements": sum(n * e for _, n, e in self.invocations), "on": self.on,
                "cpu_seconds": self.cpu_seconds(p), "seconds": self.seconds(p)}


def norm_widths(model: ModelShape) -> list[int]:
    """Widths of one layer's RMSNorms: BitNet adds attn_sub_norm and ffn_sub_norm to the two
    pre-norms (host/arch/bitnet.py); the others have only the pre-norms."""
    h = model.hidden_size
    if model.model_type in ("bitnet", ""):
        return [h, h, h, model.intermediate_size]
    return [h, h]


def quant_widths(model: ModelShape) -> list[int]:
    """Widths of the distinct activations one layer quantises (shared inputs once)."""
    seen: set[str] = set()
    out = []
    for mm in model.matmuls():
        if mm.name in seen:
            continue
        group = next((g for g in SHARED_INPUTS if mm.name in g), (mm.name,))
        seen.update(group)
        out.append(mm.k)
    return out


def activation_calls(model: ModelShape) -> int:
    """Full-width ufunc calls of the gated activation: relu2(g) * u is maximum, square and
    multiply (BitNet); silu(g) * u is negative, exp, add, divide and multiply (ops.silu)."""
    return 3 if model.model_type in ("bitnet", "") else 5


def op_costs(model: ModelShape, context: int, tokens: int = 1) -> list[OpCost]:
    """Every host op of `tokens` new tokens whose last one sees `context` keys (prefill:
    tokens = context = prompt length; decode: tokens = 1), all layers."""
    if isinstance(context, bool) or not isinstance(context, int) or context < 1:
        raise InputError(f"context (KV cache length L) must be an integer >= 1, got {context!r}")
    if not 1 <= tokens <= context:
        raise InputError(f"tokens must be in 1..context={context}, got {tokens!r}")
    n, h, v = model.num_hidden_layers, model.hidden_size, model.vocab_size
    i = model.intermediate_size
    nh, nkv, d = model.num_attention_heads, model.num_key_value_heads, model.head_dim
    t, s = tokens, context
    norms = norm_widths(model)
    # ops.attention computes every (query, key) score and masks the future ones afterwards,
    # so a prefill costs t x s scores per head, not the causal half
    scores = nh * t * s
    kv_read = F32 * 2 * nkv * d * s      # K and V, each KV head once for its query group
    kv_write = F32 * 2 * nkv * d * t     # the new k, v appended to the cache
    mms = model.matmuls()
    ops: list[OpCost] = [
        # one bf16 row gathered and widened per token
        OpCost("embedding", t * h * (BF16 + F32), 0, (("embedding", 1, t * h),),
               stream_bytes=t * h * BF16),
        # each norm reads x and its weight and writes the result
        OpCost("norms", n * sum(F32 * (2 * w * t + w) for w in norms) + F32 * (2 * h * t + h),
               0, tuple(("rms_norm", n, w * t) for w in norms) + (("rms_norm", 1, h * t),)),
        # q and k rotated: read x, cos, sin, write
        OpCost("rope", n * t * (nh + nkv) * d * 4 * F32, 0,
               (("rope", n, nh * d * t), ("rope", n, nkv * d * t))),
        # K/V streamed through QK^T and probabilities x V (2 flops per head, score and dim
        # each); the scores written and read back once; scale and softmax per score
        OpCost("attention", n * (kv_read + kv_write + F32 * 2 * scores), n * 4 * d * scores,
               (("attention", n, scores), ("stream_start", n * 2 * nkv, 0))
               # the causal mask: ops.attention applies it only when a query has a future key
               + ((("attention_mask", n, scores),) if t > 1 else ()),
               stream_bytes=n * (kv_read + kv_write)),
        # quantise each distinct input (read float32, write int8) and dequantise each matmul's
        # int32 result to float32
        OpCost("quantisation",
               n * t * (sum((F32 + 1) * k for k in quant_widths(model))
                        + sum((INT32 + F32) * mm.n for mm in mms)), 0,
               tuple(("quantize", n, k * t) for k in quant_widths(model))
               + tuple(("dequantize", n, mm.n * t) for mm in mms)),
        # the rest of the block (two residual adds, the gated activation) and the argmax over
        # the logits (generate)
        OpCost("elementwise",
               n * t * F32 * (2 * 3 * h + activation_calls(model) * 2 * i) + F32 * v, 0,
               (("elementwise", 2 * n, h * t), ("elementwise", activation_calls(model) * n, i * t),
                ("elementwise", 1, v))),
        # the head runs on the last token only (generate): its bf16 weights streamed once,
        # widened block by block into a cache-resident float32 buffer, the logits written
        OpCost("lm_head", v * h * BF16 + h * F32 + v * F32, 2 * v * h,
               (("lm_head_block", -(-v // LM_HEAD_BLOCK_ROWS), 0),),
               stream_bytes=v * h * BF16, lm_head=True),
        # int8 activations in and int32 results out for every BitLinear
        OpCost("link", n * t * sum(mm.k + INT32 * mm.n for mm in mms), 0, (), "link"),
    ]
    return ops


def host_seconds(model: ModelShape, params: HostParams, context: int, tokens: int = 1
                 ) -> dict[str, float]:
    """Seconds per op name (host ops and the link)."""
    return {op.name: op.seconds(params) for op in op_costs(model, context, tokens)}


def combine(accel_s: float, per_op: dict[str, float], params: HostParams) -> float:
    """Seconds for a token (or a prefill) given the accelerator's and each host op's time."""
    host = sum(s for k, s in per_op.items() if k != "link")
    link = per_op.get("link", 0.0)
    return max(accel_s, host, link) if params.overlap else accel_s + host + link


def bottleneck(accel_s: float, accel_label: str, per_op: dict[str, float]) -> str:
    """The single largest contributor: the accelerator ("accelerator compute" or "DRAM"),
    a host op ("host: lm_head", ...) or "link"."""
    cands = {accel_label: accel_s}
    cands.update({("link" if k == "link" else f"host: {k}"): s for k, s in per_op.items()})
    return max(cands, key=lambda k: cands[k])


# ------------------------------------------------------------------------------------------
# calibration
# ------------------------------------------------------------------------------------------

def cpu_time(fn: Callable[[], Any], repeat: int, budget_s: float = 1.5,
             clock: Callable[[], float] = time.thread_time) -> float:
    """The least CPU time (this thread's; clock=time.process_time: all threads') of `repeat`
    runs after one warm-up, stopping early after budget_s of wall time. CPU time leaves out
    the time other processes hold the core, which on a loaded machine is most of the wall
    time; the minimum then drops what they still cost us (caches refilled after they ran)."""
    fn()
    best = math.inf
    end = time.perf_counter() + budget_s
    for i in range(repeat):
        t0 = clock()
        fn()
        best = min(best, clock() - t0)
        if i >= 2 and time.perf_counter() > end:
            break
    return best


class Bf16Rows:
    """A bf16 matrix held as raw uint16 rows, read the way ops.LMHead reads a checkpoint's
    embedding (block by block into float32): for timing the LM head without a checkpoint."""

    dtype = "BF16"

    def __init__(self, raw: np.ndarray) -> None:
        self.raw, self.shape = raw, raw.shape

    def block_into(self, a: int, b: int, out: np.ndarray, *, low_zeroed: bool = False
                   ) -> np.ndarray:
        out.view(np.uint16).reshape(out.shape[0], out.shape[1], 2)[..., 1] = self.raw[a:b]
        return out


def random_bf16(rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """bf16 bit patterns of normal values (no denormals or NaNs to slow the arithmetic), a
    1024-row random block repeated, every row its own memory; in 4 kB pages, as a checkpoint
    mapped from its file is (NumPy would ask for huge pages, which let the prefetchers run
    across page boundaries and stream a quarter faster than the runtime reads its head)."""
    block = (rng.standard_normal((min(rows, 1024), cols), np.float32).view(np.uint32) >> 16
             ).astype(np.uint16)
    out = np.frombuffer(mmap.mmap(-1, rows * cols * BF16), np.uint16).reshape(rows, cols)
    for r in range(0, rows, len(block)):
        out[r:r + len(block)] = block[: rows - r]
    return out


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def per_element(make: Callable[[int], Callable[[], Any]], n0: int, n1: int, calls: int = 40,
                samples: int = 25) -> tuple[float, float]:
    """(fixed us per call, ns per element) of a function, from its least CPU time per call at
    n0 and at n1 elements (both cache-resident; samples of the two sizes take turns)."""
    fns = (make(n0), make(n1))
    best = [math.inf, math.inf]
    for _ in range(samples):
        for j, f in enumerate(fns):
            start = time.thread_time()
            for _ in range(calls):
                f()
            best[j] = min(best[j], (time.thread_time() - start) / calls)
    t0, t1 = best
    slope = max(0.0, (t1 - t0) / (n1 - n0))
    return max(0.0, t0 - n0 * slope) * 1e6, slope * 1e9


def calibrate_host(link_gbps: float = HostParams.link_gbps) -> HostParams:
    """Measure this machine in a few seconds with host/ops.py's own calls, as the CPU time of
    one thread (BLAS must have one thread: ONE_THREAD_ENV):

    memory_gbps and fixed_us["stream_start"]: attention's two BLAS matmuls at a 2B-4T head
    layout over 64 MB of K/V views of larger buffers (as ops.KVCache hands them), so every
    byte comes from DRAM, at two cache lengths: the slope is the bandwidth, the intercept the
    cost of starting each head's stream (a BLAS call, DRAM latency; no huge pages for buffers
    under NumPy's 4 MB threshold);
    compute_gflops: the same matmuls at a prefill shape, in cache;
    head_gbps: ops.LMHead on one thread over 8,192 rows of a 2,560-wide bf16 matrix;
    fixed_us, element_ns: each host function at two cache-resident widths (attention: its
    fixed cost on a tiny cache, its per-score scale and softmax, and the prefill's mask, at
    two lengths).
    The link cannot be measured from here: it is given.
    """
    from ..golden.quant import dequantize, quantize_activations
    from .ops import LMHead, apply_rope, attention, rms_norm, softmax
    from .safetensors import bf16_to_float32

    rng = np.random.default_rng(0)
    fixed: dict[str, float] = {}
    elem: dict[str, float] = {"stream_start": 0.0}

    nkv, g, d = 5, 4, 128
    qg = rng.standard_normal((nkv, g, d), np.float32)

    def stream_set(ctx: int) -> tuple[Callable[[], None], int]:
        layers = -(-64 * 2**20 // (2 * nkv * ctx * d * F32))
        kv = [np.full((nkv, 2 * ctx, d), 0.01 * (i + 1), np.float32)[:, :ctx]
              for i in range(2 * layers)]
        probs = np.full((nkv, g, ctx), 1 / ctx, np.float32)

        def stream() -> None:
            for i in range(0, len(kv), 2):
                np.matmul(qg, kv[i].transpose(0, 2, 1))
                np.matmul(probs, kv[i + 1])

        stream()        # pages faulted in
        return stream, layers

    # the two lengths take turns, so that both see the same machine (DRAM shared with
    # whatever else runs), and each keeps its fastest time
    c0, c1 = 128, 2048
    sets = (stream_set(c0), stream_set(c1))
    best = [math.inf, math.inf]
    end = time.perf_counter() + 3.0
    for i in range(12):
        for j, (fn, layers) in enumerate(sets):
            start = time.thread_time()
            fn()
            best[j] = min(best[j], (time.thread_time() - start) / layers)
        if i >= 3 and time.perf_counter() > end:
            break
    del sets
    t0, t1 = best
    per_byte = max((t1 - t0) / (2 * nkv * d * F32 * (c1 - c0)), 1e-12)
    fixed["stream_start"] = max(0.0, t0 - 2 * nkv * d * F32 * c0 * per_byte) / (2 * nkv) * 1e6

    # the same matmuls at a prefill shape (256 tokens), in cache: compute-bound
    tq, sk = 256, 256
    qp = rng.standard_normal((nkv, g * tq, d), np.float32)
    kp = rng.standard_normal((nkv, sk, d), np.float32)
    pp = rng.standard_normal((nkv, g * tq, sk), np.float32)
    comp = 4 * nkv * g * tq * sk * d / cpu_time(
        lambda: (np.matmul(qp, kp.transpose(0, 2, 1)), np.matmul(pp, kp)), 10, 1.0)

    rows, hidden = 8192, 2560
    head = LMHead(Bf16Rows(random_bf16(rows, hidden, rng)))  # type: ignore[arg-type]
    x = rng.standard_normal((1, hidden), np.float32)
    with _env(TRITIUM_THREADS="1"):
        t_head = cpu_time(lambda: head(x), 15, 2.0)

    # The small functions last: the big arrays above, allocated and freed, have raised
    # glibc's mmap and trim thresholds as a long-running runtime's have, so these functions'
    # temporaries come from the heap without page faults, as they do in the runtime (in a
    # fresh process they fault, and cost up to three times as much).
    def vec(m: int) -> np.ndarray:
        return rng.standard_normal((1, m), np.float32)

    def norm_at(m: int) -> Callable[[], Any]:
        xn, w = vec(m), vec(m)[0]
        return lambda: rms_norm(xn, w, 1e-5)

    def quant_at(m: int) -> Callable[[], Any]:
        xq = vec(m)
        return lambda: quantize_activations(xq)

    def rope_at(m: int) -> Callable[[], Any]:
        xr = rng.standard_normal((max(1, m // d), 1, d), np.float32)
        c = rng.standard_normal((1, d), np.float32)
        return lambda: apply_rope(xr, c, c)

    def dequant_at(m: int) -> Callable[[], Any]:
        acc = rng.integers(-5000, 5000, (1, m)).astype(np.int32)
        s = np.ones((1, 1), np.float32)
        return lambda: dequantize(acc, s, 0.5)

    def scores_at(m: int) -> Callable[[], Any]:
        # what ops.attention does per score: scale, then softmax ([KV, G, T, S] for 2B-4T)
        sc = rng.standard_normal((nkv, g, 1, max(1, m // (nkv * g))), np.float32)
        return lambda: softmax(sc * np.float32(0.088))

    def mask_at(m: int) -> Callable[[], Any]:
        # a prefill's causal mask over [KV, G, T, S] scores (T = S)
        t = max(1, round(math.sqrt(m / (nkv * g))))
        sc = rng.standard_normal((nkv, g, t, t), np.float32)
        return lambda: np.where(np.arange(t)[None, :] > np.arange(t)[:, None],
                                np.float32(-np.inf), sc)

    def add_at(m: int) -> Callable[[], Any]:
        xa, xb = vec(m), vec(m)
        return lambda: xa + xb

    def embed_at(m: int) -> Callable[[], Any]:
        # a random row each call of a 64 MB table in 4 kB pages (a mapped checkpoint's
        # embedding): the row comes from DRAM, as a token's does
        table = random_bf16(64 * 2**20 // (m * BF16), m, rng)
        rows = rng.integers(0, len(table), (4096, 1))
        it = iter(range(1 << 62))
        return lambda: bf16_to_float32(table[rows[next(it) & 4095]])

    # widths around a decode token's (640 to 6,912 wide vectors, 20 x L scores), L1/L2
    # resident but for the embedding's rows; not tiny, where NumPy takes other paths (a
    # 16-wide call is cheaper than the line through 512 and 8,192 says, by up to a
    # microsecond)
    for f, make, n0, n1 in (("embedding", embed_at, 512, 8192),
                            ("rms_norm", norm_at, 512, 8192),
                            ("rope", rope_at, 4 * d, 32 * d),
                            ("quantize", quant_at, 512, 8192),
                            ("dequantize", dequant_at, 512, 8192),
                            ("elementwise", add_at, 512, 8192),
                            ("attention", scores_at, nkv * g * 64, nkv * g * 1024),
                            ("attention_mask", mask_at, nkv * g * 16 ** 2, nkv * g * 32 ** 2)):
        fixed[f], elem[f] = per_element(make, n0, n1)
    q4 = rng.standard_normal((4, 1, 16), np.float32)
    k4 = rng.standard_normal((1, 8, 16), np.float32)[:, :4]
    fixed["attention"] = cpu_time(lambda: [attention(q4, k4, k4, 3, 0.25) for _ in range(40)],
                                  25, 0.5) / 40 * 1e6
    small = ("embedding", "rms_norm", "rope", "quantize", "dequantize", "attention")
    dispatch = sum(fixed[f] for f in small) / sum(CALLS[f] for f in small) * 1e-6
    t_head -= rows // LM_HEAD_BLOCK_ROWS * CALLS["lm_head_block"] * dispatch
    return HostParams(memory_gbps=1e-9 / per_byte, compute_gflops=comp / 1e9,
                      link_gbps=link_gbps, dispatch_us=dispatch * 1e6, source="calibrated",
                      fixed_us=fixed, element_ns=elem,
                      head_gbps=rows * hidden * BF16 / max(t_head, 1e-9) / 1e9)


# One BLAS thread: on a machine whose cores are shared (another job running), OpenBLAS's
# spinning worker threads make a small matmul take 0.4 s instead of 0.4 ms for the first
# seconds, so a multi-threaded calibration is bimodal by a factor of 1000.
ONE_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def calibrate_host_subprocess(link_gbps: float = HostParams.link_gbps) -> HostParams:
    """calibrate_host() in a fresh interpreter with one BLAS thread (see ONE_THREAD_ENV): this
    process's NumPy has already fixed its BLAS thread count."""
    env = {**os.environ, **ONE_THREAD_ENV}
    try:
        out = subprocess.run([sys.executable, "-m", __name__], env=env, check=True,
                             capture_output=True, text=True, timeout=300).stdout
        p = json.loads(out)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise InputError(f"host calibration failed ({exc}); give --host-gbps and "
                         "--host-gflops instead") from None
    return _params(p, link_gbps=link_gbps, source="calibrated")


def _params(stored: dict[str, Any], **over: Any) -> HostParams:
    """HostParams from a stored dict; threads are this process's (ops.threads()), not the
    calibrating one's."""
    names = {f.name for f in fields(HostParams)} - {"threads"}
    return HostParams(**{k: v for k, v in stored.items() if k in names} | over)


def _machine_key() -> str:
    return f"{platform.node()}|{platform.machine()}|{platform.processor()}|numpy {np.__version__}"


def cached_calibration(force: bool = False, path: Path | None = None) -> HostParams:
    """calibrate_host(), cached in $TRITIUM_BUILD/host_calibration.json per machine, NumPy
    version and CALIBRATION_VERSION so repeated estimates stay fast; force measures again. A
    cache written by another machine or an older tritium is measured again and rewritten."""
    path = path or build_root() / CALIBRATION_FILE
    key = _machine_key()
    # Processes estimating at once (test workers, sweep workers) wait for one calibration
    # rather than each measuring (and slowing) the machine and disagreeing with the others.
    with _locked(path):
        if not force and path.is_file():
            try:
                stored = json.loads(path.read_text())
                if stored.get("version") == CALIBRATION_VERSION and stored.get("key") == key:
                    return _params(stored["params"], source=f"calibrated (cached in {path})")
            except (OSError, ValueError, KeyError, TypeError, AttributeError, InputError):
                pass    # a damaged cache is measured again and rewritten
        params = replace(calibrate_host_subprocess(), threads=default_threads())
        # a read-only build folder only costs the next run a calibration
        with contextlib.suppress(OSError):
            atomic_write(path, json.dumps({"version": CALIBRATION_VERSION, "key": key,
                                           "params": params.to_dict()}, indent=1))
        return params


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(path.with_name(f".{path.name}.lock"), "w")  # noqa: SIM115
    except OSError:
        yield               # a read-only build folder: no cache to share, so nothing to lock
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


if __name__ == "__main__":
    print(json.dumps(calibrate_host().to_dict()))
