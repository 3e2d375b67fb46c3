"""transformers' own model of a checkpoint folder: the parity reference for tritium's runtime.

Used by the parity tests and the benchmark (needs torch, transformers and safetensors, which
tritium itself does not). The model class comes from config.json's model_type, its linears are
replaced by transformers' BitNet layers (`replace_with_bitnet_linear`: AutoBitLinear offline or
online, or BitLinear) and the weights are loaded the way transformers' BitNet quantizer
deserialises them (`unpack_weights` for packed AutoBitLinear weights; BitLinear keeps its packed
buffer and unpacks in forward).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..golden.checks import InputError

# model_type -> transformers' causal-LM class name
CAUSAL_LM = {"bitnet": "BitNetForCausalLM", "llama": "LlamaForCausalLM"}


def hf_reference(path: str | Path, *, meta: bool = False) -> Any:
    """transformers' float32 model of the folder, eager attention, in eval mode.

    meta: build the module tree on the meta device so that no random float32 weights are
    allocated before the checkpoint's replace them (what a full-size benchmark needs).
    """
    import torch
    import transformers
    from safetensors.torch import load_file
    from transformers.integrations.bitnet import replace_with_bitnet_linear, unpack_weights
    from transformers.utils.quantization_config import BitNetQuantConfig

    path = Path(path)
    config = transformers.AutoConfig.from_pretrained(path)
    if config.model_type not in CAUSAL_LM:
        raise InputError(f"{path}: no transformers reference for model_type "
                         f"{config.model_type!r}; known: {', '.join(CAUSAL_LM)}")
    config._attn_implementation = "eager"
    qc = BitNetQuantConfig(**config.quantization_config)
    cls = getattr(transformers, CAUSAL_LM[config.model_type])
    if meta:
        with torch.device("meta"):
            model = cls(config)
    else:
        model = cls(config)
    replace_with_bitnet_linear(model, modules_to_not_convert=["lm_head"], quantization_config=qc)
    modules = dict(model.named_modules())
    state = {}
    for f in sorted(path.glob("*.safetensors")):
        for name, t in load_file(f).items():
            module = modules[name.rsplit(".", 1)[0]]
            if t.dtype == torch.uint8:
                if qc.linear_class == "autobitlinear" and t.shape[0] * 4 == module.out_features:
                    t = unpack_weights(t, dtype=torch.float32)   # BitNetDeserialize
            else:
                t = t.float()
            state[name] = t
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
        missing = [m for m in missing if m != "lm_head.weight"]
    if missing or unexpected:
        raise InputError(f"{path}: transformers' {cls.__name__} is missing {missing} and does "
                         f"not expect {unexpected}")
    if meta:
        # its inv_freq buffer is not in the checkpoint, so it was left on the meta device
        model.model.rotary_emb = type(model.model.rotary_emb)(config)
    return model.eval()
