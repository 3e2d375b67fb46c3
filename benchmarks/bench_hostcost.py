"""The host cost model (host/hostcost.py) against the golden backend's measured CPU time per
op, on random tensors of 2B-4T's real shapes (no checkpoint needed).

Each op is timed by calling the host/ops.py (and golden.quant) functions host/model.py calls
for one decode token of one layer (the embedding row and the LM head: the whole op), as the
least CPU time of repeated runs, the statistic calibrate_host() uses; then the whole host
share of a decode token in BitNetModel.generate on the golden backend (a 2B-4T-shaped random
checkpoint with fewer layers), process CPU time minus the backend's. Calibrations and
measurements take turns (each group of ops is measured between two calibrations and its model is
the mean of their predictions), so model and measurement see the same machine; every round is
reported, and the median over rounds. Target: model / measured within 25 % for every op.

    nice -n 10 python benchmarks/bench_hostcost.py [--rounds 3] [--token-layers 2] [--json FILE]
"""

from __future__ import annotations

import os

# one BLAS thread, as the calibration uses (host/hostcost.py ONE_THREAD_ENV): with the two
# cores shared, OpenBLAS's spinning threads make small matmuls bimodal by a factor of 1000
for _k, _v in {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
               "MKL_NUM_THREADS": "1"}.items():
    os.environ.setdefault(_k, _v)

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import replace  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from tritium.golden.files import build_root  # noqa: E402
from tritium.golden.models import ModelShape  # noqa: E402
from tritium.golden.quant import dequantize, quantize_activations  # noqa: E402
from tritium.host import BitNetModel, ops  # noqa: E402
from tritium.host.arch import resolve_model  # noqa: E402
from tritium.host.hostcost import (  # noqa: E402
    Bf16Rows,
    HostParams,
    OpCost,
    _env,
    calibrate_host,
    cpu_time,
    norm_widths,
    op_costs,
    quant_widths,
    random_bf16,
)
from tritium.host.safetensors import bf16_to_float32  # noqa: E402
from tritium.host.synthetic import write_random_checkpoint  # noqa: E402

CONTEXTS = (128, 512, 2048)
PREFILL = 128
SMALL = 20               # calls per timed run of the small ops: the clock's own cost amortised
KV_TOUCHED = 64 * 2**20   # bytes of K/V each timed loop reads: twice the L3, as 30 layers do


def layer_op(model: ModelShape, name: str, context: int, tokens: int = 1) -> OpCost:
    """One decoder layer's share of op `name`, from the model itself: the op's cost with two
    layers minus its cost with one (the final norm, embedding and head cancel)."""
    one, two = ({o.name: o for o in op_costs(replace(model, num_hidden_layers=n), context,
                                             tokens)}[name] for n in (1, 2))
    inv = dict.fromkeys(((f, e) for f, _, e in two.invocations), 0)
    for sign, op in ((1, two), (-1, one)):
        for f, c, e in op.invocations:
            inv[f, e] += sign * c
    return OpCost(name, two.bytes - one.bytes, two.flops - one.flops,
                  tuple((f, c, e) for (f, e), c in inv.items() if c),
                  stream_bytes=two.stream_bytes - one.stream_bytes)


class Cases:
    """The timed calls, built once (the tensors) and measured every round."""

    def __init__(self, m: ModelShape) -> None:
        self.m = m
        self.token_fn: Callable[[int], float] | None = None
        rng = np.random.default_rng(1)
        h, v, d = m.hidden_size, m.vocab_size, m.head_dim
        nh, nkv = m.num_attention_heads, m.num_key_value_heads
        # (label, model op, timed call, op calls per timed run, threads: "" the calling
        # thread, "one" the head on one thread, "all" the head on ops.threads())
        self.cases: list[tuple[str, OpCost, Callable[[], Any], int, str]] = []
        ops_128 = {o.name: o for o in op_costs(m, 128)}

        raw = random_bf16(v, h, rng)
        # a new row each call, from anywhere in the 656 MB table, as a token's id is
        ids = rng.integers(0, v, (1 << 16, 1))
        it = iter(range(10**9))
        self.add("embedding row", ops_128["embedding"],
                 lambda: [bf16_to_float32(raw[ids[next(it) & 0xFFFF]]) for _ in range(SMALL)],
                 SMALL)

        xs = {w: rng.standard_normal((1, w), np.float32) for w in norm_widths(m)}
        ws = {w: rng.standard_normal(w).astype(np.float32) for w in xs}
        self.add("norms (1 layer)", layer_op(m, "norms", 128),
                 lambda: [ops.rms_norm(xs[w], ws[w], 1e-5) for _ in range(SMALL)
                          for w in norm_widths(m)], SMALL)

        qh = rng.standard_normal((nh, 1, d), np.float32)
        kh = rng.standard_normal((nkv, 1, d), np.float32)
        cos, sin = ops.rope_cos_sin(np.array([100]), ops.rope_inv_freq(d, 5e5))
        self.add("rope (1 layer)", layer_op(m, "rope", 128),
                 lambda: [(ops.apply_rope(qh, cos, sin), ops.apply_rope(kh, cos, sin))
                          for _ in range(SMALL)], SMALL)

        qin = [rng.standard_normal((1, k), np.float32) for k in quant_widths(m)]
        accs = [rng.integers(-5000, 5000, (1, mm.n)).astype(np.int32) for mm in m.matmuls()]
        s = np.ones((1, 1), np.float32)
        self.add("quantisation (1 layer)", layer_op(m, "quantisation", 128),
                 lambda: [([quantize_activations(x) for x in qin],
                           [dequantize(a, s, 0.5) for a in accs]) for _ in range(SMALL)],
                 SMALL)

        # decode attention over a cache of L keys: KVCache's buffers are larger than L, and
        # enough layers' caches take turns that each call finds its K/V in DRAM, as a real
        # token's 30 layers (and the golden backend's weights between them) leave it
        for L in CONTEXTS:
            layers = max(4, -(-KV_TOUCHED // (2 * nkv * L * d * 4)))
            caches = []
            for _ in range(layers):
                cache = ops.KVCache(1, nkv, d, capacity=2 * L)
                kk = rng.standard_normal((nkv, L - 1, d), np.float32)
                cache.update(0, kk, kk)
                cache.length = L - 1
                caches.append(cache)

            def att(caches: list[ops.KVCache] = caches, L: int = L) -> None:
                for cache in caches:
                    ka, va = cache.update(0, kh, kh)
                    ops.attention(qh, ka, va, L - 1, d ** -0.5)

            self.add(f"attention L={L} (1 layer)", layer_op(m, "attention", L), att, layers)

        # a prefill's attention: every query against every key of the prompt, masked
        qp = rng.standard_normal((nh, PREFILL, d), np.float32)
        kp = rng.standard_normal((nkv, PREFILL, d), np.float32)
        self.add(f"attention prefill T={PREFILL} (1 layer)",
                 layer_op(m, "attention", PREFILL, PREFILL),
                 lambda: ops.attention(qp, kp, kp, 0, d ** -0.5))

        # the whole LM head, bf16 as stored: on one thread, and on ops.threads() threads
        head = ops.LMHead(Bf16Rows(raw))  # type: ignore[arg-type]
        x = rng.standard_normal((1, h), np.float32)
        self.head_op = ops_128["lm_head"]
        self.add("lm_head (bf16, 1 thread)", self.head_op, lambda: head(x), 1, "one")
        self.add(f"lm_head (bf16, {ops.threads()} threads)", self.head_op, lambda: head(x), 1,
                 "all")

    def token(self, layers: int, prompt: int = 128, new: int = 4) -> None:
        """The whole host share of a decode token in the runtime itself: BitNetModel.generate
        on the golden backend with a random checkpoint of 2B-4T's shape (`layers` layers, the
        full vocabulary), as process CPU time minus the backend's matmuls' (all threads)."""
        folder = build_root() / "bench_hostcost" / f"2b4t-{layers}-layers"
        if not (folder / "config.json").is_file():
            m = self.m
            write_random_checkpoint(folder, hidden=m.hidden_size, layers=layers,
                                    intermediate=m.intermediate_size,
                                    heads=m.num_attention_heads, kv_heads=m.num_key_value_heads,
                                    vocab=m.vocab_size, tied=True, packed=True)
        model = BitNetModel.from_pretrained(folder, backend="golden")
        backend_cpu = [0.0]
        matmul = model.backend.matmul

        def timed(*a: Any, **k: Any) -> Any:
            t0 = time.process_time()
            try:
                return matmul(*a, **k)
            finally:
                backend_cpu[0] += time.process_time() - t0

        model.backend.matmul = timed  # type: ignore[method-assign]
        ids = list(range(1, prompt + 1))

        def host_cpu(n: int) -> float:
            backend_cpu[0] = 0.0
            t0 = time.process_time()
            model.generate(ids, n, stop_at_eos=False)
            return time.process_time() - t0 - backend_cpu[0]

        self.token_shape = replace(self.m, num_hidden_layers=layers)
        self.token_fn = host_cpu
        self.token_args = (prompt, new)

    def token_measure(self, repeat: int = 3) -> float:
        prompt, new = self.token_args
        one = min(self.token_fn(1) for _ in range(repeat))      # type: ignore[misc]
        more = min(self.token_fn(1 + new) for _ in range(repeat))  # type: ignore[misc]
        return (more - one) / new

    def token_model(self, p: HostParams) -> float:
        """Decode tokens at contexts prompt + 1 .. prompt + new, every host op but the link."""
        prompt, new = self.token_args
        return sum(o.cpu_seconds(p) for L in range(prompt + 1, prompt + new + 1)
                   for o in op_costs(self.token_shape, L) if o.on == "host") / new

    def add(self, label: str, cost: OpCost, fn: Callable[[], Any], per: int = 1,
            threads: str = "") -> None:
        self.cases.append((label, cost, fn, per, threads))

    def measure(self, case: tuple[str, OpCost, Callable[[], Any], int, str]
                ) -> tuple[float, float | None]:
        """(CPU seconds, wall seconds or None) of one case."""
        _, _, fn, per, threads = case
        if threads == "one":
            with _env(TRITIUM_THREADS="1"):
                return cpu_time(fn, 8, 3.0) / per, None
        if threads == "all":
            # CPU time over all threads, and the wall time (inflated by whatever else runs)
            return (cpu_time(fn, 8, 3.0, time.process_time) / per,
                    cpu_time(fn, 8, 3.0, time.perf_counter) / per)
        return cpu_time(fn, 60, 2.0) / per, None

    def round(self, calibrate: Callable[[], HostParams]
              ) -> tuple[list[dict[str, Any]], list[HostParams]]:
        """Calibrations and measurements in turn: each segment of ops (the small ones, the
        attentions, the head, the whole token) is measured between two calibrations, and its
        model is the mean of the two predictions, so that model and measurement see the same
        machine (whose speed, shared with other jobs, drifts by tens of percent over minutes)."""
        def group(case: tuple[Any, ...]) -> str:
            first = case[0].split()[0]
            return "small" if first in ("embedding", "norms", "rope", "quantisation") else first

        segments: list[list[Any]] = []
        for case in self.cases:
            if segments and group(segments[-1][0]) == group(case):
                segments[-1].append(case)
            else:
                segments.append([case])
        if self.token_fn is not None:
            segments.append(["token"])
        cals = [calibrate()]
        out = []
        for seg in segments:
            if seg == ["token"]:
                meas_token = self.token_measure()
            else:
                meas = [self.measure(c) for c in seg]
            cals.append(calibrate())
            pair = cals[-2:]
            if seg == ["token"]:
                model = sum(self.token_model(p) for p in pair) / 2
                out.append({"op": f"decode token, host share "
                                  f"({self.token_shape.num_hidden_layers} layers, golden)",
                            "model_ms": model * 1e3, "measured_ms": meas_token * 1e3,
                            "ratio": model / meas_token})
                continue
            for case, (cpu, wall) in zip(seg, meas, strict=True):
                label, cost, _, _, threads = case
                one = threads == "one"
                model = sum(cost.cpu_seconds(replace(p, threads=1) if one else p)
                            for p in pair) / 2
                r = {"op": label, "model_ms": model * 1e3, "measured_ms": cpu * 1e3,
                     "ratio": model / cpu}
                if wall is not None:
                    wall_model = sum(cost.seconds(p) for p in pair) / 2
                    r |= {"model_wall_ms": wall_model * 1e3, "measured_wall_ms": wall * 1e3,
                          "wall_ratio": wall_model / wall}
                out.append(r)
        return out, cals


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--token-layers", type=int, default=2, metavar="N",
                    help="layers of the checkpoint for the whole-token row (0: no such row; "
                         "written once under $TRITIUM_BUILD/bench_hostcost, about a minute)")
    ap.add_argument("--json", default=None, metavar="FILE")
    args = ap.parse_args(argv)
    cases = Cases(resolve_model("bitnet-b1.58-2B-4T"))
    if args.token_layers:
        cases.token(args.token_layers)
    rounds = []
    cal_s: list[float] = []

    def calibrate() -> HostParams:
        t0 = time.perf_counter()
        p = replace(calibrate_host(), threads=ops.threads())
        cal_s.append(time.perf_counter() - t0)
        return p

    for i in range(args.rounds):
        load0 = os.getloadavg()[0]
        table, cals = cases.round(calibrate)
        rounds.append({"params": [p.to_dict() for p in cals], "rows": table,
                       "calibration_s": cal_s[-len(cals):],
                       "load_average": [load0, os.getloadavg()[0]]})
        print(f"round {i + 1}: load average {load0:.1f} -> {os.getloadavg()[0]:.1f}; "
              f"{len(cals)} calibrations, {min(cal_s[-len(cals):]):.1f} to "
              f"{max(cal_s[-len(cals):]):.1f} s each")
        for name, unit, get in (("memory", "GB/s", lambda p: p.memory_gbps),
                                ("compute", "GFLOP/s", lambda p: p.compute_gflops),
                                ("head", "GB/s/thread", lambda p: p.head_gbps),
                                ("dispatch", "us", lambda p: p.dispatch_us)):
            print(f"  {name} {unit}: " + " ".join(f"{get(p):.3g}" for p in cals))
        print(f"  {'op (2B-4T, one decode token)':36s} {'model ms':>9s} {'measured ms':>11s} "
              f"{'ratio':>6s}")
        for r in table:
            flag = "" if 0.75 <= r["ratio"] <= 1.25 else "  (outside 25 %)"
            wall = (f"   wall: model {r['model_wall_ms']:.4g} ms, measured "
                    f"{r['measured_wall_ms']:.4g} ms" if "wall_ratio" in r else "")
            print(f"  {r['op']:36s} {r['model_ms']:9.4g} {r['measured_ms']:11.4g} "
                  f"{r['ratio']:6.2f}{flag}{wall}")
    ratios = [r["ratio"] for rd in rounds for r in rd["rows"]]
    print(f"all rounds: model / measured CPU time in {min(ratios):.2f} .. {max(ratios):.2f}; "
          f"{sum(0.75 <= x <= 1.25 for x in ratios)} of {len(ratios)} within 25 %")
    # per op, the median over rounds of the model and of the measurement: a round that the
    # machine slowed (other jobs' memory traffic, the hypervisor) counts as one of several
    summary = []
    print(f"median over {len(rounds)} rounds:")
    for i, r0 in enumerate(rounds[0]["rows"]):
        per = [rd["rows"][i] for rd in rounds]
        med = {k: float(np.median([r[k] for r in per])) for k in ("model_ms", "measured_ms")}
        row = {"op": r0["op"], **med, "ratio": med["model_ms"] / med["measured_ms"],
               "round_ratios": [r["ratio"] for r in per]}
        summary.append(row)
        flag = "" if 0.75 <= row["ratio"] <= 1.25 else "  (outside 25 %)"
        print(f"  {row['op']:36s} {row['model_ms']:9.4g} {row['measured_ms']:11.4g} "
              f"{row['ratio']:6.2f}{flag}   rounds: "
              + " ".join(f"{x:.2f}" for x in row["round_ratios"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": platform.processor() or platform.machine(),
                       "cpus": os.cpu_count(), "rounds": rounds, "median": summary}, f,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
