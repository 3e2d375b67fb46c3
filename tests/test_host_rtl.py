"""End to end on the simulated RTL: a 2-layer BitNet generates 8 tokens with every BitLinear on
the Verilator-compiled accelerator, and everything equals the golden backend bit for bit."""

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
