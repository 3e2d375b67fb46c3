"""tritium's host runtime against transformers' BitNetForCausalLM (CPU, float32), the reference.

The checkpoints are written independently of tritium's own writer: ternary weights packed with
transformers' `pack_weights`, bf16 tensors made by torch, files saved by the `safetensors`
package. The reference model is transformers' BitNet with its BitNet linear layers
(`replace_with_bitnet_linear`, AutoBitLinear offline or online, or the older BitLinear), loaded
the way transformers' BitNet quantizer deserialises (`unpack_weights` on the packed uint8).

Tolerance: every logit within 1e-5 x max|logit| of transformers' (measured: about 5e-7), and
the 8 greedy tokens identical to `generate(do_sample=False)`.

Rounding ties are forced, and checked to be ties, as tests/parity.py describes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tritium.host.synthetic import ModelSpec

from .parity import parity_suite

CASES = {
    # grouped-query attention (2 query heads per KV head), tied, head_dim 24, intermediate 200
    "gqa_tied": (ModelSpec(hidden=96, intermediate=200, layers=2, heads=4, kv_heads=2,
                           vocab=300), {}),
    # untied LM head, full multi-head attention, no power of two anywhere (head_dim 20)
    "untied_mha": (ModelSpec(hidden=60, intermediate=132, layers=2, heads=3, kv_heads=3,
                             vocab=251, tied=False), {"seed": 1}),
    # 4 query heads per KV head, 3 layers split over 3 safetensors shards
    "sharded": (ModelSpec(hidden=64, intermediate=176, layers=3, heads=8, kv_heads=2,
                          vocab=200), {"shards": 3, "seed": 2}),
    # bf16 master weights, quantised on load (transformers: AutoBitLinear online mode)
    "bf16_master": (ModelSpec(hidden=96, intermediate=200, layers=2, heads=6, kv_heads=2,
                              vocab=300, tied=False), {"packed": False, "seed": 3}),
    # float32 master weights
    "f32_master": (ModelSpec(hidden=48, intermediate=100, layers=2, heads=4, kv_heads=1,
                             vocab=128), {"packed": False, "seed": 4,
                                          "master_dtype": torch.float32}),
    # the older packed BitLinear class, which divides by its weight_scale
    "bitlinear": (ModelSpec(hidden=64, intermediate=128, layers=2, heads=4, kv_heads=2,
                            vocab=160, linear_class="bitlinear"), {"seed": 5}),
}


pair, test_logits_match_transformers, test_greedy_tokens_match_transformers = \
    parity_suite(CASES)


def test_quantised_codes_match_transformers(pair) -> None:
    """The int8 ternary codes tritium holds equal transformers' weights (packed: unpacked
    values; master: WeightQuant's output divided by the scale)."""
    ours, hf, spec = pair
    from transformers.integrations.bitnet import AutoBitLinear, WeightQuant

    layer = hf.model.layers[spec.layers - 1]
    for proj, module in (("q_proj", layer.self_attn.q_proj), ("down_proj", layer.mlp.down_proj)):
        lin = ours._layers[spec.layers - 1].linears[proj]
        if not isinstance(module, AutoBitLinear):
            continue   # BitLinear keeps its packed buffer; covered by the logits tests
        codes = lin.prepared.w.T
        with torch.no_grad():
            w = module.weight.float()
            if module.online_quant:
                # WeightQuant's codes, and its scale to an ulp: torch sums |W| in float32 in
                # its own order, golden in float64 rounded once (see golden/quant.py)
                s = 1.0 / w.abs().mean().clamp(min=1e-5)
                np.testing.assert_array_equal(codes, (w * s).round().clamp(-1, 1).numpy())
                assert lin.scale == pytest.approx(float(1.0 / s), rel=2e-7)
                np.testing.assert_allclose(WeightQuant.apply(w).numpy(),
                                           codes * np.float32(lin.scale), rtol=2e-7)
            else:
                np.testing.assert_array_equal(codes, w.numpy().astype(np.int8))
