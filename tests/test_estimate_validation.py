"""The estimate's per-layer compute counts equal what the runtime counts on the golden backend
(the cycle model) and on the RTL backend (the Verilated accelerator's performance counters).

A small random checkpoint runs through BitNetModel (prefill of the prompt, then one decode
step); every layer's tiles, busy cycles, MACs and zero skips per projection must equal the
estimate for the same model folder and array. The estimate reads the real non-zero counts
from the checkpoint, so MACs and skips match exactly, not just on average.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tritium.golden import ArrayConfig
from tritium.host import model as model_mod
from tritium.host import synthetic
from tritium.host.arch import PROJECTIONS
from tritium.host.estimate import EstimateConfig, estimate, measure_nnz, resolve

PROMPT = 5


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # K and N not multiples of the array; kv projections narrower than the array's columns
    return synthetic.write_random_checkpoint(
        tmp_path_factory.mktemp("tiny"), hidden=40, intermediate=72, layers=2, heads=4,
        kv_heads=2, vocab=64, seed=3)


def runtime_stats(path: Path, cfg: ArrayConfig,
                  backend: str = "golden") -> list[dict[str, dict[str, int]]]:
    """Per layer, per projection: [prefill counts, one decode step's counts]."""
    ids = np.arange(1, PROMPT + 1)
    out: list[dict[str, dict[str, int]]] = []
    with model_mod.BitNetModel.from_pretrained(path, backend=backend, array=cfg) as m:
        m.logits(ids)
        pre = m.stats.as_dict()["layers"]
        m.stats.reset()
        m.generate(ids[:1], max_new_tokens=1)     # one forward of M = 1: a decode step
        dec = m.stats.as_dict()["layers"]
    for lp, ld in zip(pre, dec, strict=True):
        out.append({p: {"prefill": lp["projections"][p], "decode": ld["projections"][p]}
                    for p in PROJECTIONS})
    return out


def test_measured_nnz_equals_the_backend(ckpt: Path) -> None:
    model, folder = resolve(ckpt)
    assert folder == ckpt
    nnz = measure_nnz(ckpt, model)
    with model_mod.BitNetModel.from_pretrained(ckpt, backend="golden") as m:
        for li, layer in enumerate(m._layers):
            for proj, lin in layer.linears.items():
                assert nnz[li][proj] == lin.prepared.nnz, (li, proj)


# golden: a 4x8 array whose act_depth forces M chunks; rtl: the 4x4 ws array other RTL tests
# build too (a shared simulator build), and an os array with a small DRAM (K <= 128 here).
CASES = {
    ("golden", "ws"): ArrayConfig(rows=4, cols=8, act_depth=4, dram_bytes_per_cycle=16),
    ("golden", "os"): ArrayConfig(rows=4, cols=8, act_depth=4, dataflow="os",
                                  dram_bytes_per_cycle=16),
    ("rtl", "ws"): ArrayConfig(rows=4, cols=4, dram_bytes_per_cycle=16),
    ("rtl", "os"): ArrayConfig(rows=4, cols=4, dataflow="os", dram_bytes_per_cycle=16,
                               max_k=128),
}


@pytest.mark.parametrize(("backend", "dataflow"), sorted(CASES))
def test_per_layer_counts_equal_the_runtime(ckpt: Path, backend: str, dataflow: str) -> None:
    cfg = CASES[backend, dataflow]
    stats = runtime_stats(ckpt, cfg, backend)
    model, folder = resolve(ckpt)
    est = estimate(model, EstimateConfig(cfg, dataflow=dataflow, prompt_len=PROMPT, gen_len=1),
                   nnz=measure_nnz(folder, model))
    assert est["config"]["memory"]["dram_bytes_per_cycle"] == pytest.approx(16)
    for li, layer in enumerate(est["layers"]):
        for proj in PROJECTIONS:
            for phase in ("prefill", "decode"):
                got = layer["matmuls"][proj][phase]
                want = stats[li][proj][phase]
                assert want["calls"] == 1
                assert got["dataflow"] == dataflow
                assert (got["tiles"], got["compute_cycles"], got["macs"], got["zero_skips"]) \
                    == (want["tiles"], want["cycles"], want["macs"], want["zero_skips"]), \
                    (li, proj, phase)
        for phase in ("prefill", "decode"):
            want = {k: sum(stats[li][p][phase][k] for p in PROJECTIONS)
                    for k in ("tiles", "cycles", "macs", "zero_skips")}
            t = layer[phase]
            assert (t["tiles"], t["compute_cycles"], t["macs"], t["zero_skips"]) == \
                (want["tiles"], want["cycles"], want["macs"], want["zero_skips"])
