"""The host's share of a token: what the CPU runs between and around the accelerator's matmuls.

Per op (embedding row, RMSNorms, RoPE, attention over a KV cache of length L, activation
quantisation and dequantisation, the LM head in its stored bf16 precision, and the int8/int32
transfers of every matmul over the host link) the model counts the bytes the op must move and
the floating-point operations it must do, and prices it as a roofline plus NumPy's per-call
dispatch cost:

    seconds = max(bytes / memory bandwidth, flops / compute throughput)
              + sum over the host functions it calls of (times called x fixed cost)

because at decode sizes (a 2,560-wide norm is 10 kB) NumPy's fixed cost per call, not the
memory system, sets the time. The fixed cost of each function (ops.rms_norm, apply_rope,
attention, quantize/dequantize) is calibrated on 16-element inputs; uncalibrated, it is
the NumPy calls counted in the code (CALLS) x a per-call dispatch cost. The bytes are
compulsory traffic: each input read once and each output written once, in the dtype
host/ops.py uses (float32, int8 codes, int32 accumulators, bf16 for the embedding and LM head
as stored).

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
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..golden.checks import InputError
from ..golden.files import atomic_write, build_root
from ..golden.models import ModelShape

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
}
LM_HEAD_BLOCK_ROWS = 1024  # host/ops.py LMHead's default
SOFTMAX_FLOPS = 5         # per score: scale, max, subtract, exp, divide (sum folded in)
# BitLinears that share one quantised input (host/model.py quantises it once)
SHARED_INPUTS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))
CALIBRATION_FILE = "host_calibration.json"


@dataclass(frozen=True)
class HostParams:
    """The host CPU and its link to the accelerator.

    memory_gbps: effective memory bandwidth in GB/s for streaming the bf16 LM head (and any
    other compulsory traffic); compute_gflops: float32 throughput of the attention matmuls;
    link_gbps: host <-> accelerator bandwidth; dispatch_us: fixed cost of one NumPy call;
    overlap: whether host work overlaps accelerator work (default False: serial).
    """

    memory_gbps: float = 10.0
    compute_gflops: float = 20.0
    link_gbps: float = 4.0
    dispatch_us: float = 1.5
    overlap: bool = False
    source: str = "given"
    # measured fixed cost (us) of one invocation of a host function (CALLS' keys); a function
    # not listed costs CALLS[function] x dispatch_us
    fixed_us: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("memory_gbps", "compute_gflops", "link_gbps", "dispatch_us"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or v < 0 or (v == 0 and name != "dispatch_us"):
                raise InputError(f"host parameter {name} must be a finite number > 0"
                                 f"{' (or 0)' if name == 'dispatch_us' else ''}, got {v!r}")
        for k, v in self.fixed_us.items():
            if k not in CALLS or not isinstance(v, (int, float)) or not 0 <= v < math.inf:
                raise InputError(f"host parameter fixed_us[{k!r}] must name one of "
                                 f"{', '.join(CALLS)} and be >= 0 us, got {v!r}")

    def fixed_seconds(self, function: str, count: int) -> float:
        us = self.fixed_us.get(function, CALLS[function] * self.dispatch_us)
        return count * us * 1e-6

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class OpCost:
    """One host op's work for one token (or one prefill)."""

    name: str
    bytes: float
    flops: float
    invocations: tuple[tuple[str, int], ...]   # (host function, times called)
    on: str = "host"      # "host" or "link"

    @property
    def calls(self) -> int:
        """NumPy calls, counted from the code."""
        return sum(CALLS[f] * n for f, n in self.invocations)

    def seconds(self, p: HostParams) -> float:
        if self.on == "link":
            return self.bytes / (p.link_gbps * 1e9)
        return (max(self.bytes / (p.memory_gbps * 1e9), self.flops / (p.compute_gflops * 1e9))
                + sum(p.fixed_seconds(f, n) for f, n in self.invocations))

    def as_dict(self, p: HostParams) -> dict[str, Any]:
        return {"bytes": self.bytes, "flops": self.flops, "calls": self.calls,
                "invocations": dict(self.invocations), "on": self.on,
                "seconds": self.seconds(p)}


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


def rms_norm_cost(width: int, tokens: int = 1) -> OpCost:
    """Read x and the weight, write the result; square+sum, scale, weight: 4 flops each."""
    return OpCost("norms", F32 * (2 * width * tokens + width), 4 * width * tokens,
                  (("rms_norm", 1),))


def op_costs(model: ModelShape, context: int, tokens: int = 1) -> list[OpCost]:
    """Every host op of `tokens` new tokens whose last one sees `context` keys (prefill:
    tokens = context = prompt length, causal; decode: tokens = 1), all layers."""
    if isinstance(context, bool) or not isinstance(context, int) or context < 1:
        raise InputError(f"context (KV cache length L) must be an integer >= 1, got {context!r}")
    if not 1 <= tokens <= context:
        raise InputError(f"tokens must be in 1..context={context}, got {tokens!r}")
    n, h, v = model.num_hidden_layers, model.hidden_size, model.vocab_size
    nh, nkv, d = model.num_attention_heads, model.num_key_value_heads, model.head_dim
    t = tokens
    # keys each new token sees, summed: positions context-t+1 .. context
    pairs = t * context - t * (t - 1) // 2
    norms = norm_widths(model)
    ops: list[OpCost] = [
        OpCost("embedding", t * h * (BF16 + F32), 0, (("embedding", 1),)),
        OpCost("norms", n * sum(F32 * (2 * w * t + w) for w in norms) + F32 * (2 * h * t + h),
               n * sum(4 * w * t for w in norms) + 4 * h * t,
               (("rms_norm", n * len(norms) + 1),)),
        # q and k rotated: read x, cos, sin, write; 2 mul + 1 add per element
        OpCost("rope", n * t * (nh + nkv) * d * 4 * F32, n * t * (nh + nkv) * d * 3,
               (("rope", 2 * n),)),
        # K and V read from the cache (every key once, each KV head serving its query group),
        # the new k, v appended; QK^T and AV are 2 flops per (head, key, dim) each; softmax
        # SOFTMAX_FLOPS per score; scores written and read back once
        OpCost("attention",
               n * (F32 * 2 * nkv * d * (context + t) + F32 * 2 * nh * pairs),
               n * (4 * nh * d * pairs + SOFTMAX_FLOPS * nh * pairs),
               (("attention", n),)),
        # quantise each distinct input (read float32, write int8, 4 flops per element) and
        # dequantise each matmul's int32 result to float32 (2 flops per element)
        OpCost("quantisation",
               n * t * (sum((F32 + 1) * k for k in quant_widths(model))
                        + sum((INT32 + F32) * mm.n for mm in model.matmuls())),
               n * t * (4 * sum(quant_widths(model)) + 2 * sum(mm.n for mm in model.matmuls())),
               (("quantize", n * len(quant_widths(model))), ("dequantize", n * len(model.layer)))),
        # the head runs on the last token only (generate); its bf16 weights are read once and
        # widened block by block into a float32 buffer (ops.LMHead) that is written and read
        # back: a 1024-row block of a 2,560-wide head is 10 MB, more than the caches
        OpCost("lm_head", v * h * (BF16 + 2 * F32) + v * F32, 2 * v * h,
               (("lm_head_block", -(-v // LM_HEAD_BLOCK_ROWS)),)),
        # int8 activations in and int32 results out for every BitLinear
        OpCost("link", n * t * sum(mm.k + INT32 * mm.n for mm in model.matmuls()), 0, (), "link"),
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

def _best(fn: Any, repeat: int, budget_s: float = 1.5) -> float:
    """The fastest of `repeat` runs, stopping early after budget_s. Taking the minimum skips
    the first calls' warm-up (BLAS threads starting, pages faulting in), which on a loaded
    machine can cost a thousand times a warm call."""
    best = math.inf
    end = time.perf_counter() + budget_s
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        if t0 > end:
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


def calibrate_host(link_gbps: float = HostParams.link_gbps) -> HostParams:
    """Measure this machine in a second or two (more when loaded) with host/ops.py's calls:

    dispatch: per NumPy call, from ops.rms_norm, apply_rope and the activation quantisation
    on 16-element inputs (where the work is nothing and the calls are everything);
    memory: ops.LMHead's blocked bf16 -> float32 widening and einsum GEMV (its traffic / s);
    compute: ops.attention over KVCache-like views at a 2B-4T head layout, K/V out of the
    CPU caches (flops / s: the attention's throughput, its K/V reads included).
    The link cannot be measured from here: it is given.
    """
    from ..golden.quant import dequantize, quantize_activations
    from .ops import LMHead, apply_rope, attention, rms_norm

    rng = np.random.default_rng(0)
    t16 = rng.standard_normal((1, 16), np.float32)
    w16 = np.ones(16, np.float32)
    r16 = rng.standard_normal((1, 1, 16), np.float32)
    acc = np.ones((1, 16), np.int32)

    nh, nkv, d = 4, 1, 16
    q4 = rng.standard_normal((nh, 1, d), np.float32)
    k4 = rng.standard_normal((nkv, 8, d), np.float32)[:, :4]
    tiny = {
        "rms_norm": lambda: rms_norm(t16, w16, 1e-5),
        "rope": lambda: apply_rope(r16, t16, t16),
        "quantize": lambda: quantize_activations(t16),
        "dequantize": lambda: dequantize(acc, w16[:1].reshape(1, 1), 0.5),
        "attention": lambda: attention(q4, k4, k4, 3, 0.25),
    }
    fixed = {f: _best(lambda fn=fn: [fn() for _ in range(50)], 5, 0.3) / 50 * 1e6
             for f, fn in tiny.items()}
    dispatch = sum(fixed[f] for f in tiny) / sum(CALLS[f] for f in tiny) * 1e-6

    vocab, hidden = 16384, 2560
    raw = (rng.standard_normal((vocab, hidden), np.float32).view(np.uint32) >> 16
           ).astype(np.uint16)
    head = LMHead(Bf16Rows(raw))  # type: ignore[arg-type]
    x = rng.standard_normal((1, hidden), np.float32)
    head(x)
    t_head = _best(lambda: head(x), 3)
    fixed_head = -(-vocab // LM_HEAD_BLOCK_ROWS) * CALLS["lm_head_block"] * dispatch
    mem = raw.size * (BF16 + 2 * F32) / max(t_head - fixed_head, t_head / 2)

    # the KV cache hands attention views of a larger buffer (ops.KVCache), not packed arrays,
    # and a decode token's layers each read their own K/V, which are never still in the CPU
    # caches from the token before: so several layers' caches take turns here
    nh, nkv, d, ctx, layers = 20, 5, 128, 1024, 8
    q = rng.standard_normal((nh, 1, d), np.float32)
    kv = [np.full((nkv, 2 * ctx, d), 0.01 * i, np.float32)[:, :ctx] for i in range(layers)]

    def att() -> None:
        for i in range(0, layers, 2):
            attention(q, kv[i], kv[i + 1], ctx - 1, d ** -0.5)

    t_att = _best(att, 20) / (layers // 2)
    flops = 4 * nh * d * ctx + SOFTMAX_FLOPS * nh * ctx
    comp = flops / max(t_att - fixed["attention"] * 1e-6, t_att / 2)
    return HostParams(memory_gbps=mem / 1e9, compute_gflops=comp / 1e9, link_gbps=link_gbps,
                      dispatch_us=dispatch * 1e6, source="calibrated", fixed_us=fixed)


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
                             capture_output=True, text=True, timeout=120).stdout
        p = json.loads(out)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise InputError(f"host calibration failed ({exc}); give --host-gbps and "
                         "--host-gflops instead") from None
    return _params(p, link_gbps=link_gbps, source="calibrated")


def _params(stored: dict[str, Any], **over: Any) -> HostParams:
    names = {f.name for f in fields(HostParams)}
    return HostParams(**{k: v for k, v in stored.items() if k in names} | over)


def _machine_key() -> str:
    return f"{platform.node()}|{platform.machine()}|{platform.processor()}|numpy {np.__version__}"


def cached_calibration(force: bool = False, path: Path | None = None) -> HostParams:
    """calibrate_host(), cached in $TRITIUM_BUILD/host_calibration.json per machine and NumPy
    version so repeated estimates stay fast; force measures again."""
    path = path or build_root() / CALIBRATION_FILE
    key = _machine_key()
    # Processes estimating at once (test workers, sweep workers) wait for one calibration
    # rather than each measuring (and slowing) the machine and disagreeing with the others.
    with _locked(path):
        if not force and path.is_file():
            try:
                stored = json.loads(path.read_text())
                if stored.get("key") == key:
                    return _params(stored["params"], source=f"calibrated (cached in {path})")
            except (OSError, ValueError, KeyError, TypeError, InputError):
                pass    # a damaged cache is measured again and rewritten
        params = calibrate_host_subprocess()
        # a read-only build folder only costs the next run a calibration
        with contextlib.suppress(OSError):
            atomic_write(path, json.dumps({"key": key, "params": params.to_dict()}, indent=1))
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
