"""BitNet b1.58 (model_type "bitnet"), as transformers' `models/bitnet/modeling_bitnet.py`.

    x = embed_tokens(ids)
    for each layer:
        h = input_layernorm(x)
        x = x + o_proj(attn_sub_norm(attention(rope(q_proj(h), k_proj(h)), v_proj(h))))
        h = post_attention_layernorm(x)
        x = x + down_proj(ffn_sub_norm(relu(gate_proj(h))**2 * up_proj(h)))
    logits = lm_head(norm(x))
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import ops
from ..safetensors import CheckpointError
from .config import LayerRun, ModelConfig, preset_table

# transformers' BitNetConfig defaults (the 2B-4T values), used where config.json is silent
DEFAULTS: dict[str, Any] = {
    "vocab_size": 128256, "hidden_size": 2560, "intermediate_size": 6912,
    "num_hidden_layers": 30, "num_attention_heads": 20, "num_key_value_heads": 5,
    "hidden_act": "relu2", "max_position_embeddings": 2048, "rms_norm_eps": 1e-5,
    "bos_token_id": 128000, "eos_token_id": 128001, "tie_word_embeddings": False,
    "attention_bias": False, "rope_theta": 500000.0,
}


def layer_norms(cfg: ModelConfig) -> dict[str, int]:
    return {"input_layernorm": cfg.hidden_size, "post_attention_layernorm": cfg.hidden_size,
            "self_attn.attn_sub_norm": cfg.hidden_size,
            "mlp.ffn_sub_norm": cfg.intermediate_size}


def block(layer: LayerRun, x: np.ndarray) -> np.ndarray:
    h = layer.norm("input_layernorm", x)
    q, k, v = layer.linears(("q_proj", "k_proj", "v_proj"), h)
    a = layer.norm("attn_sub_norm", layer.attention(q, k, v))
    x = x + layer.linears(("o_proj",), a)[0]

    h = layer.norm("post_attention_layernorm", x)
    g, u = layer.linears(("gate_proj", "up_proj"), h)
    f = layer.norm("ffn_sub_norm", ops.relu2(g) * u)
    return x + layer.linears(("down_proj",), f)[0]


def check(c: dict[str, Any], source: str) -> None:
    heads, hidden, head_dim = c["num_attention_heads"], c["hidden_size"], c["head_dim"]
    # the attention output (heads x head_dim wide) is normalised by attn_sub_norm over
    # hidden_size, so heads must divide hidden_size evenly
    if head_dim * heads != hidden:
        raise CheckpointError(f"{source}: hidden_size={hidden} must be num_attention_heads="
                              f"{heads} x head_dim (head_dim={head_dim}); BitNet's "
                              "attn_sub_norm spans hidden_size")
    if c["attention_bias"]:
        raise CheckpointError(f"{source}: attention_bias=true is not supported (BitNet b1.58 "
                              "has no biases)")
    c["mlp_bias"] = False   # BitNetMLP has no bias, whatever config.json says


MODEL_TYPE = "bitnet"
DESCRIPTION = "BitNet b1.58, linear_class autobitlinear or bitlinear"
LINEAR_CLASSES = ("autobitlinear", "bitlinear")
HIDDEN_ACTS = ("relu2",)
NEEDS_QUANTIZATION_CONFIG = False   # float master weights are quantised on load
PRESETS = preset_table(
    ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
     "num_key_value_heads", "vocab_size", "max_position_embeddings", "tie_word_embeddings"),
    [("bitnet-b1.58-2B-4T", 2560, 6912, 30, 20, 5, 128256, 4096, True,
      "microsoft/bitnet-b1.58-2B-4T config.json")],
    quantization_config={"quant_method": "bitnet", "linear_class": "autobitlinear",
                         "quantization_mode": "offline"})
