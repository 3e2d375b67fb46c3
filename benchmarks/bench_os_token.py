"""One whole decode token of a 2B-4T-shaped checkpoint on the Verilated os accelerator.

Writes (once) a random BitNet b1.58 checkpoint with the shapes of microsoft/bitnet-b1.58-2B-4T
(30 layers, hidden 2560, intermediate 6912, 20 / 5 heads, vocab 128256, tied, packed offline
format; the same one bench_golden_vs_transformers.py writes), then runs one token through the
host runtime twice: on the golden backend and on the rtl backend (the os top compiled by
Verilator, every one of the 210 ternary matmuls on it, weights served through its memory port
by the harness). The prompt is one token, so the forward pass is exactly one decode step
(M = 1 for every matmul). Checked: the generated token and the logits are equal, and the
RTL's performance counters (busy cycles, MACs, zero skips, passes) equal golden's model for
every projection of every layer. Reported: wall times (load, token), simulated cycles and
the cycles' tokens/s at the array's clock against the estimator's figure.

    python benchmarks/bench_os_token.py                       # 32x32, base-3, 64 B/cycle
    python benchmarks/bench_os_token.py --packing 2bit
    python benchmarks/bench_os_token.py --layers 2            # quick check
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
# the same checkpoint (and stamp) as the golden-vs-transformers benchmark writes
from bench_golden_vs_transformers import SHAPE, ensure_checkpoint  # noqa: E402


def run(path: Path, backend: str, cfg, prompt: list[int]) -> dict:
    from tritium.host import BitNetModel

    t0 = time.perf_counter()
    model = BitNetModel.from_pretrained(path, backend=backend, array=cfg)
    load_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    logits = model.logits(prompt)[-1]
    token_s = time.perf_counter() - t1
    stats = model.stats
    per_proj = [{name: st.as_dict() for name, st in layer.items()} for layer in stats.layers]
    total = stats.total.as_dict()
    model.close()
    return {"load_s": load_s, "token_s": token_s, "token": int(np.argmax(logits)),
            "logits": logits, "per_proj": per_proj, "total": total}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=30)
    p.add_argument("--rows", type=int, default=32)
    p.add_argument("--cols", type=int, default=32)
    p.add_argument("--bytes-per-cycle", type=int, default=64,
                   help="port width: 64 is 16 GB/s at 250 MHz")
    p.add_argument("--packing", choices=("base3", "2bit"), default="base3")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    from tritium.golden import ArrayConfig
    from tritium.host.estimate import EstimateConfig, estimate, resolve

    cfg = ArrayConfig(rows=args.rows, cols=args.cols, dataflow="os", clock_mhz=250,
                      dram_bytes_per_cycle=args.bytes_per_cycle, dram_words=2**17,
                      weight_packing=args.packing)
    root = Path(os.environ.get("TRITIUM_BUILD", "build")).resolve()
    path = ensure_checkpoint(root / "bench_2b4t_shaped", args.layers, args.seed)
    prompt = [int(np.random.default_rng(args.seed).integers(0, SHAPE["vocab"]))]

    t0 = time.perf_counter()
    from tritium.sim.verilated import ensure_built

    ensure_built(cfg)
    build_s = time.perf_counter() - t0
    gold = run(path, "golden", cfg, prompt)
    rtl = run(path, "rtl", cfg, prompt)

    assert rtl["token"] == gold["token"], (rtl["token"], gold["token"])
    np.testing.assert_array_equal(rtl["logits"], gold["logits"])
    for li, (g, r) in enumerate(zip(gold["per_proj"], rtl["per_proj"], strict=True)):
        for name in g:
            gd = {k: v for k, v in g[name].items() if k != "seconds"}
            rd = {k: v for k, v in r[name].items() if k != "seconds"}
            assert gd == rd, (li, name, gd, rd)
    cycles = rtl["total"]["cycles"]
    est = None
    if args.layers == 30:
        model, _ = resolve("bitnet-b1.58-2B-4T")
        est = estimate(model, EstimateConfig(cfg, 16.0, dataflow="os", prompt_len=8, gen_len=1,
                                             zero_fraction=1 / 3))["decode"]
    out = {
        "array": f"{cfg.rows}x{cfg.cols} os, {cfg.weight_packing}, "
                 f"{cfg.dram_bytes_per_cycle} B/cycle, {cfg.clock_mhz:g} MHz",
        "layers": args.layers,
        "matmuls": sum(len(layer) for layer in rtl["per_proj"]),
        "token_equal": True, "logits_equal": True, "counters_equal": True,
        "build_s": round(build_s, 1),
        "golden": {"load_s": round(gold["load_s"], 1), "token_s": round(gold["token_s"], 2)},
        "rtl": {"load_s": round(rtl["load_s"], 1), "token_s": round(rtl["token_s"], 1)},
        "busy_cycles": cycles,
        "simulated_cycles_per_s": round(cycles / rtl["token_s"]),
        "tokens_per_s_at_clock": cfg.clock_mhz * 1e6 / cycles,
        "estimate_tokens_per_s": est and est["tokens_per_s"],
        "estimate_cycles_per_token": est and est["cycles_per_token"],
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
