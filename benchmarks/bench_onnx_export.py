"""`tritium export` on a 2B-4T-shaped checkpoint: onnxruntime against golden, logits and greedy
tokens, with ONNX external data (the exported model is over 2 GB).

Writes (or reuses) the random checkpoint of benchmarks/bench_golden_vs_transformers.py (the
shape of microsoft/bitnet-b1.58-2B-4T: hidden 2560, intermediate 6912, 20 heads / 5 KV heads,
vocab 128256, tied, packed; 30 layers unless --layers says otherwise), exports it, and then,
each step in its own process so that peak memory is each one's own:

1. export: `export_onnx`, timed; the .onnx and its `_data` file sizes;
2. onnxruntime (plain CPU session, every BitLinear's int8 codes probed as extra outputs): a
   prompt prefill and greedy decoding through the exported KV cache (presents fed back as
   past_key_values, the Optimum loop);
3. golden (BitNetModel, backend golden): the same prompt's logits and greedy tokens, twice:
   as is, and with tests/onnx_parity.py's rounding-tie rule (golden takes onnxruntime's int8
   code wherever the two differ, after asserting each difference is one step at a rounding
   tie: the two sum float32 norms in different orders, and DESIGN.md measured how one flipped
   code is amplified at full width).

    python benchmarks/bench_onnx_export.py               # 30 layers
    python benchmarks/bench_onnx_export.py --layers 2    # quick check
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))     # tests/onnx_parity.py: the loop and the tie rule the tests use
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_golden_vs_transformers import ensure_checkpoint, machine, rss_gib  # noqa: E402


def child_export(ckpt: Path, out: Path, work: Path) -> dict:
    from tritium.host.onnx.export import export_onnx

    r = export_onnx(ckpt, out)
    return {**r.as_dict(), "onnx_bytes": r.path.stat().st_size,
            "data_bytes": r.data_path.stat().st_size if r.data_path else 0,
            "rss_peak_gib": rss_gib()}


def child_ort(ckpt: Path, out: Path, work: Path, prompt: list[int], new: int,
              threads: int) -> dict:
    from tests.onnx_parity import Decoder
    from tritium.host.weights import read_config

    c, cfg = read_config(ckpt)
    c.close()
    t0 = time.perf_counter()
    dec = Decoder(out, cfg, probes=True, threads=threads)
    load_s = time.perf_counter() - t0
    past = dec.empty_past(1)
    step = np.array([prompt])
    tokens, stamps, saved = [], [], {}
    t1 = time.perf_counter()
    for i in range(new):
        logits, past, probes = dec.step(step, past)
        stamps.append(time.perf_counter())
        if i == 0:
            np.save(work / "ort_logits.npy", logits[0])
        for (li, proj), (q, xs) in probes.items():
            saved[f"{i}|{li}|{proj}|q"] = q
            saved[f"{i}|{li}|{proj}|xs"] = xs
        tokens.append(int(np.argmax(logits[0, -1])))
        step = np.array([[tokens[-1]]])
    np.savez(work / "ort_probes.npz", **saved)
    return {"load_s": load_s, "prefill_s": stamps[0] - t1,
            "decode_s": stamps[-1] - stamps[0], "tokens": tokens, "rss_peak_gib": rss_gib(),
            "onnxruntime": __import__("onnxruntime").__version__, "threads": threads}


def child_golden(ckpt: Path, out: Path, work: Path, prompt: list[int], new: int) -> dict:
    from tests.onnx_parity import forcing, rel_error
    from tritium.host import BitNetModel

    ort_logits = np.load(work / "ort_logits.npy")
    raw = np.load(work / "ort_probes.npz")
    steps: list[dict] = [{} for _ in range(new)]
    for key in raw.files:
        i, li, proj, kind = key.split("|")
        steps[int(i)].setdefault((int(li), proj), [None, None])[kind == "xs"] = raw[key]
    probes = [{k: tuple(v) for k, v in s.items()} for s in steps]

    m = BitNetModel.from_pretrained(ckpt, backend="golden")
    res: dict = {}
    t0 = time.perf_counter()
    want = m.logits(prompt)
    res["prefill_s"] = time.perf_counter() - t0
    res["tokens"] = m.generate(prompt, new, stop_at_eos=False)
    res["max_error"] = rel_error(ort_logits, want)
    res["argmax_equal"] = int((ort_logits.argmax(-1) == want.argmax(-1)).sum())
    with forcing(m) as ties:
        ties.push(probes[0])
        forced = m.logits(prompt)
        for p in probes:
            ties.push(p)
        res["tokens_forced"] = m.generate(prompt, new, stop_at_eos=False)
    res["max_error_forced"] = rel_error(ort_logits, forced)
    res["tie_flips_forced"] = ties.forced
    res["rss_peak_gib"] = rss_gib()
    m.close()
    return res


def run_child(name: str, args: argparse.Namespace, ckpt: Path, out: Path, work: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", name, "--checkpoint", str(ckpt), "--onnx",
           str(out), "--work", str(work), "--layers", str(args.layers), "--seed",
           str(args.seed), "--prompt-len", str(args.prompt_len), "--new-tokens",
           str(args.new_tokens), "--threads", str(args.threads)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, check=True, text=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_s"] = time.perf_counter() - t0
    print(f"  {name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=8)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="onnxruntime intra-op threads")
    ap.add_argument("--checkpoint", type=Path, help="checkpoint folder (default: "
                    "$TRITIUM_BUILD/bench/bitnet-2b4t-shaped-L<layers>, shared with "
                    "bench_golden_vs_transformers.py)")
    ap.add_argument("--onnx", type=Path)
    ap.add_argument("--work", type=Path)
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--child", choices=["export", "ort", "golden"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    prompt = np.random.default_rng(args.seed).integers(0, 128256, args.prompt_len).tolist()

    if args.child:
        extra = {"export": (), "ort": (prompt, args.new_tokens, args.threads),
                 "golden": (prompt, args.new_tokens)}[args.child]
        fn = {"export": child_export, "ort": child_ort, "golden": child_golden}[args.child]
        print(json.dumps(fn(args.checkpoint, args.onnx, args.work, *extra)))
        return

    root = Path(os.environ.get("TRITIUM_BUILD", "build")).resolve()
    ckpt = args.checkpoint or root / "bench" / f"bitnet-2b4t-shaped-L{args.layers}"
    ensure_checkpoint(ckpt, args.layers, args.seed)
    work = args.work or root / "bench" / f"onnx-L{args.layers}"
    work.mkdir(parents=True, exist_ok=True)
    out = args.onnx or work / "model.onnx"
    results = {"machine": machine(), "layers": args.layers, "prompt_len": args.prompt_len,
               "new_tokens": args.new_tokens, "checkpoint": str(ckpt)}
    for name in ("export", "ort", "golden"):
        results[name] = run_child(name, args, ckpt, out, work)
    g, o = results["golden"], results["ort"]
    results["tokens_equal"] = g["tokens"] == o["tokens"]
    results["tokens_equal_forced"] = g["tokens_forced"] == o["tokens"]
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
