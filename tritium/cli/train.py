"""Quantisation-aware training of a BitNet b1.58 model in PyTorch (the `train` extra):
absmean ternary weights and per-token absmax int8 activations with straight-through
gradients, the same quantisers as tritium's golden model. Writes a Hugging Face packed
checkpoint with tokenizer.json that tritium and transformers load, a resumable run state and
a loss curve (loss.png).

    tritium train --task add [--digits 3] --out DIR --steps N --seed S [--resume] [size options]
    tritium train --text FILE [--tokenizer byte|bpe] --out DIR ...
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import fields

from ..golden.checks import InputError
from ..train.config import TrainConfig

HELP = "train a BitNet b1.58 model with quantisation-aware training (needs the train extra)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = {f.name: f.default for f in fields(TrainConfig)}
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--task", choices=["add"],
                      help="built-in synthetic task: add = decimal addition 'a+b=' -> a+b, EOS")
    what.add_argument("--text", metavar="FILE", help="train next-token prediction on a text file")
    p.add_argument("--digits", type=int, default=d["digits"],
                   help="add: operands have up to this many digits (default %(default)s)")
    p.add_argument("--tokenizer", choices=["byte", "bpe"], default=d["tokenizer"],
                   help="text: byte-level tokens or a BPE trained on the file (default "
                        "%(default)s)")
    p.add_argument("--vocab-size", type=int, default=d["vocab_size"],
                   help="text, bpe: vocabulary size (default %(default)s)")
    p.add_argument("--seq-len", type=int, default=d["seq_len"],
                   help="text: tokens per training window (default %(default)s)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder: checkpoint, tokenizer.json, train_state.pt, loss.png")
    p.add_argument("--steps", type=int, default=d["steps"],
                   help="total optimiser steps (default %(default)s)")
    p.add_argument("--seed", type=int, default=d["seed"], help="default %(default)s")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint")
    p.add_argument("--checkpoint-every", type=int, default=d["checkpoint_every"], metavar="N",
                   help="save the run state and export every N steps (default %(default)s)")
    p.add_argument("--batch", type=int, default=d["batch"], help="default %(default)s")
    p.add_argument("--lr", type=float, default=d["lr"], help="peak learning rate "
                   "(default %(default)s)")
    p.add_argument("--min-lr", type=float, default=d["min_lr"],
                   help="final learning rate of the cosine decay (default %(default)s)")
    p.add_argument("--warmup", type=int, default=d["warmup"], help="default %(default)s")
    p.add_argument("--weight-decay", type=float, default=d["weight_decay"],
                   help="default %(default)s")
    size = p.add_argument_group("model size")
    size.add_argument("--hidden", type=int, default=d["hidden"], help="default %(default)s")
    size.add_argument("--intermediate", type=int, default=d["intermediate"],
                      help="default %(default)s")
    size.add_argument("--layers", type=int, default=d["layers"], help="default %(default)s")
    size.add_argument("--heads", type=int, default=d["heads"], help="default %(default)s")
    size.add_argument("--kv-heads", type=int, default=d["kv_heads"], help="default %(default)s")
    size.add_argument("--rope-theta", type=float, default=d["rope_theta"],
                      help="default %(default)s")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1; the result depends on it)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    try:
        import torch
    except ImportError:
        raise InputError("tritium train needs PyTorch: pip install 'tritium[train]'") from None
    from ..train.loop import train

    if args.threads < 1:
        raise InputError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    cfg = TrainConfig(task="text" if args.text else "add", digits=args.digits, text=args.text,
                      tokenizer=args.tokenizer, vocab_size=args.vocab_size, seq_len=args.seq_len,
                      hidden=args.hidden, intermediate=args.intermediate, layers=args.layers,
                      heads=args.heads, kv_heads=args.kv_heads, rope_theta=args.rope_theta,
                      steps=args.steps, batch=args.batch, lr=args.lr, min_lr=args.min_lr,
                      warmup=args.warmup, weight_decay=args.weight_decay, seed=args.seed,
                      checkpoint_every=args.checkpoint_every)
    command = getattr(args, "command_line", None) or "tritium train " + shlex.join(
        sys.argv[2:] if len(sys.argv) > 1 and sys.argv[1] == "train" else sys.argv[1:])
    try:
        result = train(cfg, args.out, resume=args.resume, progress=not args.quiet,
                       command=command)
    except KeyboardInterrupt:
        print(f"\ninterrupted; continue with --resume (last checkpoint in {args.out})",
              file=sys.stderr)
        return 130
    print(f"trained {result.steps} steps in {result.seconds:.0f} s, final loss "
          f"{result.final_loss:.4f}; checkpoint in {result.out}")
    return 0
