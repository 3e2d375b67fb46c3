"""Configuration of a training run and of the model it trains (no torch needed)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from ..golden.checks import InputError
from .tasks import AddTask, TextTask


@dataclass(frozen=True)
class BitNetConfig:
    vocab_size: int
    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 64
    rope_theta: float = 500000.0
    rms_norm_eps: float = 1e-5
    eos_token_id: int | None = None
    pad_token_id: int | None = None

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def check(self) -> None:
        """ValueError naming the first inconsistent field."""
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads", "num_key_value_heads", "max_position_embeddings"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size={self.hidden_size} must be a multiple of "
                             f"num_attention_heads={self.num_attention_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim = hidden_size / num_attention_heads = {self.head_dim} "
                             "must be even for RoPE")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"num_attention_heads={self.num_attention_heads} must be a "
                             f"multiple of num_key_value_heads={self.num_key_value_heads}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TrainConfig:
    """What a run trains: task, model size and optimisation. ``steps`` may grow on resume;
    every other field must match the run being resumed."""

    task: str = "add"                  # "add" or "text"
    digits: int = 3                    # add: operands below 10**digits
    text: str | None = None            # text: the file
    tokenizer: str = "byte"            # text: "byte" or "bpe"
    vocab_size: int = 512              # text, bpe: vocabulary size
    seq_len: int = 64                  # text: tokens per training window
    hidden: int = 128
    intermediate: int = 384
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    rope_theta: float = 500000.0
    steps: int = 1000
    batch: int = 64
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup: int = 100
    weight_decay: float = 0.05
    seed: int = 0
    checkpoint_every: int = 200

    def check(self) -> None:
        if self.task not in ("add", "text"):
            raise InputError(f"task must be 'add' or 'text', got {self.task!r}")
        if self.task == "text" and not self.text:
            raise InputError("the text task needs a file (--text FILE)")
        for f in ("steps", "batch", "checkpoint_every", "hidden", "intermediate", "layers",
                  "heads", "kv_heads", "vocab_size", "seq_len"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(f"--{f.replace('_', '-')} must be a positive integer, "
                                 f"got {v!r}")
        for f in ("lr", "min_lr"):
            v = getattr(self, f)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise InputError(f"--{f.replace('_', '-')} must be a positive number, got {v!r}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise InputError(f"--warmup must be an integer >= 0, got {self.warmup!r}")
        if not (isinstance(self.weight_decay, int | float) and self.weight_decay >= 0):
            raise InputError(f"--weight-decay must be a number >= 0, got {self.weight_decay!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise InputError(f"--seed must be an integer >= 0, got {self.seed!r}")

    def make_task(self) -> AddTask | TextTask:
        if self.task == "add":
            return AddTask(self.digits)
        return TextTask(Path(self.text or ""), self.tokenizer, self.vocab_size, self.seq_len)

    def model_config(self, task: AddTask | TextTask) -> BitNetConfig:
        cfg = BitNetConfig(vocab_size=task.tokenizer.get_vocab_size(), hidden_size=self.hidden,
                           intermediate_size=self.intermediate, num_hidden_layers=self.layers,
                           num_attention_heads=self.heads, num_key_value_heads=self.kv_heads,
                           max_position_embeddings=max(64, task.seq_len),
                           rope_theta=self.rope_theta, eos_token_id=task.eos_id,
                           pad_token_id=task.pad_id)
        try:
            cfg.check()
        except ValueError as e:
            raise InputError(f"model size: {e}") from None
        return cfg

    def lr_at(self, step: int) -> float:
        """Linear warmup, then cosine decay to min_lr at the last step."""
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        span = max(1, self.steps - self.warmup)
        frac = min(1.0, (step - self.warmup) / span)
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + math.cos(math.pi * frac))


