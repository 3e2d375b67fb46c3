"""What every architecture shares: the config record the runtime reads, the reader that fills
it from config.json, and the table entry (`Architecture`) an architecture module fills in.

The one reader of config.json: the runtime, the estimator, the synthetic-checkpoint writer and
the plots all take a model's dimensions and defaults from here, so a key config.json leaves out
means the same thing everywhere (transformers' own default for that model_type).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from ...golden.models import Matmul, ModelShape
from ..safetensors import CheckpointError

# The BitLinear layers of a Llama-layout decoder layer, in the order a layer runs them, with the
# module each sits in. Both architectures here use these names; another layout defines its own.
LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
PROJECTIONS = tuple(n.split(".")[-1] for n in LINEARS)
ATTENTION_LINEARS = LINEARS[:4]
LINEAR_CLASSES = ("autobitlinear", "bitlinear")
# A config.json with more layers than this is corrupt, not a model: refusing it up front keeps a
# typo such as 10^9 layers from building a billion tensor names before any check runs.
MAX_LAYERS = 10_000


class LayerRun(Protocol):
    """What a block's forward pass calls (host/model.py implements it for one layer)."""

    def norm(self, name: str, x: np.ndarray) -> np.ndarray:
        """RMSNorm of x with the layer's norm `name` (e.g. "input_layernorm")."""

    def linears(self, names: tuple[str, ...], x: np.ndarray) -> list[np.ndarray]:
        """The BitLinears `names` (e.g. "q_proj") applied to the same input x."""

    def attention(self, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
        """RoPE, KV cache and causal grouped-query attention; [T, heads * head_dim]."""


@dataclass(frozen=True)
class Architecture:
    """One model architecture, as a table entry: the registry in host/arch/__init__.py holds
    one per (model_type, linear_class). `of(module)` builds it from an architecture module's
    names: MODEL_TYPE, DESCRIPTION, DEFAULTS, LINEAR_CLASSES, HIDDEN_ACTS, layer_norms, block,
    check, and optionally NEEDS_QUANTIZATION_CONFIG and PRESETS."""

    model_type: str
    description: str
    defaults: Mapping[str, Any]            # transformers' Config defaults for this model_type
    linear_classes: tuple[str, ...]        # BitLinear flavours it is registered for
    hidden_acts: tuple[str, ...]
    # layer norm (name under model.layers.N.) -> its width, for a config
    layer_norms: Callable[[ModelConfig], dict[str, int]]
    block: Callable[[LayerRun, np.ndarray], np.ndarray]   # one decoder layer's forward pass
    check: Callable[[dict[str, Any], str], None]         # architecture-specific config rules
    needs_quantization_config: bool = True
    # published checkpoints: name -> (the config.json keys that fix the shape, where from)
    presets: Mapping[str, tuple[dict[str, Any], str]] = field(default_factory=dict)

    @classmethod
    def of(cls, module: ModuleType) -> Architecture:
        return cls(module.MODEL_TYPE, module.DESCRIPTION, module.DEFAULTS, module.LINEAR_CLASSES,
                   module.HIDDEN_ACTS, module.layer_norms, module.block, module.check,
                   getattr(module, "NEEDS_QUANTIZATION_CONFIG", True),
                   getattr(module, "PRESETS", {}))


def preset_table(keys: tuple[str, ...], rows: list[tuple[Any, ...]], **common: Any
                 ) -> dict[str, tuple[dict[str, Any], str]]:
    """Named presets from rows of (name, *values of keys, source), each with the common keys:
    name -> (config.json keys, where the values come from)."""
    return {name: ({**dict(zip(keys, values, strict=True)), **common}, source)
            for name, *values, source in rows}


@dataclass(frozen=True)
class ModelConfig:
    """What the runtime needs from config.json, for any registered architecture."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    max_position_embeddings: int
    rms_norm_eps: float
    rope_theta: float
    tie_word_embeddings: bool
    bos_token_id: int | None
    eos_token_ids: tuple[int, ...]
    # "autobitlinear" multiplies the int result by weight_scale; "bitlinear" divides by it
    # (transformers' BitLinear.post_quant_process)
    linear_class: str = "autobitlinear"
    quantization_mode: str | None = None
    model_type: str = "bitnet"
    hidden_act: str = "relu2"
    attention_bias: bool = False
    mlp_bias: bool = False
    use_rms_norm: bool = False            # an RMSNorm inside every BitLinear, before quantising
    linear_rms_norm_eps: float = 1e-6

    @property
    def arch(self) -> Architecture:
        from . import lookup

        return lookup(self.model_type, self.linear_class)

    @property
    def divide(self) -> bool:
        return self.linear_class == "bitlinear"

    @property
    def q_dim(self) -> int:
        return self.num_attention_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_key_value_heads * self.head_dim

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """BitLinear name (under model.layers.N.) -> (out_features, in_features)."""
        h, i, q, kv = self.hidden_size, self.intermediate_size, self.q_dim, self.kv_dim
        return dict(zip(LINEARS, ((q, h), (kv, h), (kv, h), (h, q), (i, h), (i, h), (h, i)),
                        strict=True))

    @property
    def projections(self) -> tuple[str, ...]:
        """The BitLinears' short names ("q_proj", ...), in the order a layer runs them."""
        return tuple(full.split(".")[-1] for full in self.linear_shapes())

    def has_bias(self, linear: str) -> bool:
        return self.attention_bias if linear in ATTENTION_LINEARS else self.mlp_bias

    def layer_norms(self) -> dict[str, int]:
        return self.arch.layer_norms(self)

    def layer_floats(self, i: int) -> dict[str, tuple[int, ...]]:
        """Every float tensor of layer i besides the BitLinear weights: name -> shape."""
        pre = f"model.layers.{i}."
        out = {pre + n + ".weight": (w,) for n, w in self.layer_norms().items()}
        for name, (out_f, in_f) in self.linear_shapes().items():
            if self.has_bias(name):
                out[pre + name + ".bias"] = (out_f,)
            if self.use_rms_norm:
                out[pre + name + ".rms_norm.weight"] = (in_f,)
        return out

    @property
    def max_k(self) -> int:
        return max(k for _, k in self.linear_shapes().values())

    def shape(self, name: str, source: str = "") -> ModelShape:
        """The estimator's shape record of this model."""
        layer = tuple(Matmul(proj, k, n) for proj, (n, k) in
                      zip(self.projections, self.linear_shapes().values(), strict=True))
        return ModelShape(
            name=name, model_type=self.model_type, hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size, num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads, head_dim=self.head_dim,
            vocab_size=self.vocab_size, max_position_embeddings=self.max_position_embeddings,
            tie_word_embeddings=self.tie_word_embeddings, layer=layer, source=source)

    @classmethod
    def from_dict(cls, raw: Any, source: str = "config.json") -> ModelConfig:
        from . import read_config_dict

        return read_config_dict(raw, source)


# ------------------------------------------------------------------------------------------
# reading config.json
# ------------------------------------------------------------------------------------------


def _pos_int(c: Mapping[str, Any], key: str, source: str) -> int:
    v = c[key]
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise CheckpointError(f"{source}: {key} must be a positive integer, got {v!r}")
    return v


def _pos_float(key: str, value: Any, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise CheckpointError(f"{source}: {key} must be a positive number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class QuantSettings:
    """transformers' BitNetQuantConfig, with its defaults."""

    linear_class: str = "bitlinear"
    mode: str = "offline"
    use_rms_norm: bool = False
    rms_norm_eps: float = 1e-6


def read_quantization(qc: Any, source: str) -> QuantSettings | None:
    if qc is None:
        return None
    where = f"{source}: quantization_config"
    if not isinstance(qc, dict):
        raise CheckpointError(f"{where} must be an object")
    if qc.get("quant_method") != "bitnet":
        raise CheckpointError(f"{where}.quant_method {qc.get('quant_method')!r} is not "
                              "supported; expected \"bitnet\"")
    q = QuantSettings(qc.get("linear_class", "bitlinear"), qc.get("quantization_mode", "offline"),
                      qc.get("use_rms_norm", False), qc.get("rms_norm_eps", 1e-6) or 1e-6)
    if q.linear_class not in LINEAR_CLASSES:
        raise CheckpointError(f"{where}.linear_class {q.linear_class!r} must be one of "
                              f"{LINEAR_CLASSES}")
    if q.mode not in ("offline", "online"):
        raise CheckpointError(f"{where}.quantization_mode {q.mode!r} must be \"offline\" or "
                              "\"online\"")
    skip = qc.get("modules_to_not_convert") or []
    if not isinstance(skip, list) or [m for m in skip if m != "lm_head"]:
        raise CheckpointError(f"{where}.modules_to_not_convert {skip!r} is not supported: "
                              "tritium runs every decoder linear as a BitLinear (only "
                              "\"lm_head\" may be listed)")
    if not isinstance(q.use_rms_norm, bool):
        raise CheckpointError(f"{where}.use_rms_norm must be true or false, got "
                              f"{q.use_rms_norm!r}")
    _pos_float("quantization_config.rms_norm_eps", q.rms_norm_eps, source)
    return q


def build_config(arch: Architecture, raw: Mapping[str, Any], quant: QuantSettings | None,
                 source: str) -> ModelConfig:
    """A ModelConfig from config.json's object: the architecture's defaults where it is silent,
    then the rules every architecture shares, then the architecture's own."""
    c = {**arch.defaults, **{k: v for k, v in raw.items() if v is not None or k in (
        "bos_token_id", "eos_token_id", "head_dim")}}
    if c.get("num_key_value_heads") is None or (
            "num_key_value_heads" in raw and raw["num_key_value_heads"] is None):
        c["num_key_value_heads"] = c["num_attention_heads"]  # as the Config's __post_init__
    sizes = {k: _pos_int(c, k, source) for k in (
        "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
        "num_attention_heads", "num_key_value_heads", "max_position_embeddings")}
    if sizes["num_hidden_layers"] > MAX_LAYERS:
        raise CheckpointError(f"{source}: num_hidden_layers={sizes['num_hidden_layers']} is "
                              f"implausible (at most {MAX_LAYERS}); is config.json corrupt?")
    heads, kv = sizes["num_attention_heads"], sizes["num_key_value_heads"]
    if heads % kv:
        raise CheckpointError(f"{source}: num_attention_heads={heads} must be a multiple of "
                              f"num_key_value_heads={kv} (grouped-query attention)")
    if c.get("head_dim") is None:
        c["head_dim"] = sizes["hidden_size"] // heads
    if c["hidden_act"] not in arch.hidden_acts:
        raise CheckpointError(f"{source}: hidden_act {c['hidden_act']!r} is not supported; "
                              f"{arch.model_type} uses "
                              f"{' or '.join(map(repr, arch.hidden_acts))}")
    for key in ("attention_bias", "mlp_bias", "tie_word_embeddings"):
        if not isinstance(c.get(key, False), bool):
            raise CheckpointError(f"{source}: {key} must be true or false, got {c[key]!r}")
    rope = c.get("rope_parameters") or c.get("rope_scaling") or {}
    if not isinstance(rope, dict):
        raise CheckpointError(f"{source}: rope_parameters must be an object, got {rope!r}")
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default":
        raise CheckpointError(f"{source}: rope_type {rope_type!r} is not supported; "
                              "tritium implements the default RoPE")
    arch.check(c, source)
    head_dim = c["head_dim"]
    if not isinstance(head_dim, int) or isinstance(head_dim, bool) or head_dim < 2 \
            or head_dim % 2:
        raise CheckpointError(f"{source}: head_dim={head_dim!r} must be an even integer >= 2 "
                              "for RoPE")
    q = quant or QuantSettings(linear_class="autobitlinear")
    if q.linear_class == "autobitlinear" and (c.get("attention_bias") or c.get("mlp_bias")):
        # AutoBitLinear adds its bias before the weight_scale multiply (offline) and after it
        # (online); only BitLinear's plain "add after dequantising" is implemented
        raise CheckpointError(f"{source}: attention_bias/mlp_bias with linear_class "
                              "\"autobitlinear\" is not supported; biases work with "
                              "\"bitlinear\"")

    eos = c.get("eos_token_id")
    eos_ids = tuple(eos) if isinstance(eos, list) else (() if eos is None else (eos,))
    if not all(isinstance(e, int) and not isinstance(e, bool) for e in eos_ids):
        raise CheckpointError(f"{source}: eos_token_id must be an integer or a list of "
                              f"integers, got {eos!r}")
    bos = c.get("bos_token_id")
    return ModelConfig(
        **sizes, head_dim=head_dim,
        rms_norm_eps=_pos_float("rms_norm_eps", c["rms_norm_eps"], source),
        rope_theta=_pos_float("rope_theta", rope.get("rope_theta", c["rope_theta"]), source),
        tie_word_embeddings=c["tie_word_embeddings"],
        bos_token_id=bos if isinstance(bos, int) else None,
        eos_token_ids=eos_ids,
        linear_class=q.linear_class,
        quantization_mode=quant.mode if quant else None,
        model_type=arch.model_type,
        hidden_act=c["hidden_act"],
        attention_bias=c.get("attention_bias", False),
        mlp_bias=c.get("mlp_bias", False),
        use_rms_norm=q.use_rms_norm,
        linear_rms_norm_eps=q.rms_norm_eps,
    )
