"""Tokens/s and joules/token of an array on a BitNet b1.58 model, from the validated models.

For every matmul of every decoder layer (q, k, v, o, gate, up, down) the estimator prices a
prefill GEMM (M = prompt length) and a decode GEMV (M = 1) with golden.memory (compute cycles
from the RTL-checked cycle models, plus DRAM transfers at the configured bandwidth) and
golden.energy (event counts x the per-operation table). With dataflow "auto" it takes the
faster dataflow for each matmul, which assumes one array implements both and the host picks
per matmul. Identical shapes are priced once: a 30-layer model costs 14 distinct GEMMs (x the
dataflows tried) unless real per-layer non-zero counts come from a checkpoint.

Not on the accelerator, so not in the cycle or energy totals: embedding lookup, RMSNorms,
RoPE, attention (QK^T, softmax, AV over the KV cache), activation quantisation, and the LM
head (hidden x vocab, bf16). host/hostcost.py prices them, with the host <-> accelerator
transfers, into the "end_to_end" section.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..golden.checks import InputError
from ..golden.config import DATAFLOWS, MAX_DRAM_BYTES_PER_CYCLE, ArrayConfig, ConfigError
from ..golden.energy import COMPONENTS, EnergyTable, energy_of, group
from ..golden.memory import (
    PACKING_BITS,
    GemmCost,
    MemoryConfig,
    gemm_cost,
    os_bytes_per_cycle,
    os_config,
)
from ..golden.models import ModelShape
from ..golden.os_model import stream_gemm_cycles
from ..golden.os_port import IDEAL, PortTiming
from . import zoo
from .arch import resolve_model
from .hostcost import HostParams, bottleneck, combine, op_costs

DATAFLOW_CHOICES = ("auto", "ws", "os")
DEFAULT_ZERO_FRACTION = 1 / 3
# bitnet-kv260 (DESIGN.md): 2B-4T decode on a KV260 at 250 MHz with 16 GB/s DDR4
KV260_TOKENS_PER_S = 16.8
KV260_J_PER_TOKEN = 0.38


@dataclass(frozen=True)
class EstimateConfig:
    """Everything an estimate depends on besides the model and the energy table.

    dram_gbps: DRAM bandwidth in GB/s (10^9 B/s); None takes the array's own
    dram_bytes_per_cycle at its clock.
    """

    array: ArrayConfig
    dram_gbps: float | None = None
    dataflow: str = "auto"
    prompt_len: int = 128
    gen_len: int = 128
    weight_bits: float | None = None      # None: array.weight_packing's (2.0 or 1.6)
    zero_fraction: float | None = None   # None: measured from the checkpoint, else 1/3
    # None: HostParams()'s nominal values, not this machine's: a library call stays fast and
    # reproducible (sweeps, tests); `tritium estimate` passes the cached calibration
    # (hostcost.cached_calibration) unless the parameters are given
    host: HostParams | None = None
    context: int | None = None           # KV cache length L for decode; None: prompt_len
    # How the memory behind the os top's port answers (golden/os_port.py): its latency and
    # stall rate; the bandwidth stays dram_gbps. IDEAL: the answer comes the next cycle.
    os_port: PortTiming = IDEAL

    def __post_init__(self) -> None:
        if not isinstance(self.os_port, PortTiming):
            raise ConfigError(f"os_port must be a golden.os_port.PortTiming, got "
                              f"{self.os_port!r}")
        if self.os_port.bytes_per_cycle is not None or self.os_port.depth is not None:
            raise ConfigError("os_port: the estimator takes the port's bandwidth from "
                              "dram_gbps and its depth as latency + 2; leave bytes_per_cycle "
                              "and depth None")
        g = self.dram_gbps
        if g is not None and (isinstance(g, bool) or not isinstance(g, (int, float))
                              or not math.isfinite(g) or not g > 0):
            raise ConfigError(f"dram_gbps (DRAM bandwidth in GB/s) must be > 0, got {g!r}")
        if self.dataflow not in DATAFLOW_CHOICES:
            raise ConfigError(f"dataflow must be one of {', '.join(DATAFLOW_CHOICES)}, got "
                              f"{self.dataflow!r}")
        for name, low in (("prompt_len", 1), ("gen_len", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise InputError(f"{name} must be an integer >= {low}, got {v!r}")
        c = self.context
        if c is not None and (isinstance(c, bool) or not isinstance(c, int) or c < 1):
            raise InputError(f"context (KV cache length L) must be an integer >= 1, got {c!r}")
        z = self.zero_fraction
        if z is not None and (isinstance(z, bool) or not isinstance(z, (int, float))
                              or not 0 <= z <= 1):
            raise InputError(f"zero_fraction (fraction of zero ternary weights) must be in "
                             f"0..1, got {z!r}")

    @property
    def gbps(self) -> float:
        if self.dram_gbps is not None:
            return float(self.dram_gbps)
        return self.array.dram_bytes_per_cycle * self.array.clock_mhz * 1e6 / 1e9

    @property
    def memory(self) -> MemoryConfig:
        bits = (PACKING_BITS[self.array.weight_packing] if self.weight_bits is None
                else self.weight_bits)
        return MemoryConfig(self.gbps * 1e9 / (self.array.clock_mhz * 1e6), weight_bits=bits)


@dataclass
class Priced:
    cost: GemmCost
    energy: dict[str, float]          # joules per component

    @property
    def energy_j(self) -> float:
        return sum(self.energy.values())

    def as_dict(self) -> dict[str, Any]:
        d = self.cost.as_dict()
        d["energy_j"] = self.energy_j
        return d


@dataclass
class Phase:
    """Totals of one phase (prefill of the whole prompt, or one decode step)."""

    tokens: int
    cycles: float = 0.0
    compute_cycles: int = 0
    tiles: int = 0
    macs: int = 0
    zero_skips: int = 0
    dram_bytes: float = 0.0
    dram_weight_bytes: float = 0.0
    useful_ops: int = 0                # M*K*N summed: (activation, weight) pairs
    energy: dict[str, float] = field(default_factory=lambda: dict.fromkeys(COMPONENTS, 0.0))
    dataflows: dict[str, int] = field(default_factory=dict)   # matmuls per dataflow

    def add(self, p: Priced) -> None:
        c = p.cost
        self.cycles += c.cycles
        self.compute_cycles += c.compute_cycles
        self.tiles += c.events.tiles
        self.macs += c.events.macs
        self.zero_skips += c.events.zero_skips
        self.dram_bytes += c.dram_bytes
        self.dram_weight_bytes += c.dram_weight_bytes
        self.useful_ops += c.m * c.k * c.n
        for k, v in p.energy.items():
            self.energy[k] += v
        self.dataflows[c.dataflow] = self.dataflows.get(c.dataflow, 0) + 1

    @property
    def energy_j(self) -> float:
        return sum(self.energy.values())

    def totals(self) -> dict[str, Any]:
        return {"cycles": self.cycles, "compute_cycles": self.compute_cycles,
                "tiles": self.tiles, "macs": self.macs, "zero_skips": self.zero_skips,
                "dram_bytes": self.dram_bytes, "energy_j": self.energy_j}


def measure_nnz(directory: str | Path, model: ModelShape) -> list[dict[str, int]]:
    """Non-zero weights of every BitLinear of a checkpoint: [layer][projection] -> count.

    Packed uint8 weights are counted straight from their bytes (a zero is the 2-bit code 1;
    the padding of a short last block holds code 0, so it is never miscounted); float master
    weights are quantised as the runtime does and then counted.
    """
    from .weights import load_linear, read_config

    ckpt, cfg = read_config(directory)
    try:
        shapes = cfg.linear_shapes()
        mine = {mm.name: (mm.n, mm.k) for mm in model.matmuls()}
        for full, shape in shapes.items():
            if mine[full.split(".")[-1]] != shape:
                raise InputError(f"{directory}: config.json gives {full} the shape {shape} "
                                 f"but the estimator read {mine[full.split('.')[-1]]}")
        zeros_per_byte = np.array([sum(((b >> s) & 3) == 1 for s in (0, 2, 4, 6))
                                   for b in range(256)], dtype=np.int64)
        out = []
        for i in range(cfg.num_hidden_layers):
            layer = {}
            for full, (out_f, in_f) in shapes.items():
                name = f"model.layers.{i}.{full}"
                info = ckpt.info(name + ".weight")
                if info.dtype == "U8" and info.shape == (-(-out_f // 4), in_f):
                    counts = np.bincount(ckpt.raw(name + ".weight").reshape(-1), minlength=256)
                    layer[full.split(".")[-1]] = out_f * in_f - int(counts @ zeros_per_byte)
                else:
                    lin = load_linear(ckpt, cfg, name, out_f, in_f)
                    layer[full.split(".")[-1]] = int(np.count_nonzero(lin.w))
            out.append(layer)
        return out
    finally:
        ckpt.close()


def _has_weights(path: Path) -> bool:
    return path.is_dir() and (any(path.glob("*.safetensors"))
                              or (path / "model.safetensors.index.json").is_file())


def array_bytes_per_cycle(mem: MemoryConfig) -> int:
    """ArrayConfig.dram_bytes_per_cycle for this memory: the os row width where os can run
    at this rate, else the whole bytes per cycle within ArrayConfig's range."""
    try:
        return os_bytes_per_cycle(mem)
    except ConfigError:
        return max(1, min(MAX_DRAM_BYTES_PER_CYCLE, int(mem.dram_bytes_per_cycle + 1e-9)))


class Estimator:
    """Prices each distinct (M, K, N, nnz, dataflow) GEMM once."""

    def __init__(self, ecfg: EstimateConfig, table: EnergyTable) -> None:
        self.ecfg = ecfg
        self.table = table
        self.mem = ecfg.memory
        self._cache: dict[tuple[int, int, int, int, str], Priced] = {}
        self.notes: list[str] = []
        if ecfg.dataflow != "auto":
            if ecfg.dataflow == "os":
                os_bytes_per_cycle(self.mem)      # a clear error now, not per matmul
            self.candidates: tuple[str, ...] = (ecfg.dataflow,)
            return
        cands = ["ws"]
        try:
            os_bytes_per_cycle(self.mem)
            cands.append("os")
        except ConfigError as exc:
            self.notes.append(f"auto did not consider os: {exc}")
        self.candidates = tuple(cands)

    def price(self, m: int, k: int, n: int, nnz: int, dataflow: str) -> Priced:
        key = (m, k, n, nnz, dataflow)
        p = self._cache.get(key)
        if p is None:
            cost = gemm_cost(self.ecfg.array, self.mem, m, k, n, nnz, dataflow)
            if dataflow == "os" and self.ecfg.os_port != IDEAL:
                cost = replace(cost, cycles=float(self.os_port_cycles(m, k, n)))
            p = Priced(cost, energy_of(self.table, cost.energy_events(self.ecfg.array)))
            self._cache[key] = p
        return p

    def os_port_cycles(self, m: int, k: int, n: int) -> int:
        """os cycles behind ecfg.os_port. Latency alone has golden's closed form; a stalling
        port is simulated beat by beat (golden.os_port.start_cycles) for one activation row,
        and an M-row GEMM adds M times that row's stall cycles to the closed form: the stall
        pattern restarts with each start, so rows of one long start see other stall cycles
        than the first row did (an approximation; exact for M = 1, i.e. decode)."""
        oc = os_config(self.ecfg.array, self.mem)
        port = self.ecfg.os_port
        if port.ideal or m == 1:
            return stream_gemm_cycles(oc, m, k, n, port)
        unstalled = PortTiming(latency=port.latency)
        per_row = stream_gemm_cycles(oc, 1, k, n, port) - stream_gemm_cycles(oc, 1, k, n,
                                                                              unstalled)
        return stream_gemm_cycles(oc, m, k, n, unstalled) + m * per_row

    def best(self, m: int, k: int, n: int, nnz: int) -> Priced:
        """The candidate dataflow with the fewest cycles (ties: the first, "ws"): the rule of
        golden.memory.best_dataflow, which the runtime's auto backend uses."""
        return min((self.price(m, k, n, nnz, df) for df in self.candidates),
                   key=lambda p: p.cost.cycles)


def _nnz_for(model: ModelShape, measured: list[dict[str, int]] | None, zero_fraction: float
             ) -> list[dict[str, int]]:
    if measured is not None:
        return measured
    per = {mm.name: round((1 - zero_fraction) * mm.weights) for mm in model.matmuls()}
    return [per] * model.num_hidden_layers


def estimate(model: ModelShape, ecfg: EstimateConfig, table: EnergyTable | None = None, *,
             nnz: list[dict[str, int]] | None = None, nnz_source: str | None = None
             ) -> dict[str, Any]:
    """The estimate as a JSON-ready dict (see README "tritium estimate" for the schema).

    nnz: per-layer, per-projection non-zero weight counts (e.g. from measure_nnz); without
    them every matmul has round((1 - zero_fraction) * K * N) non-zeros.
    """
    t0 = time.perf_counter()
    table = table or EnergyTable.load()
    cfg = ecfg.array
    if model.max_k > cfg.max_k:
        raise InputError(
            f"model {model.name} has a reduction of K={model.max_k} but ArrayConfig.max_k="
            f"{cfg.max_k}: its partial sums do not fit the accumulator/output buffer; raise "
            f"--max-k to at least {model.max_k} (acc_bits={cfg.acc_bits} allows up to "
            f"{(2 ** (cfg.acc_bits - 1) - 1) // 2 ** (cfg.act_bits - 1)})")
    if ecfg.prompt_len + ecfg.gen_len > model.max_position_embeddings:
        raise InputError(f"prompt_len={ecfg.prompt_len} + gen_len={ecfg.gen_len} exceed "
                         f"{model.name}'s max_position_embeddings="
                         f"{model.max_position_embeddings}")
    context = ecfg.prompt_len if ecfg.context is None else ecfg.context
    if context > model.max_position_embeddings:
        raise InputError(f"context={context} exceeds {model.name}'s max_position_embeddings="
                         f"{model.max_position_embeddings}")
    if nnz is not None and len(nnz) != model.num_hidden_layers:
        raise InputError(f"nnz has {len(nnz)} layers but {model.name} has "
                         f"{model.num_hidden_layers}")
    zero_fraction = DEFAULT_ZERO_FRACTION if ecfg.zero_fraction is None else ecfg.zero_fraction
    counts = _nnz_for(model, nnz, zero_fraction)
    est = Estimator(ecfg, table)
    mem = est.mem
    f_hz = cfg.clock_mhz * 1e6
    matmuls = model.matmuls()

    prefill, decode = Phase(ecfg.prompt_len), Phase(1)
    layers = []
    for li in range(model.num_hidden_layers):
        lp, ld = Phase(ecfg.prompt_len), Phase(1)
        per_mm = {}
        for mm in matmuls:
            nz = counts[li][mm.name]
            pp = est.best(ecfg.prompt_len, mm.k, mm.n, nz)
            pd = est.best(1, mm.k, mm.n, nz)
            for ph, p in ((lp, pp), (ld, pd), (prefill, pp), (decode, pd)):
                ph.add(p)
            per_mm[mm.name] = {"k": mm.k, "n": mm.n, "nnz": nz,
                               "prefill": pp.as_dict(), "decode": pd.as_dict()}
        layers.append({"layer": li, "prefill": lp.totals(), "decode": ld.totals(),
                       "matmuls": per_mm})

    bytes_per_s = ecfg.gbps * 1e9
    weight_bytes_per_token = mem.weight_bytes(model.ternary_weights)
    roofline = bytes_per_s / weight_bytes_per_token
    decode_s = decode.cycles / f_hz
    prefill_s = prefill.cycles / f_hz
    decode_tps = 1 / decode_s
    head = model.lm_head
    head_bytes = head.weights * 2              # bf16
    head_s = head_bytes / bytes_per_s

    def phase_dict(ph: Phase, seconds: float, tokens: int) -> dict[str, Any]:
        return {
            "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
            "cycles": ph.cycles, "compute_cycles": ph.compute_cycles,
            "stall_cycles": ph.cycles - ph.compute_cycles,
            "tiles": ph.tiles, "macs": ph.macs, "zero_skips": ph.zero_skips,
            "dram_bytes": ph.dram_bytes, "dram_weight_bytes": ph.dram_weight_bytes,
            "ops": ph.useful_ops,
            # (activation, weight) pairs per PE-cycle: 1.0 means every PE works every cycle
            "utilization": ph.useful_ops / (cfg.pes * ph.cycles),
            "dram_bandwidth_utilization": ph.dram_bytes / (mem.dram_bytes_per_cycle
                                                           * ph.cycles),
            "dataflows": dict(ph.dataflows),
        }

    pre = phase_dict(prefill, prefill_s, ecfg.prompt_len)
    # the array's compute peak: every PE does one (activation, weight) pair per cycle
    pre["peak_tokens_per_s"] = cfg.pes * f_hz / model.ternary_weights
    pre["peak_fraction"] = pre["tokens_per_s"] / pre["peak_tokens_per_s"]
    dec = phase_dict(decode, decode_s, 1)
    dec["cycles_per_token"] = dec.pop("cycles")
    dec["seconds_per_token"] = dec.pop("seconds")
    dec.pop("tokens")
    dec.update({
        "tokens_per_s": decode_tps,
        "roofline_tokens_per_s": roofline,
        "roofline_fraction": decode_tps / roofline,
        "weight_bytes_per_token": weight_bytes_per_token,
        "tokens_per_s_with_lm_head_dram": 1 / (decode_s + head_s),
    })
    pre_j, dec_j = prefill.energy_j, decode.energy_j
    energy = {
        "prefill_j_per_token": pre_j / ecfg.prompt_len,
        "decode_j_per_token": dec_j,
        "total_j": pre_j + ecfg.gen_len * dec_j,
        "decode_w": dec_j * decode_tps,
        "prefill_w": pre_j / prefill_s,
        "prefill_breakdown_j_per_token": {k: v / ecfg.prompt_len
                                          for k, v in prefill.energy.items()},
        "decode_breakdown_j_per_token": dict(decode.energy),
        "prefill_groups_j_per_token": {k: v / ecfg.prompt_len
                                       for k, v in group(prefill.energy).items()},
        "decode_groups_j_per_token": group(decode.energy),
        "excluded": "CPU-side work: embedding, RMSNorms, RoPE, attention, activation "
                    "quantisation and the LM head; static power of anything but the PEs",
        "table": table.to_dict(),
    }
    host = ecfg.host or HostParams(
        source="nominal (HostParams defaults, not measured; pass "
               "host=hostcost.cached_calibration() for this machine's)")
    e2e = end_to_end(model, ecfg, host, context, decode, decode_s, prefill, prefill_s)
    mem_cfg = mem.to_dict() | {"dram_gbps": ecfg.gbps}
    result = {
        "tool": "tritium estimate",
        "model": model.to_dict(),
        "config": {
            "array": cfg.to_dict(),
            "memory": mem_cfg,
            "dataflow": ecfg.dataflow,
            "dataflows_available": list(DATAFLOWS),
            "os_port": {"latency": ecfg.os_port.latency,
                        "stall_ppm": ecfg.os_port.stall_ppm, "seed": ecfg.os_port.seed},
            "prompt_len": ecfg.prompt_len,
            "gen_len": ecfg.gen_len,
            "weight_zero_fraction": None if nnz is not None else zero_fraction,
            "nnz_source": nnz_source or ("given" if nnz is not None else
                                         f"assumed: {zero_fraction:.4g} of the ternary "
                                         "weights are zero"),
            "node_nm": table.node_nm,
        },
        "prefill": pre,
        "decode": dec,
        "energy": energy,
        "totals": {"seconds": prefill_s + ecfg.gen_len * decode_s,
                   "prefill_seconds": prefill_s, "decode_seconds": ecfg.gen_len * decode_s,
                   "energy_j": pre_j + ecfg.gen_len * dec_j},
        "lm_head": {"k": head.k, "n": head.n, "weights": head.weights,
                    "bf16_bytes": head_bytes, "on": "cpu",
                    "dram_seconds_per_token": head_s,
                    "note": "excluded from the accelerator's cycles and energy; if the CPU "
                            "streams the bf16 head over the same DRAM, each token also needs "
                            "dram_seconds_per_token (decode.tokens_per_s_with_lm_head_dram)"},
        "end_to_end": e2e,
        "comparison": {
            "bitnet_kv260": {"tokens_per_s": KV260_TOKENS_PER_S,
                             "j_per_token": KV260_J_PER_TOKEN,
                             "note": "hand-built KV260 design, 2B-4T, 250 MHz, 4 streaming "
                                     "ternary GEMV engines at 12.7 of 16 GB/s, 6.2 W board "
                                     "power (DESIGN.md)"},
        },
        "assumptions": assumptions(ecfg, table, mem, zero_fraction, nnz is not None)
        + est.notes,
        "layers": layers,
        "distinct_gemms_priced": len(est._cache),
    }
    result["elapsed_s"] = time.perf_counter() - t0
    return result


def _accel_label(ph: Phase, mem: MemoryConfig) -> str:
    """What limits the accelerator: DRAM when moving its bytes at the DRAM rate takes more
    than half its cycles (os counts transfers inside its cycles, so stalls alone can't tell),
    else its compute."""
    return "DRAM" if 2 * ph.dram_bytes / mem.dram_bytes_per_cycle > ph.cycles \
        else "accelerator compute"


def end_to_end(model: ModelShape, ecfg: EstimateConfig, host: HostParams, context: int,
               decode: Phase, decode_s: float, prefill: Phase, prefill_s: float
               ) -> dict[str, Any]:
    """Tokens/s with the host's share (hostcost) added to the accelerator's time."""
    dec_ops = op_costs(model, context, 1)
    dec_s = {op.name: op.seconds(host) for op in dec_ops}
    pre_ops = op_costs(model, ecfg.prompt_len, ecfg.prompt_len)
    pre_s = {op.name: op.seconds(host) for op in pre_ops}
    token_s = combine(decode_s, dec_s, host)
    prefill_total = combine(prefill_s, pre_s, host)
    return {
        "decode_tokens_per_s": 1 / token_s,
        "decode_seconds_per_token": token_s,
        "accelerator_decode_tokens_per_s": 1 / decode_s,
        "prefill_tokens_per_s": ecfg.prompt_len / prefill_total,
        "prefill_seconds": prefill_total,
        "bottleneck": bottleneck(decode_s, _accel_label(decode, ecfg.memory), dec_s),
        "prefill_bottleneck": bottleneck(prefill_s, _accel_label(prefill, ecfg.memory), pre_s),
        "context": context,
        "host_seconds_per_token": dec_s,
        "host_ops_per_token": {op.name: op.as_dict(host) for op in dec_ops},
        "host_seconds_prefill": pre_s,
        "host": host.to_dict(),
        "host_source": host.source,
        "overlap": ("host and accelerator overlap perfectly (a token costs the largest of "
                    "accelerator, host and link time)" if host.overlap else
                    "none: the host waits for each matmul and the accelerator for the host, "
                    "so accelerator, host and link times add"),
    }


def assumptions(ecfg: EstimateConfig, table: EnergyTable, mem: MemoryConfig,
                zero_fraction: float, measured: bool) -> list[str]:
    a = ecfg.array
    try:
        os_row: int | None = os_bytes_per_cycle(mem)
    except ConfigError:
        os_row = None
    out = [
        "Compute cycles, tiles, MACs and zero skips come from the RTL-validated cycle models "
        "(golden.cycles for ws, golden.os_model for os); DRAM time is the added assumption.",
        f"DRAM: {ecfg.gbps:g} GB/s (10^9 B/s) at {a.clock_mhz:g} MHz = "
        f"{mem.dram_bytes_per_cycle:.4g} bytes per cycle, one channel, fractional cycles.",
        f"Weights are stored packed at {mem.weight_bits:g} bits per ternary weight "
        "(2: HF/I2_S packing, 1.6: base-3, five per byte); activations int8; results one "
        "32-bit word each.",
        ("ws, double-buffered weights (weight_buffers=2): runs of K tiles stream back to "
         "back (golden.tiling.plan_runs); each run's weights and activations load into the "
         "half of the buffers the streaming run does not use, so a run costs max(compute, "
         "next run's load); the first load is exposed and results drain serially after each "
         "output block's last run.")
        if a.weight_buffers == 2 else
        "ws: each tile's activations load serially (one activation buffer, read while busy); "
        + ("the next tile's weights load into the second weight slot while the current tile "
           f"computes (weight_tiles={a.weight_tiles} >= 2): a tile costs act load + "
           "max(compute, weight load)"
           if a.weight_tiles >= 2 else
           "weight_tiles=1: weight loads are serial with compute")
        + "; results drain serially after each output block's last K tile.",
        "os: golden.os_model's cycles are exact for the os RTL and already include every DRAM "
        f"transfer (activation load, {a.weight_packing} weight stream, result drain) one after "
        "another on the one channel, at the DRAM rate rounded down to a multiple of 4 bytes "
        "per cycle" + (f" ({os_row} here)" if os_row else "") + "; os streams "
        + ("base-3 bytes (5 weights each, 1.6 bits)" if a.weight_packing == "base3"
           else "2-bit codes") + " (ArrayConfig.weight_packing).",
        _port_assumption(ecfg.os_port),
        "auto picks, per matmul and phase, the dataflow with fewer cycles (one array "
        "implementing both)." if ecfg.dataflow == "auto" else
        f"Every matmul runs on the {ecfg.dataflow} dataflow.",
        "Decode is one M = 1 GEMV per matmul per token; its cost does not depend on the "
        "position because attention and the KV cache stay on the CPU.",
        "Prefill runs the whole prompt as one M = prompt_len GEMM per matmul (chunked by "
        "act_depth, or by plan_runs when double-buffered, as the hardware does); "
        "prefill.peak_fraction is tokens_per_s over the array's compute peak.",
        "Zero weights: " + ("counted per matmul from the checkpoint." if measured else
                            f"{zero_fraction:.4g} of each matrix (an assumption; give a "
                            "checkpoint folder to count them)."),
        "Excluded from cycles and energy: CPU-side work (embedding, norms, RoPE, attention, "
        "quantisation, LM head) and host/driver overheads; end_to_end adds the host's time "
        "(host/hostcost.py: per op max(DRAM bytes / one thread's bandwidth, BLAS flops / "
        "compute) + per host function called, a fixed cost + a cost per element; the LM head "
        "at its bf16 widen+GEMV rate split over its threads) and the int8-in/int32-out link "
        "transfers of every matmul.",
        "end_to_end: decode attends over a KV cache of length context; prefill scores every "
        "(query, key) pair of the prompt and masks the future ones (as host/ops.py does), and "
        "the LM head runs on the last prompt token only (as generate does).",
        "decode.roofline_tokens_per_s = DRAM bandwidth / packed ternary weight bytes per "
        "token (decoder layers only).",
        "decode.utilization = (activation, weight) pairs per PE-cycle over all cycles "
        "including DRAM stalls.",
        f"Energy: {table.name} table at {table.node_nm:g} nm"
        + (f" (scaled from {table.base_node_nm:g} nm; {table.scaling_source})"
           if table.base_node_nm is not None else "")
        + "; adds at acc_bits; SRAM priced per 64 bits by buffer capacity, writes as reads; "
        "register bits written per PE visit (activation + partial sum) and per weight-code "
        "load; idle PE-cycles (no vector in the PE, including DRAM stalls) pay clock/leakage "
        "of the PE's flip-flops at register_bit_idle; DRAM per byte, not node-scaled."
        + (" acc_overflow=saturate: each PE and output add also pays its clamp, priced as one "
           "(acc_bits+1)-bit add (two constant comparisons of about half an adder each, "
           "derived from the table's adder energy per bit; no published figure; the "
           "multiplexer unpriced) in the 'saturation' component."
           if a.acc_overflow == "saturate" else ""),
    ]
    return out


def _port_assumption(port: PortTiming) -> str:
    if port == IDEAL:
        return ("os memory port: ideal, each row answered the cycle after it is asked for "
                "(golden/os_port.py latency 0, no stalls); each start still waits that one "
                "cycle for its first row.")
    text = (f"os memory port: latency {port.latency} cycles, so each start waits "
            f"{1 + port.latency} cycles for its first row (golden.os_model.stream_gemm_cycles,"
            " exact for the os RTL; later rows are asked for ahead, latency + 2 deep)")
    if port.stall_ppm:
        text += (f"; {port.stall_ppm} refused request cycles per million (seed {port.seed}), "
                 "simulated beat by beat for one activation row (exact for decode), M times "
                 "that row's stall cycles for an M-row prefill GEMM (an approximation)")
    return text + "; port waits count as stall_cycles and pay idle PE energy."


def resolve(model: str | Path) -> tuple[ModelShape, Path | None]:
    """(shape, checkpoint folder with weights or None)."""
    p = zoo.resolve(model) or Path(str(model))
    shape = resolve_model(p if p.is_dir() else model)
    return shape, (p if _has_weights(p) else None)

