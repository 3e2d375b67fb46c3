"""Named model shapes and checkpoint config.json files, as the matmuls the accelerator runs.

Only shapes matter here: each decoder layer runs seven BitLinear matmuls (q, k, v, o, gate, up,
down), each an M x K by K x N GEMM with K = in_features and N = out_features; M is the number
of tokens in flight (the prompt length in prefill, 1 per step in decode). The LM head
(hidden x vocab, bf16) runs on the CPU and is described separately.

A checkpoint folder is read through its config.json only (no weights), with transformers'
BitNetConfig defaults where the file is silent, as tritium.host.checkpoint does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checks import InputError

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

# transformers' BitNetConfig defaults (the 2B-4T values), for keys config.json leaves out
_DEFAULTS: dict[str, Any] = {
    "vocab_size": 128256, "hidden_size": 2560, "intermediate_size": 6912,
    "num_hidden_layers": 30, "num_attention_heads": 20, "num_key_value_heads": 5,
    "max_position_embeddings": 2048, "tie_word_embeddings": False,
}


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
    """The dimensions of a BitNet b1.58 decoder that fix its matmul shapes."""

    name: str
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    head_dim: int | None = None
    max_position_embeddings: int = 4096
    tie_word_embeddings: bool = True
    source: str = ""

    def __post_init__(self) -> None:
        for f in ("hidden_size", "intermediate_size", "num_hidden_layers",
                  "num_attention_heads", "num_key_value_heads", "vocab_size",
                  "max_position_embeddings"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(f"model {self.name}: {f} must be a positive integer, got {v!r}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise InputError(f"model {self.name}: num_attention_heads="
                             f"{self.num_attention_heads} must be a multiple of "
                             f"num_key_value_heads={self.num_key_value_heads}")
        if self.hd < 1:
            raise InputError(f"model {self.name}: hidden_size={self.hidden_size} is smaller than "
                             f"num_attention_heads={self.num_attention_heads}")

    @property
    def hd(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads

    def matmuls(self) -> list[Matmul]:
        """The seven BitLinears of one layer, in the order the layer runs them."""
        h, i = self.hidden_size, self.intermediate_size
        q, kv = self.num_attention_heads * self.hd, self.num_key_value_heads * self.hd
        return [Matmul("q_proj", h, q), Matmul("k_proj", h, kv), Matmul("v_proj", h, kv),
                Matmul("o_proj", q, h), Matmul("gate_proj", h, i), Matmul("up_proj", h, i),
                Matmul("down_proj", i, h)]

    @property
    def max_k(self) -> int:
        return max(mm.k for mm in self.matmuls())

    @property
    def ternary_weights(self) -> int:
        """Ternary weights in all decoder layers (what the accelerator streams per token)."""
        return self.num_hidden_layers * sum(mm.weights for mm in self.matmuls())

    @property
    def lm_head(self) -> Matmul:
        return Matmul("lm_head", self.hidden_size, self.vocab_size)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads, "head_dim": self.hd,
            "vocab_size": self.vocab_size,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings, "source": self.source,
            "ternary_weights": self.ternary_weights,
        }

    @classmethod
    def from_config(cls, raw: Any, name: str, source: str = "config.json") -> ModelShape:
        """From a Hugging Face config.json object (BitNet, or a Llama-shaped BitNet variant)."""
        if not isinstance(raw, dict):
            raise InputError(f"{source}: must hold a JSON object")
        c = {**_DEFAULTS, **{k: v for k, v in raw.items() if v is not None}}
        if raw.get("num_key_value_heads") is None:
            c["num_key_value_heads"] = c["num_attention_heads"]
        try:
            return cls(name=name, hidden_size=c["hidden_size"],
                       intermediate_size=c["intermediate_size"],
                       num_hidden_layers=c["num_hidden_layers"],
                       num_attention_heads=c["num_attention_heads"],
                       num_key_value_heads=c["num_key_value_heads"],
                       vocab_size=c["vocab_size"], head_dim=c.get("head_dim"),
                       max_position_embeddings=c["max_position_embeddings"],
                       tie_word_embeddings=bool(c["tie_word_embeddings"]), source=source)
        except InputError as exc:
            raise InputError(f"{source}: {exc}") from None


# Published checkpoints. 2B-4T from DESIGN.md (microsoft/bitnet-b1.58-2B-4T config.json); the
# 1bitLLM reproductions of the BitNet b1.58 paper (Llama-shaped, no GQA).
MODELS: dict[str, ModelShape] = {m.name: m for m in (
    ModelShape("bitnet-b1.58-2B-4T", hidden_size=2560, intermediate_size=6912,
               num_hidden_layers=30, num_attention_heads=20, num_key_value_heads=5,
               vocab_size=128256, max_position_embeddings=4096, tie_word_embeddings=True,
               source="microsoft/bitnet-b1.58-2B-4T config.json"),
    ModelShape("bitnet_b1_58-large", hidden_size=1536, intermediate_size=4096,
               num_hidden_layers=24, num_attention_heads=16, num_key_value_heads=16,
               vocab_size=32002, max_position_embeddings=2048, tie_word_embeddings=False,
               source="1bitLLM/bitnet_b1_58-large config.json"),
    ModelShape("bitnet_b1_58-3B", hidden_size=3200, intermediate_size=8640,
               num_hidden_layers=26, num_attention_heads=32, num_key_value_heads=32,
               vocab_size=32002, max_position_embeddings=2048, tie_word_embeddings=False,
               source="1bitLLM/bitnet_b1_58-3B config.json"),
)}


def known_models() -> list[str]:
    return sorted(MODELS)


def read_config_json(path: str | Path) -> ModelShape:
    """The shape of the model a checkpoint folder (or a config.json file) describes."""
    p = Path(path)
    cfg_path = p / "config.json" if p.is_dir() else p
    try:
        raw = json.loads(cfg_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{cfg_path} not found: a checkpoint folder needs a config.json"
                         ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{cfg_path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{cfg_path}: not valid JSON ({exc})") from None
    name = p.name if p.is_dir() else p.parent.name or p.stem
    return ModelShape.from_config(raw, name=name, source=str(cfg_path))


def resolve_model(name_or_dir: str | Path) -> ModelShape:
    """A named model (case-insensitive; a Hugging Face "owner/" prefix is ignored) or the
    config.json of a checkpoint folder."""
    text = str(name_or_dir)
    p = Path(text)
    if p.is_dir() or (p.is_file() and p.suffix == ".json"):
        return read_config_json(p)
    lower = {k.lower(): v for k, v in MODELS.items()}
    key = text.lower()
    for cand in (key, key.rsplit("/", 1)[-1]):
        if cand in lower:
            return lower[cand]
    raise InputError(f"unknown model {text!r}: known models are {', '.join(known_models())}; "
                     "or give a checkpoint folder holding a config.json")
