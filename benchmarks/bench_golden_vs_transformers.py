"""tritium's golden backend against transformers, side by side, on a 2B-4T-shaped checkpoint.

Writes a random BitNet b1.58 checkpoint with the shapes of microsoft/bitnet-b1.58-2B-4T
(hidden 2560, intermediate 6912, 20 heads, 5 KV heads, vocab 128256, tied embeddings, packed
offline format; 30 layers unless --layers says otherwise) into the build folder, then runs, each
in its own process so that peak memory is each one's own:

- tritium: BitNetModel.from_pretrained(..., backend="golden"): int8 ternary weights, bf16
  embedding widened per block, every BitLinear through the exact integer kernel;
- transformers: BitNetForCausalLM in float32 on the CPU with its BitNet AutoBitLinear layers
  (offline mode: the packed weights unpacked to float32 at load, as its quantizer does), eager
  attention, torch.compile off (its unpack/quantise helpers would otherwise compile C++).

Both greedily generate the same tokens from the same random prompt. Prefill tokens/s is the
prompt length over the time to the first new token; decode tokens/s is the remaining new tokens
over the time they took. Peak RSS is each process's high-water mark (VmHWM, else
ru_maxrss from resource.getrusage).

    python benchmarks/bench_golden_vs_transformers.py                 # full 30 layers
    python benchmarks/bench_golden_vs_transformers.py --layers 2      # quick check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SHAPE = dict(hidden=2560, intermediate=6912, heads=20, kv_heads=5, vocab=128256)


def rss_gib() -> float:
    """Peak resident memory of this process so far, in GiB.

    Linux's VmHWM belongs to the process image; ru_maxrss (getrusage) survives fork and exec,
    so a child would report its parent's peak (here: the checkpoint writer's) if it is higher.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20   # KiB on Linux


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem,
            "python": platform.python_version(), "numpy": np.__version__,
            # other work on the machine slows both sides; say how much there was
            "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()]}


def ensure_checkpoint(path: Path, layers: int, seed: int) -> Path:
    from tritium.host.synthetic import write_random_checkpoint

    stamp = path / "bench.json"
    want = {**SHAPE, "layers": layers, "seed": seed}
    if stamp.is_file() and json.loads(stamp.read_text()) == want:
        return path
    t0 = time.perf_counter()
    print(f"writing a {layers}-layer 2B-4T-shaped checkpoint to {path} ...", file=sys.stderr)
    write_random_checkpoint(path, layers=layers, tied=True, packed=True, seed=seed,
                            max_position_embeddings=4096, **SHAPE)
    stamp.write_text(json.dumps(want))
    print(f"  written in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return path


# -- the two children ---------------------------------------------------------------------------

def child_tritium(path: Path, prompt: list[int], new: int) -> dict:
    from tritium.host import BitNetModel

    t0 = time.perf_counter()
    m = BitNetModel.from_pretrained(path, backend="golden")
    load_s = time.perf_counter() - t0
    rss_load = rss_gib()
    stamps: list[float] = []
    t1 = time.perf_counter()
    tokens = m.generate(prompt, new, stop_at_eos=False,
                        on_token=lambda _t: stamps.append(time.perf_counter()))
    m.close()
    return {"load_s": load_s, "rss_load_gib": rss_load, "rss_peak_gib": rss_gib(),
            "prefill_s": stamps[0] - t1, "decode_s": stamps[-1] - stamps[0], "tokens": tokens}


def child_transformers(path: Path, prompt: list[int], new: int) -> dict:
    import torch
    import torch._dynamo

    torch._dynamo.config.disable = True
    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.perf_counter()
    from tritium.host.hf_reference import hf_reference

    model = hf_reference(path, meta=True)
    load_s = time.perf_counter() - t0
    rss_load = rss_gib()
    stamps: list[float] = []

    class Clock:   # a generate() streamer: put() gets the prompt, then each new token
        def put(self, _value) -> None:
            stamps.append(time.perf_counter())

        def end(self) -> None:
            pass

    t1 = time.perf_counter()
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), max_new_tokens=new, do_sample=False,
                             streamer=Clock(), pad_token_id=0)
    tokens = out[0, len(prompt):].tolist()
    return {"load_s": load_s, "rss_load_gib": rss_load, "rss_peak_gib": rss_gib(),
            "prefill_s": stamps[1] - t1, "decode_s": stamps[-1] - stamps[1], "tokens": tokens,
            "torch": torch.__version__, "torch_threads": torch.get_num_threads()}


def run_child(which: str, args: argparse.Namespace, path: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", which, "--ckpt", str(path),
           "--prompt-len", str(args.prompt_len), "--new-tokens", str(args.new_tokens),
           "--seed", str(args.seed)]
    print(f"running {which} ...", file=sys.stderr)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"{which} failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(results: dict, prompt_len: int, new: int) -> str:
    rows = ["| implementation | load (s) | peak RSS after load (GiB) | peak RSS (GiB) | "
            f"prefill tok/s ({prompt_len} tokens) | decode tok/s ({new - 1} tokens) |",
            "|---|---|---|---|---|---|"]
    names = {"tritium": "tritium golden backend (NumPy, int8 weights)",
             "transformers": "transformers BitNetForCausalLM (torch float32, CPU)"}
    for key, r in results.items():
        rows.append(f"| {names[key]} | {r['load_s']:.1f} | {r['rss_load_gib']:.2f} | "
                    f"{r['rss_peak_gib']:.2f} | {prompt_len / r['prefill_s']:.2f} | "
                    f"{(new - 1) / r['decode_s']:.3f} |")
    return "\n".join(rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=30, help="decoder layers (default: 30)")
    p.add_argument("--prompt-len", type=int, default=32, help="prompt tokens (default: 32)")
    p.add_argument("--new-tokens", type=int, default=9,
                   help="tokens to generate: 1 from the prefill, the rest decode (default: 9)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None,
                   help="checkpoint folder (default: $TRITIUM_BUILD or build/, "
                   "bench/bitnet-2b4t-shaped-L<layers>)")
    p.add_argument("--skip-transformers", action="store_true")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--child", choices=["tritium", "transformers"], help=argparse.SUPPRESS)
    p.add_argument("--ckpt", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.new_tokens < 2:
        p.error("--new-tokens must be at least 2 (one prefill token, one decode step)")

    if args.child:
        rng = np.random.default_rng(args.seed)
        prompt = rng.integers(0, SHAPE["vocab"], args.prompt_len).tolist()
        fn = child_tritium if args.child == "tritium" else child_transformers
        print(json.dumps(fn(args.ckpt, prompt, args.new_tokens)))
        return 0

    root = Path(os.environ.get("TRITIUM_BUILD", "build")).resolve()
    path = args.out or root / "bench" / f"bitnet-2b4t-shaped-L{args.layers}"
    ensure_checkpoint(path, args.layers, args.seed)
    results = {"tritium": run_child("tritium", args, path)}
    if not args.skip_transformers:
        results["transformers"] = run_child("transformers", args, path)
    same = (results["tritium"]["tokens"] == results["transformers"]["tokens"]
            if "transformers" in results else None)
    info = {"machine": machine(), "layers": args.layers, "prompt_len": args.prompt_len,
            "new_tokens": args.new_tokens, "checkpoint": str(path),
            "checkpoint_bytes": sum(f.stat().st_size for f in path.glob("*.safetensors")),
            "results": results, "same_tokens": same}
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    mach = info["machine"]
    print(f"Machine: {mach['cpu']}, {mach['cores']} cores, {mach['memory_gib']} GiB; "
          f"Python {mach['python']}, NumPy {mach['numpy']}"
          + (f", torch {results['transformers']['torch']} "
             f"({results['transformers']['torch_threads']} threads)"
             if "transformers" in results else ""))
    print(f"Load average at the end (1, 5, 15 min): {mach['load_average_1_5_15']}")
    print(f"Checkpoint: 2B-4T shapes, {args.layers} layers, random packed weights "
          f"({info['checkpoint_bytes'] / 2**30:.2f} GiB on disk)")
    print()
    print(table(results, args.prompt_len, args.new_tokens))
    if same is not None:
        print()
        print(f"Greedy tokens identical: {'yes' if same else 'NO'} "
              f"({results['tritium']['tokens']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
