"""The two halves of ONNX support meet: a model tritium exported (`tritium export`) runs through
OnnxModel with every BitLinear's MatMulInteger on the accelerator, and gives golden's logits
and the same per-projection array events as the runtime that never saw ONNX."""

from __future__ import annotations

import numpy as np
import pytest

from tritium.cli import main
from tritium.golden import ArrayConfig
from tritium.host import BitNetModel, OnnxModel

ARRAY = ArrayConfig(rows=4, cols=4)
PROMPT = [3, 4, 12, 5, 6, 13]      # tiny-adder's "12+34="


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("roundtrip") / "tiny-adder.onnx"
    assert main(["export", "--model", "tiny-adder", "-o", str(path)]) == 0
    return str(path)


def _feeds(model: BitNetModel, ids: list[int]) -> dict[str, np.ndarray]:
    c = model.config
    kv = np.zeros((1, c.num_key_value_heads, 0, c.hidden_size // c.num_attention_heads),
                  np.float32)
    past = {f"past_key_values.{i}.{k}": kv for i in range(c.num_hidden_layers)
            for k in ("key", "value")}
    return {"input_ids": np.array([ids]), "position_ids": np.arange(len(ids))[None],
            "attention_mask": np.ones((1, len(ids)), np.int64), **past}


@pytest.mark.parametrize("backend", ["golden", "rtl"])
def test_exported_model_runs_on_the_accelerator(exported: str, backend: str) -> None:
    with BitNetModel.from_pretrained("tiny-adder", backend=backend, array=ARRAY) as ref, \
            OnnxModel(exported, backend=backend, array=ARRAY) as onnx_model:
        want = ref.logits(PROMPT)
        got, = onnx_model.run(["logits"], _feeds(ref, PROMPT))
        layers, projs = ref.config.num_hidden_layers, len(ref.stats.layers[0])
        # every BitLinear, and nothing else, went to the accelerator
        assert len(onnx_model.partition["accelerator"]) == layers * projs
        assert all(n.endswith("_proj/MatMulInteger")
                   for n in onnx_model.partition["accelerator"])
        np.testing.assert_allclose(got[0], want, rtol=0, atol=1e-4 * np.abs(want).max())
        assert int(np.argmax(got[0, -1])) == int(np.argmax(want[-1]))
        # the same GEMMs on the same array: the same events, summed over the model
        ref_total, onnx_total = ref.stats.total, onnx_model.stats.total
        for field in ("tiles", "cycles", "macs", "zero_skips"):
            assert getattr(onnx_total, field) == getattr(ref_total, field), field
