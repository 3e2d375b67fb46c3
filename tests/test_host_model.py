"""BitNetModel behaviour that does not need transformers: the KV cache, greedy decoding, the
statistics, memory layout, and bad inputs to logits/generate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tritium.golden import ArrayConfig, InputError
from tritium.golden.cycles import gemm_events_from_nnz
from tritium.host import BitNetModel
from tritium.host.model import PROJECTIONS
from tritium.host.synthetic import write_random_checkpoint
from tritium.host.weights import FloatMatrix

SPEC = dict(hidden=48, intermediate=100, layers=2, heads=4, kv_heads=2, vocab=64)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return write_random_checkpoint(tmp_path_factory.mktemp("m"), seed=11, **SPEC)


@pytest.fixture(scope="module")
def model(ckpt):
    with BitNetModel.from_pretrained(ckpt) as m:
        yield m


def test_generate_with_cache_equals_recomputing_the_prefix(model) -> None:
    prompt = [3, 14, 15, 9, 2]
    new = model.generate(prompt, max_new_tokens=6, stop_at_eos=False)
    assert len(new) == 6 and all(isinstance(t, int) for t in new)
    seq = list(prompt)
    for t in new:
        # without a cache: the whole sequence so far, fresh every time
        assert int(np.argmax(model.logits(seq)[-1])) == t
        seq.append(t)


def test_logits_are_a_fresh_sequence_each_call(model) -> None:
    a = model.logits([1, 2, 3])
    model.generate([7, 7], max_new_tokens=3)
    b = model.logits([1, 2, 3])
    np.testing.assert_array_equal(a, b)
    # the cache changes nothing for a prefix: logits of a prefix are a prefix of the logits
    np.testing.assert_allclose(model.logits([1, 2, 3, 4, 5])[:3], a, rtol=0, atol=1e-5)


def test_generate_stops_at_eos(tmp_path: Path) -> None:
    ck = write_random_checkpoint(tmp_path / "m", seed=11, **SPEC)
    with BitNetModel.from_pretrained(ck) as m:
        free = m.generate([3, 14, 15], max_new_tokens=6, stop_at_eos=False)
    cfg = json.loads((ck / "config.json").read_text())
    cfg["eos_token_id"] = [63, free[2]]
    (ck / "config.json").write_text(json.dumps(cfg))
    with BitNetModel.from_pretrained(ck) as m:
        stop = m.generate([3, 14, 15], max_new_tokens=6)
        assert stop == free[: free.index(free[2]) + 1]
        assert m.generate([3, 14, 15], max_new_tokens=6, stop_at_eos=False) == free
        assert m.generate([3, 14, 15], max_new_tokens=0) == []


def test_stats_per_layer_and_projection(ckpt) -> None:
    cfg = ArrayConfig(rows=4, cols=8, act_depth=3)
    with BitNetModel.from_pretrained(ckpt, array=cfg) as m:
        assert m.stats.total.calls == 0
        m.logits([1, 2, 3, 4, 5])
        s = m.stats
        assert s.tokens == 5 and s.forward_passes == 1 and len(s.layers) == SPEC["layers"]
        for i, layer in enumerate(s.layers):
            assert set(layer) == set(PROJECTIONS)
            for proj, ps in layer.items():
                prep = m._layers[i].linears[proj].prepared
                want = gemm_events_from_nnz(cfg, 5, prep.k, prep.n, prep.nnz)
                assert ps.calls == 1
                assert (ps.tiles, ps.cycles, ps.macs, ps.zero_skips) == \
                    (want.tiles, want.cycles, want.macs, want.zero_skips)
        total = s.total
        assert total.calls == 7 * SPEC["layers"]
        assert total.macs == sum(s.layer(i).macs for i in range(SPEC["layers"]))
        assert s.seconds >= s.backend_seconds > 0
        d = s.as_dict()
        json.dumps(d)
        assert d["array"]["cols"] == 8 and d["layers"][1]["projections"]["down_proj"]["calls"] == 1
        m.generate([1, 2], max_new_tokens=3)
        assert s.tokens == 5 + 2 + 2 and s.forward_passes == 4
        s.reset()
        assert s.total.calls == 0 and s.tokens == 0


def test_weights_stay_int8_and_embedding_stays_bf16(model) -> None:
    for layer in model._layers:
        for lin in layer.linears.values():
            assert lin.prepared.w.dtype == np.int8 and lin.prepared.w.flags.c_contiguous
    emb = model._embed
    assert isinstance(emb, FloatMatrix) and emb.dtype == "BF16"
    assert emb.raw.dtype == np.uint16 and not emb.raw.flags.owndata   # a view of the file


@pytest.mark.parametrize("dtype", ["F32", "BF16"])
def test_lm_head_in_blocks_equals_one_matmul(model, dtype) -> None:
    from tritium.host.checkpoint import bf16_to_float32
    from tritium.host.ops import LMHead

    full = bf16_to_float32(model._embed.raw)
    matrix = model._embed
    if dtype == "F32":
        matrix = FloatMatrix.__new__(FloatMatrix)
        matrix.name, matrix.dtype, matrix.raw, matrix.shape = "x", "F32", full, full.shape
    h = np.random.default_rng(0).standard_normal((3, SPEC["hidden"])).astype(np.float32)
    np.testing.assert_allclose(LMHead(matrix, block_rows=7)(h), h @ full.T, rtol=1e-6,
                               atol=1e-5)


@pytest.mark.parametrize(("ids", "message"), [
    ([], "token_ids is empty"),
    ([1, 64], "token id 64 at position 1 is outside the vocabulary .*valid ids are 0..63"),
    ([-1], "token id -1 at position 0 is outside"),
    ([[1, 2]], "1-D sequence"),
    ([1.5], "must be integers"),
    # too large for int64: NumPy makes an object array; the error still names id and vocabulary
    ([3, 10**30], "token id 1000000000000000000000000000000 at position 1 is outside the "
                  "vocabulary .*valid ids are 0..63"),
    ([3, None], "token ids must be integers, got None at position 1"),
])
def test_bad_token_ids(model, ids, message) -> None:
    with pytest.raises(InputError, match=message):
        model.logits(ids)
    with pytest.raises(InputError, match=message):
        model.generate(ids, 2)


def test_bad_generate_arguments(model) -> None:
    with pytest.raises(InputError, match="max_new_tokens must be an integer >= 0"):
        model.generate([1], -1)
    with pytest.raises(InputError, match="exceed max_position_embeddings=4096"):
        model.generate([1], 5000)
    with pytest.raises(InputError, match="has no tokenizer.json"):
        model.encode("hello")


def test_closed_model_refuses_work(ckpt) -> None:
    m = BitNetModel.from_pretrained(ckpt)
    m.close()
    m.close()   # idempotent
    with pytest.raises(InputError, match="closed"):
        m.logits([1])


def test_max_k_must_cover_the_model(ckpt) -> None:
    with pytest.raises(InputError, match="longest reduction is K=100 but ArrayConfig.max_k=64"):
        BitNetModel.from_pretrained(ckpt, array=ArrayConfig(max_k=64))


def test_tokenizer_round_trip(tmp_path: Path) -> None:
    ck = write_random_checkpoint(tmp_path / "t", tokenizer=True, seed=1, **SPEC)
    with BitNetModel.from_pretrained(ck) as m:
        ids = m.encode("the hot word is")
        assert len(ids) == 4 and m.decode(ids) == "the hot word is"
        new = m.generate(ids, 4, stop_at_eos=False)
        assert isinstance(m.decode(new), str)
        with pytest.raises(InputError, match="prompt is empty"):
            m.encode("")
