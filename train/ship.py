"""Package a finished addition run as a shipped model: copy its checkpoint into a zoo folder,
score it on held-out problems with tritium's golden backend, and write metadata.json and a
README.md saying how it was trained and how well it adds.

    python -m tritium.train.ship RUN_DIR DEST [--problems 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from ..golden.checks import InputError
from ..golden.files import atomic_write
from ..host import BitNetModel
from .eval_add import exact_match, held_out_problems

FILES = ("config.json", "model.safetensors", "tokenizer.json")


def ship(run: Path, dest: Path, *, problems: int = 1000, seed: int = 0) -> dict:
    meta_path = run / "train.json"
    if not meta_path.is_file():
        raise InputError(f"{run}: no train.json; is it a `tritium train` output folder?")
    trained = json.loads(meta_path.read_text())
    if trained["config"]["task"] != "add":
        raise InputError(f"{run}: trained on {trained['task']}, not the addition task")
    digits = trained["config"]["digits"]
    dest.mkdir(parents=True, exist_ok=True)
    for f in FILES:
        shutil.copyfile(run / f, dest / f)
    model = BitNetModel.from_pretrained(dest, backend="golden")
    try:
        t0 = time.perf_counter()
        score = exact_match(model, held_out_problems(problems, digits, seed))
        eval_seconds = time.perf_counter() - t0
    finally:
        model.close()
    size = sum((dest / f).stat().st_size for f in FILES)
    meta = {
        "name": dest.name,
        "task": f"decimal addition, operands below 10**{digits}: 'a+b=' -> digits of a+b, EOS",
        "command": trained.get("command"),
        "seed": trained["config"]["seed"],
        "steps": trained["step"],
        "train_wall_seconds": trained["wall_seconds"],
        "torch_threads": trained["torch_threads"],
        "final_loss": trained["final_loss"],
        "model": trained["model"],
        "eval": "exact match, greedy until EOS, tritium golden backend, held-out problems "
                "(tritium.train.eval_add.held_out_problems)",
        "problems": len(score.results),
        "eval_seed": seed,
        "correct": score.correct,
        "accuracy": score.accuracy,
        "eval_seconds": round(eval_seconds, 1),
        "size_bytes": size,
        "wrong": [f"{r.prompt}{r.answer}" for r in score.results if not r.right][:20],
    }
    atomic_write(dest / "metadata.json", [json.dumps(meta, indent=2).encode()])
    m = trained["model"]
    readme = f"""# {dest.name}

A BitNet b1.58 model (ternary weights, int8 activations) trained with `tritium train` on
decimal addition: the prompt `a+b=` with a, b < {10 ** digits}, then the digits of a+b, then
`<eos>`.

- {m['num_hidden_layers']} layers, hidden {m['hidden_size']}, intermediate \
{m['intermediate_size']}, {m['num_attention_heads']} heads ({m['num_key_value_heads']} KV), \
vocabulary {m['vocab_size']}; {size:,} bytes on disk.
- Exact match on {len(score.results)} held-out problems (never seen in training), tritium's
  golden backend, greedy until EOS: **{score.correct}/{len(score.results)} = \
{100 * score.accuracy:.1f} %**.
- Trained in {trained['wall_seconds'] / 60:.1f} min on {trained['torch_threads']} CPU \
thread(s), {trained['step']} steps, seed {trained['config']['seed']}:

      {trained.get('command')}

  then packaged with `python -m tritium.train.ship RUN_DIR host/zoo/{dest.name}`.

Use it by name: `BitNetModel.from_pretrained("{dest.name}")`.
"""
    atomic_write(dest / "README.md", [readme.encode()])
    return meta


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tritium.train.ship", description=__doc__)
    p.add_argument("run", type=Path)
    p.add_argument("dest", type=Path)
    p.add_argument("--problems", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        meta = ship(args.run, args.dest, problems=args.problems, seed=args.seed)
    except (InputError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{meta['correct']}/{meta['problems']} right ({100 * meta['accuracy']:.1f} %), "
          f"{meta['size_bytes']} bytes -> {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
