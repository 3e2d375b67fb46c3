"""tritium's host runtime against transformers' LlamaForCausalLM with a BitNet
quantization_config (the Falcon3-*-1.58bit layout), CPU float32.

The reference is transformers' Llama with every linear but the LM head replaced by its
`BitLinear` (packed uint8 weights, output divided by the stored weight_scale, optional bias,
optional RMSNorm before quantisation), built and loaded by host/hf_reference.py; checkpoints are
packed with transformers' own `pack_weights` (tests/parity.py). Same tolerances as the BitNet
parity tests: every logit within 1e-5 x max|logit|, the 8 greedy tokens identical. BitLinear
stores out_features // 4 packed rows, so every out_features here is a multiple of 4.
"""

from __future__ import annotations

from tritium.host.synthetic import ModelSpec

from .parity import parity_suite


def llama(**kw) -> ModelSpec:
    return ModelSpec(model_type="llama", rope_theta=10000.0, rms_norm_eps=1e-6, **kw)


CASES = {
    # grouped-query attention (2 query heads per KV head), tied head, head_dim 24
    "gqa_tied": (llama(hidden=96, intermediate=200, layers=2, heads=4, kv_heads=2, vocab=300),
                 {}),
    # untied head, full multi-head attention, biases on every BitLinear, head_dim 20
    "untied_bias": (llama(hidden=60, intermediate=132, layers=2, heads=3, kv_heads=3,
                          vocab=251, tied=False, bias=True), {"seed": 1}),
    # an RMSNorm inside every BitLinear; 4 query heads per KV head; 3 shards
    "rms_norm_sharded": (llama(hidden=64, intermediate=176, layers=3, heads=8, kv_heads=2,
                               vocab=200, use_rms_norm=True), {"seed": 2, "shards": 3}),
    # bias and RMSNorm together, one KV head, odd vocabulary
    "bias_rms_norm": (llama(hidden=48, intermediate=100, layers=2, heads=4, kv_heads=1,
                            vocab=127, tied=False, bias=True, use_rms_norm=True), {"seed": 3}),
    # head_dim given explicitly and wider than hidden / heads (q_proj 64 -> 96)
    "wide_heads": (llama(hidden=64, intermediate=120, layers=2, heads=4, kv_heads=2, vocab=150,
                         head_dim=24), {"seed": 4}),
    # the AutoBitLinear class on Llama (multiplies by weight_scale)
    "autobitlinear": (llama(hidden=64, intermediate=128, layers=2, heads=4, kv_heads=2,
                            vocab=160, linear_class="autobitlinear"), {"seed": 5}),
}


pair, test_logits_match_transformers, test_greedy_tokens_match_transformers = \
    parity_suite(CASES)


def test_llama_layers_are_bitlinears(pair) -> None:
    """The reference really is the Falcon3 layout: BitLinear modules, no sub-norms, SiLU."""
    from transformers.integrations.bitnet import AutoBitLinear, BitLinear

    ours, hf, spec = pair
    layer = hf.model.layers[0]
    cls = AutoBitLinear if spec.linear_class == "autobitlinear" else BitLinear
    assert isinstance(layer.self_attn.q_proj, cls) and isinstance(layer.mlp.down_proj, cls)
    assert (layer.mlp.up_proj.bias is not None) == spec.bias
    assert (layer.mlp.up_proj.rms_norm is not None) == spec.use_rms_norm
    assert type(hf).__name__ == "LlamaForCausalLM" and ours.config.model_type == "llama"
    assert not hasattr(layer.self_attn, "attn_sub_norm")
    assert hf.config.hidden_act == ours.config.hidden_act == "silu"


def test_tritiums_own_writer_loads_in_transformers(tmp_path) -> None:
    """host/synthetic.py's Llama-BitNet checkpoints (its own safetensors writer and packer) are
    ones transformers loads and runs to the same logits."""
    from tritium.host import BitNetModel
    from tritium.host.hf_reference import hf_reference
    from tritium.host.synthetic import write_random_checkpoint

    from .parity import check_logits, torch_eager

    ck = write_random_checkpoint(tmp_path / "own", hidden=48, intermediate=100, layers=2, heads=4,
                                 kv_heads=2, vocab=90, tied=False, seed=11, model_type="llama",
                                 bias=True, use_rms_norm=True)
    spec = ModelSpec(hidden=48, intermediate=100, layers=2, heads=4, kv_heads=2, vocab=90)
    with torch_eager(), BitNetModel.from_pretrained(ck) as ours:
        check_logits(ours, hf_reference(ck), spec, 9)
