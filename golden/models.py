"""A model's shape as the matmuls the accelerator runs.

Only shapes matter here: each decoder layer runs a few BitLinear matmuls (seven in the Llama
layout: q, k, v, o, gate, up, down), each an M x K by K x N GEMM with K = in_features and
N = out_features; M is the number of tokens in flight (the prompt length in prefill, 1 per step
in decode). The LM head (hidden x vocab, bf16) runs on the CPU and is described separately.

The records are built by the model architectures (tritium.host.arch), which read config.json
and hold the named presets; golden only prices them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .checks import InputError


@dataclass(frozen=True)
class Matmul:
    """One BitLinear: y[M, N] = x[M, K] @ W[K, N]."""

    name: str
    k: int
    n: int

    @property
    def weights(self) -> int:
        return self.k * self.n


@dataclass(frozen=True)
class ModelShape:
    """The dimensions of a ternary decoder and the matmuls of one of its layers."""

    name: str
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    head_dim: int
    max_position_embeddings: int
    tie_word_embeddings: bool
    layer: tuple[Matmul, ...]    # one layer's BitLinears, in the order the layer runs them
    source: str = ""
    model_type: str = ""

    def __post_init__(self) -> None:
        for f in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                  "num_key_value_heads", "vocab_size", "head_dim", "max_position_embeddings"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(f"model {self.name}: {f} must be a positive integer, got {v!r}")
        if not self.layer:
            raise InputError(f"model {self.name}: a layer needs at least one matmul")

    def matmuls(self) -> list[Matmul]:
        """The BitLinears of one layer, in the order the layer runs them."""
        return list(self.layer)

    @property
    def max_k(self) -> int:
        return max(mm.k for mm in self.layer)

    @property
    def ternary_weights(self) -> int:
        """Ternary weights in all decoder layers (what the accelerator streams per token)."""
        return self.num_hidden_layers * sum(mm.weights for mm in self.layer)

    @property
    def lm_head(self) -> Matmul:
        return Matmul("lm_head", self.hidden_size, self.vocab_size)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "model_type": self.model_type, "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads, "head_dim": self.head_dim,
            "vocab_size": self.vocab_size,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings, "source": self.source,
            "ternary_weights": self.ternary_weights,
        }
