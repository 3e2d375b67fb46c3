"""Llama with BitNet quantisation (model_type "llama" + quantization_config quant_method
"bitnet"), the layout of tiiuae's Falcon3-*-1.58bit: transformers' `LlamaForCausalLM` with every
linear but the LM head replaced by a BitLinear (`integrations/bitnet.py`).

    x = embed_tokens(ids)
    for each layer:
        h = input_layernorm(x)
        x = x + o_proj(attention(rope(q_proj(h), k_proj(h)), v_proj(h)))
        h = post_attention_layernorm(x)
        x = x + down_proj(silu(gate_proj(h)) * up_proj(h))
    logits = lm_head(norm(x))

No sub-norms. Each BitLinear may carry a bias (attention_bias, mlp_bias) and, with
quantization_config.use_rms_norm, an RMSNorm of its input before quantisation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import ops
from ..safetensors import CheckpointError
from .config import LayerRun, ModelConfig, preset_table

# transformers' LlamaConfig defaults, used where config.json is silent
DEFAULTS: dict[str, Any] = {
    "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": None,
    "hidden_act": "silu", "max_position_embeddings": 2048, "rms_norm_eps": 1e-6,
    "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": False,
    "attention_bias": False, "mlp_bias": False, "head_dim": None, "rope_theta": 10000.0,
}


def layer_norms(cfg: ModelConfig) -> dict[str, int]:
    return {"input_layernorm": cfg.hidden_size, "post_attention_layernorm": cfg.hidden_size}


def block(layer: LayerRun, x: np.ndarray) -> np.ndarray:
    h = layer.norm("input_layernorm", x)
    q, k, v = layer.linears(("q_proj", "k_proj", "v_proj"), h)
    x = x + layer.linears(("o_proj",), layer.attention(q, k, v))[0]

    h = layer.norm("post_attention_layernorm", x)
    g, u = layer.linears(("gate_proj", "up_proj"), h)
    return x + layer.linears(("down_proj",), ops.silu(g) * u)[0]


def check(c: dict[str, Any], source: str) -> None:
    if c["hidden_size"] % c["num_attention_heads"]:
        raise CheckpointError(f"{source}: hidden_size={c['hidden_size']} must be a multiple of "
                              f"num_attention_heads={c['num_attention_heads']} (LlamaConfig)")
    if c.get("pretraining_tp", 1) not in (1, None):
        raise CheckpointError(f"{source}: pretraining_tp={c['pretraining_tp']!r} is not "
                              "supported; expected 1")


MODEL_TYPE = "llama"
DESCRIPTION = "Llama with quantization_config quant_method bitnet, e.g. Falcon3-*-1.58bit"
LINEAR_CLASSES = ("bitlinear", "autobitlinear")
HIDDEN_ACTS = ("silu",)
# the 1bitLLM reproductions of the BitNet b1.58 paper: Llama-shaped, no GQA
PRESETS = preset_table(
    ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
     "num_key_value_heads", "vocab_size", "max_position_embeddings", "tie_word_embeddings"),
    [("bitnet_b1_58-large", 1536, 4096, 24, 16, 16, 32002, 2048, False,
      "1bitLLM/bitnet_b1_58-large config.json"),
     ("bitnet_b1_58-3B", 3200, 8640, 26, 32, 32, 32002, 2048, False,
      "1bitLLM/bitnet_b1_58-3B config.json")],
    quantization_config={"quant_method": "bitnet", "linear_class": "bitlinear"})
