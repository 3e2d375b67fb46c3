"""End to end on the simulated RTL: a 2-layer BitNet generates 8 tokens with every BitLinear on
the Verilator-compiled accelerator, and everything equals the golden backend bit for bit; a
Llama-BitNet model (second architecture) does too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tritium.golden import ArrayConfig
from tritium.host import BitNetModel
from tritium.host.synthetic import write_random_checkpoint

# K = 32 and 64 split into 4-row tiles, N = 16..64 into 4-column tiles, and prefill M = 5
ARRAY = ArrayConfig(rows=4, cols=4)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return write_random_checkpoint(tmp_path_factory.mktemp("tiny"), hidden=32, intermediate=64,
                                   layers=2, heads=2, kv_heads=1, vocab=64, seed=2)


def test_rtl_generates_the_golden_tokens(ckpt: Path) -> None:
    prompt = [5, 9, 33, 1, 60]
    with BitNetModel.from_pretrained(ckpt, backend="golden", array=ARRAY) as gold, \
            BitNetModel.from_pretrained(ckpt, backend="rtl", array=ARRAY) as rtl:
        # identical int32 results -> identical float logits, not merely close
        np.testing.assert_array_equal(rtl.logits(prompt), gold.logits(prompt))
        gold.stats.reset()
        rtl.stats.reset()
        new = rtl.generate(prompt, max_new_tokens=8, stop_at_eos=False)
        assert new == gold.generate(prompt, max_new_tokens=8, stop_at_eos=False)
        assert len(new) == 8
        # the RTL's own performance counters equal golden's cycle and event model per layer
        for i in range(2):
            for proj, s in rtl.stats.layers[i].items():
                g = gold.stats.layers[i][proj]
                assert (s.calls, s.tiles, s.cycles, s.macs, s.zero_skips) == \
                    (g.calls, g.tiles, g.cycles, g.macs, g.zero_skips), (i, proj)
        assert rtl.stats.total.cycles > 0


def test_auto_dataflow_runs_prefill_and_decode_on_different_rtl(ckpt: Path) -> None:
    """With dataflow="auto" the host runs each matmul on the dataflow golden's cost model
    prices lower: on an 8x8 array fed 4 bytes/cycle, weight-stationary for the prompt's GEMMs
    and weight streaming for the decode GEMVs; tokens and logits still equal golden."""
    from tritium.golden.memory import best_dataflow

    cfg = ArrayConfig(rows=8, cols=8, dram_bytes_per_cycle=4, max_k=128)
    prompt = list(range(1, 25))
    assert best_dataflow(cfg, len(prompt), 32, 32, 700) == "ws"
    assert best_dataflow(cfg, 1, 32, 32, 700) == "os"
    with BitNetModel.from_pretrained(ckpt, backend="golden", array=cfg) as gold, \
            BitNetModel.from_pretrained(ckpt, backend="rtl", array=cfg, dataflow="auto") as rtl:
        new = rtl.generate(prompt, max_new_tokens=4, stop_at_eos=False)
        assert new == gold.generate(prompt, max_new_tokens=4, stop_at_eos=False)
        calls = rtl.backend.dataflow_calls
        per_pass = 7 * 2   # seven BitLinears in each of two layers
        assert calls == {"ws": per_pass, "os": 3 * per_pass}, calls
        np.testing.assert_array_equal(rtl.logits(prompt), gold.logits(prompt))


def test_rtl_runs_llama_bitnet_like_golden(tmp_path: Path) -> None:
    """A Llama-BitNet model with biases and BitLinear RMSNorms on the Verilator-simulated
    array: every BitLinear's int32 results equal golden's, so the logits are bit-identical."""
    ck = write_random_checkpoint(tmp_path / "l", hidden=32, intermediate=48, layers=2, heads=2,
                                 kv_heads=1, vocab=64, seed=7, model_type="llama", bias=True,
                                 use_rms_norm=True, tied=False)
    prompt = [5, 9, 33, 1, 60]
    with BitNetModel.from_pretrained(ck, backend="golden", array=ARRAY) as gold, \
            BitNetModel.from_pretrained(ck, backend="rtl", array=ARRAY) as rtl:
        np.testing.assert_array_equal(rtl.logits(prompt), gold.logits(prompt))
        assert rtl.generate(prompt, 3, stop_at_eos=False) == \
            gold.generate(prompt, 3, stop_at_eos=False)
        assert rtl.stats.total.cycles == gold.stats.total.cycles > 0
