"""Random ternary checkpoints in the Hugging Face layout, written without torch.

Used by the tests, the benchmark and the demo: `write_random_checkpoint` writes a config.json
that transformers accepts (BitNetConfig for model_type "bitnet", LlamaConfig with a BitNet
quantization_config for "llama") and safetensors files (sharded or not) holding either the
packed offline format (uint8 [ceil(out/4), in] + bf16 `weight_scale`, as published for
microsoft/bitnet-b1.58-2B-4T and the Falcon3-*-1.58bit models) or float master weights (bf16 or
f32) that are quantised on load. Tensor names, shapes and config defaults come from the
architecture (host/arch).

The random values are scaled so that activations stay near unit size through the layers: the
logits are then spread out, and greedy decoding is not decided by float noise.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..golden.checks import InputError
from ..golden.files import atomic_write
from ..golden.packing import pack_hf
from .arch import ModelConfig, config_json, read_config_dict
from .safetensors import bf16_from_float32, write_safetensors

__all__ = ["ModelSpec", "RandomWeights", "bf16_from_float32", "checkpoint_tensors",
           "random_weights", "write_checkpoint_files", "write_random_checkpoint",
           "write_safetensors", "write_word_tokenizer"]


@dataclass(frozen=True)
class ModelSpec:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool = True
    rope_theta: float = 500000.0
    max_position_embeddings: int = 4096
    rms_norm_eps: float = 1e-5
    bos_token_id: int | None = 0
    eos_token_id: int | list[int] | None = None
    model_type: str = "bitnet"
    linear_class: str | None = None   # None: autobitlinear for bitnet, bitlinear for llama
    bias: bool = False            # attention_bias and mlp_bias (llama)
    use_rms_norm: bool = False    # an RMSNorm inside every BitLinear
    head_dim: int | None = None   # llama only; None: hidden // heads

    def config(self, *, packed: bool = True) -> dict[str, Any]:
        """config.json as transformers writes it for this architecture."""
        arch_keys: dict[str, Any] = {}
        if self.model_type == "bitnet":
            arch_keys["architectures"] = ["BitNetForCausalLM"]
        else:
            arch_keys.update(architectures=["LlamaForCausalLM"], mlp_bias=self.bias,
                             head_dim=self.head_dim or self.hidden // self.heads)
        quant: dict[str, Any] = {
            "quant_method": "bitnet",
            "linear_class": self.linear_class or (
                "autobitlinear" if self.model_type == "bitnet" else "bitlinear"),
            # master weights are quantised on the fly by transformers' online mode
            "quantization_mode": "offline" if packed else "online",
        }
        if self.use_rms_norm:
            quant.update(use_rms_norm=True, rms_norm_eps=self.rms_norm_eps)
        return config_json(
            self.model_type, **arch_keys,
            vocab_size=self.vocab, hidden_size=self.hidden,
            intermediate_size=self.intermediate, num_hidden_layers=self.layers,
            num_attention_heads=self.heads, num_key_value_heads=self.kv_heads,
            max_position_embeddings=self.max_position_embeddings, initializer_range=0.02,
            rms_norm_eps=self.rms_norm_eps, use_cache=True, bos_token_id=self.bos_token_id,
            eos_token_id=self.eos_token_id, pad_token_id=None, tie_word_embeddings=self.tied,
            attention_bias=self.bias, attention_dropout=0.0, rope_theta=self.rope_theta,
            torch_dtype="bfloat16", quantization_config=quant)

    def model_config(self, *, packed: bool = True) -> ModelConfig:
        """The runtime's reading of config(): tensor names and shapes come from here."""
        return read_config_dict(self.config(packed=packed), f"{self.model_type} spec")


@dataclass
class RandomWeights:
    """The values a random checkpoint holds, before packing: ternary [out, in] int8 codes with
    their weight_scale (packed format) or float32 master weights, plus float32 tensors (their
    bf16 rounding is what gets stored)."""

    ternary: dict[str, np.ndarray] = field(default_factory=dict)
    scales: dict[str, float] = field(default_factory=dict)
    master: dict[str, np.ndarray] = field(default_factory=dict)
    floats: dict[str, np.ndarray] = field(default_factory=dict)


def random_weights(spec: ModelSpec, *, packed: bool = True, seed: int = 0,
                   zero_fraction: float = 0.4) -> RandomWeights:
    rng = np.random.default_rng(seed)
    rw = RandomWeights()
    # float tensors are rounded to bf16 up front, so the float32 values here are the stored ones
    def f(shape: tuple[int, ...], scale: float, loc: float = 0.0) -> np.ndarray:
        x = loc + scale * rng.standard_normal(shape, dtype=np.float32)
        return (bf16_from_float32(x).astype(np.uint32) << 16).view(np.float32)

    # small next to the layers' unit-size outputs, so a tied LM head does not just echo the
    # input token back
    zeros = round(256 * zero_fraction)
    table = np.repeat(np.array([-1, 0, 1], np.int8),
                      [(256 - zeros) // 2, zeros, 256 - zeros - (256 - zeros) // 2])
    cfg = spec.model_config(packed=packed)
    rw.floats["model.embed_tokens.weight"] = f((spec.vocab, spec.hidden), 0.25)
    for i in range(spec.layers):
        pre = f"model.layers.{i}."
        for name, shape in cfg.layer_floats(i).items():
            # norm weights near 1; biases small
            rw.floats[name] = f(shape, 0.1, 0.0 if name.endswith(".bias") else 1.0)
        for n, (out_f, in_f) in cfg.linear_shapes().items():
            name = pre + n
            if packed:
                # one random byte per weight through a 256-entry table: fast enough for the
                # two billion weights of a 2B-4T-sized benchmark checkpoint
                rw.ternary[name] = table[rng.integers(0, 256, (out_f, in_f), dtype=np.uint8)]
                # about unit-size outputs for unit-size inputs; stored as bf16, and inverted
                # for BitLinear, which divides by its stored weight_scale
                s = float(rng.uniform(0.7, 1.3)) / math.sqrt((1 - zero_fraction) * in_f)
                rw.scales[name] = float(np.float32(
                    (bf16_from_float32(np.array([1 / s if cfg.divide else s], np.float32)
                                       ).astype(np.uint32) << 16).view(np.float32)[0]))
            else:
                rw.master[name] = f((out_f, in_f), 1.0 / math.sqrt(in_f))
    rw.floats["model.norm.weight"] = f((spec.hidden,), 0.1, 1.0)
    if not spec.tied:
        rw.floats["lm_head.weight"] = f((spec.vocab, spec.hidden), 1.0)
    return rw


def checkpoint_tensors(rw: RandomWeights, *, master_dtype: str = "BF16"
                       ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(tensors, dtype overrides) in checkpoint order, packed with golden.packing.pack_hf."""
    if master_dtype not in ("BF16", "F32"):
        raise InputError(f"master_dtype must be BF16 or F32, got {master_dtype!r}")
    tensors: dict[str, np.ndarray] = {}
    dtypes: dict[str, str] = {}
    for name, x in rw.floats.items():
        tensors[name] = bf16_from_float32(x)
        dtypes[name] = "BF16"
    for name, q in rw.ternary.items():
        tensors[name + ".weight"] = pack_hf(q, name=name + ".weight")
        tensors[name + ".weight_scale"] = bf16_from_float32(np.array([rw.scales[name]],
                                                                     np.float32))
        dtypes[name + ".weight_scale"] = "BF16"
    for name, w in rw.master.items():
        if master_dtype == "BF16":
            tensors[name + ".weight"] = bf16_from_float32(w)
            dtypes[name + ".weight"] = "BF16"
        else:
            tensors[name + ".weight"] = w.astype(np.float32)
    return tensors, dtypes


def write_checkpoint_files(directory: str | Path, config: dict[str, Any],
                           tensors: Mapping[str, np.ndarray], dtypes: Mapping[str, str],
                           *, shards: int = 1) -> Path:
    """config.json + model.safetensors, or `shards` files and model.safetensors.index.json."""
    if not isinstance(shards, int) or shards < 1:
        raise InputError(f"shards must be a positive integer, got {shards!r}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    names = list(tensors)
    if shards == 1:
        write_safetensors(out / "model.safetensors", tensors, dtypes=dtypes,
                          metadata={"format": "pt"})
    else:
        # contiguous runs of tensors of about equal byte size, as save_pretrained shards
        total = sum(tensors[n].nbytes for n in names)
        weight_map: dict[str, str] = {}
        groups: list[list[str]] = [[] for _ in range(shards)]
        acc = 0
        for n in names:
            idx = min(shards - 1, acc * shards // max(total, 1))
            groups[idx].append(n)
            acc += tensors[n].nbytes
        for i, group in enumerate(groups):
            fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
            write_safetensors(out / fname, {n: tensors[n] for n in group},
                              dtypes={n: dtypes[n] for n in group if n in dtypes},
                              metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(group, fname))
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        atomic_write(out / "model.safetensors.index.json",
                      [json.dumps(index, indent=2).encode()])
    atomic_write(out / "config.json", [json.dumps(config, indent=2).encode()])
    return out


def write_random_checkpoint(directory: str | Path, *, hidden: int, intermediate: int,
                            layers: int, heads: int, kv_heads: int, vocab: int,
                            tied: bool = True, packed: bool = True, shards: int = 1,
                            seed: int = 0, master_dtype: str = "BF16", rope_theta: float = 500000.0,
                            max_position_embeddings: int = 4096,
                            eos_token_id: int | list[int] | None = None,
                            tokenizer: bool = False, model_type: str = "bitnet",
                            linear_class: str | None = None, bias: bool = False,
                            use_rms_norm: bool = False) -> Path:
    """A random ternary checkpoint folder in the Hugging Face layout; returns its path.

    model_type: "bitnet" or "llama" (Llama + BitNet quantisation; linear_class "bitlinear" by
    default, optional biases and use_rms_norm). packed: uint8 packed weights + weight_scale
    (quantization_mode "offline"); otherwise float master weights in master_dtype ("BF16" or
    "F32"), quantised on load. tokenizer: also write a word-level tokenizer.json (needs the
    `tokenizers` package).
    """
    spec = ModelSpec(hidden=hidden, intermediate=intermediate, layers=layers, heads=heads,
                     kv_heads=kv_heads, vocab=vocab, tied=tied,
                     rope_theta=rope_theta, max_position_embeddings=max_position_embeddings,
                     eos_token_id=eos_token_id, model_type=model_type,
                     linear_class=linear_class, bias=bias, use_rms_norm=use_rms_norm)
    rw = random_weights(spec, packed=packed, seed=seed)
    tensors, dtypes = checkpoint_tensors(rw, master_dtype=master_dtype)
    out = write_checkpoint_files(directory, spec.config(packed=packed), tensors, dtypes,
                                 shards=shards)
    if tokenizer:
        write_word_tokenizer(out, vocab)
    return out


_WORD_TEXT = ("the of and to a in is it you that he was for on are with as his they be at one "
          "have this from or had by hot word but what some we can out other were all there "
          "when up use your how said an each she which do their time if will way about many "
          "then them write would like so these her long make thing see him two has look more "
          "day could go come did number sound no most people my over know water than call "
          "first who may down side been now find")
_WORDS = _WORD_TEXT.split()


def write_word_tokenizer(directory: str | Path, vocab: int) -> Path:
    """A whitespace word-level tokenizer.json over `vocab` ids (common English words, then
    w<N>), so text prompts work on random checkpoints."""
    try:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    except ImportError:
        raise InputError("writing a tokenizer.json needs the `tokenizers` package") from None
    words = ["<unk>", *_WORDS][:vocab]
    words += [f"w{i}" for i in range(len(words), vocab)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##")   # joins words with spaces
    path = Path(directory) / "tokenizer.json"
    atomic_write(path, [tok.to_str().encode()])
    return path
