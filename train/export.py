"""Export a trained `BitNet` to the Hugging Face packed offline checkpoint tritium and
transformers load: config.json (``model_type: bitnet``, ``quantization_config`` bitnet /
autobitlinear / offline), model.safetensors (uint8 packed ternary weights + float32
``weight_scale`` per projection, float32 norms and embeddings) and tokenizer.json.

Floats are stored in float32, not bf16, so that the exported model computes exactly what the
trained model computes in its quantised inference mode.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from ..golden.files import atomic_write
from ..golden.packing import pack_hf
from ..host.synthetic import ModelSpec, write_checkpoint_files
from .model import BitNet
from .quant import weight_codes


def hf_config(model: BitNet) -> dict[str, Any]:
    c = model.config
    spec = ModelSpec(hidden=c.hidden_size, intermediate=c.intermediate_size,
                     layers=c.num_hidden_layers, heads=c.num_attention_heads,
                     kv_heads=c.num_key_value_heads, vocab=c.vocab_size, tied=True,
                     rope_theta=c.rope_theta, max_position_embeddings=c.max_position_embeddings,
                     rms_norm_eps=c.rms_norm_eps, bos_token_id=None, eos_token_id=c.eos_token_id)
    cfg = spec.config(packed=True)
    cfg.update(torch_dtype="float32", dtype="float32", pad_token_id=c.pad_token_id)
    return cfg


def checkpoint_tensors(model: BitNet) -> dict[str, np.ndarray]:
    """The tensors of the packed checkpoint, in transformers' names and order."""
    def f32(t: torch.Tensor) -> np.ndarray:
        return t.detach().float().cpu().numpy().astype(np.float32)

    tensors = {"model.embed_tokens.weight": f32(model.embed_tokens.weight)}
    linears = model.bitlinears()
    for i, layer in enumerate(model.layers):
        pre = f"model.layers.{i}."
        tensors[pre + "input_layernorm.weight"] = f32(layer.input_layernorm.weight)
        tensors[pre + "post_attention_layernorm.weight"] = f32(
            layer.post_attention_layernorm.weight)
        tensors[pre + "self_attn.attn_sub_norm.weight"] = f32(layer.self_attn.attn_sub_norm.weight)
        tensors[pre + "mlp.ffn_sub_norm.weight"] = f32(layer.mlp.ffn_sub_norm.weight)
        for name, lin in linears.items():
            if name.startswith(pre):
                q, scale = weight_codes(lin.weight)
                tensors[name + ".weight"] = pack_hf(q.numpy().astype(np.int8), name=name)
                tensors[name + ".weight_scale"] = scale.reshape(1).numpy().astype(np.float32)
    tensors["model.norm.weight"] = f32(model.norm.weight)
    return tensors


def export(model: BitNet, tokenizer: Tokenizer, directory: str | Path) -> Path:
    """Write config.json, model.safetensors and tokenizer.json into directory (each file
    atomically); returns the directory."""
    out = Path(directory)
    write_checkpoint_files(out, hf_config(model), checkpoint_tensors(model), {})
    atomic_write(out / "tokenizer.json", [tokenizer.to_str().encode()])
    return out
