"""Narrow accumulators (ArrayConfig.acc_overflow "wrap" / "saturate"): the config accepts an
unsafe acc_bits only with a mode named, golden.gemm.array_gemm equals a term-by-term reference
of where the RTL adds, and the Verilated tops (ws and os) equal array_gemm on data that
overflows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tritium.golden import ArrayConfig
from tritium.golden.config import ConfigError
from tritium.golden.gemm import array_gemm, saturating_sum, ternary_gemm
from tritium.hdl.generate import write_unit
from tritium.hdl.pes import get_pe
from tritium.hdl.synth import multiplier_report
from tritium.host.driver import driver_for
from tritium.sim.verilated import VerilatorDevice


def _clamp(v: int, bits: int) -> int:
    return min(max(v, -(1 << (bits - 1))), (1 << (bits - 1)) - 1)


def _wrap(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def reference(cfg: ArrayConfig, a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Term by term, in the order the RTL adds: for "ws" each K tile runs down `rows` PEs from
    zero and the output buffer adds each tile's result into the last; "os" is one chain."""
    fix = _clamp if cfg.acc_overflow == "saturate" else _wrap
    m, k = a.shape
    chain = cfg.rows if cfg.dataflow == "ws" else k
    out = np.zeros((m, w.shape[1]), dtype=np.int64)
    for i in range(m):
        for n in range(w.shape[1]):
            total = 0
            for k0 in range(0, k, chain):
                part = 0
                for kk in range(k0, min(k0 + chain, k)):
                    part = fix(part + int(a[i, kk]) * int(w[kk, n]), cfg.acc_bits)
                total = fix(total + part, cfg.acc_bits)
            out[i, n] = total
    return out


def overflowing(cfg: ArrayConfig, rng: np.random.Generator, m: int, k: int, n: int):
    """Large activations against mostly same-signed weights: running sums leave acc_bits."""
    top = 2 ** (cfg.act_bits - 1)
    a = rng.integers(top // 2, top, (m, k)) * rng.choice([-1, 1], size=(m, 1))
    w = rng.choice([-1, 0, 1], size=(k, n), p=[0.15, 0.1, 0.75])
    w[:, 0] = -1         # one column runs down to the bottom of the range
    return a, w


def test_unsafe_accumulator_needs_an_overflow_mode() -> None:
    with pytest.raises(ConfigError, match="acc_overflow='wrap' or 'saturate'"):
        ArrayConfig(acc_bits=12, max_k=256)
    with pytest.raises(ConfigError, match="acc_overflow must be one of safe, wrap, saturate"):
        ArrayConfig(acc_overflow="clip")
    cfg = ArrayConfig(acc_bits=12, max_k=256, acc_overflow="saturate")
    assert cfg.name().endswith("_saturate")
    # the default mode leaves keys (build folders, caches) as they were
    assert ArrayConfig().key() != ArrayConfig(acc_overflow="wrap").key()
    assert "acc_overflow" not in ArrayConfig().name()


@pytest.mark.parametrize("mode", ["wrap", "saturate"])
@pytest.mark.parametrize(("dataflow", "rows"), [("ws", 3), ("ws", 5), ("os", 3)])
def test_array_gemm_follows_the_rtl_order(mode: str, dataflow: str, rows: int) -> None:
    """rows 3 is a K tile that cannot overflow on its own at acc_bits 10 (3 x 128 < 512),
    rows 5 one that can."""
    cfg = ArrayConfig(rows=rows, cols=2, acc_bits=10, max_k=64, acc_overflow=mode,
                      dataflow=dataflow)
    rng = np.random.default_rng(5)
    a, w = overflowing(cfg, rng, 4, 23, 5)
    got = array_gemm(cfg, a, w)
    np.testing.assert_array_equal(got, reference(cfg, a, w))
    exact = ternary_gemm(a, w, cfg.act_bits)
    assert (got != exact).any()           # the data did overflow


def test_saturation_depends_on_where_sums_meet() -> None:
    """Saturation is order-dependent: "ws" clamps inside each K tile and again where the
    output buffer adds the tiles, "os" clamps along one chain over all of K."""
    a = np.array([[100, 100, 100, -100, -100, -100]])
    w = np.ones((6, 1), dtype=int)
    ws = ArrayConfig(rows=3, cols=1, acc_bits=9, max_k=8, acc_overflow="saturate")
    os_ = ArrayConfig(rows=3, cols=1, acc_bits=9, max_k=8, acc_overflow="saturate",
                      dataflow="os")
    # ws: tile one 100, 200, 300 -> 255; tile two -300 -> -256; output 255 - 256 = -1
    assert array_gemm(ws, a, w)[0, 0] == -1
    # os: 100, 200, 255, 155, 55, -45
    assert array_gemm(os_, a, w)[0, 0] == -45


def test_saturating_sum_walks_only_what_overflows() -> None:
    rng = np.random.default_rng(2)
    terms = rng.integers(-60, 61, (3, 17, 4))
    got = saturating_sum(terms, 8)
    for i in range(3):
        for n in range(4):
            run = 0
            for t in terms[i, :, n]:
                run = _clamp(run + int(t), 8)
            assert got[i, n] == run


def test_pe_golden_rule_saturates() -> None:
    pe = get_pe("ternary")
    sat, wrap = pe.golden("saturate"), pe.golden("wrap")
    assert sat(500, 100, 0b01, 10) == 511 and wrap(500, 100, 0b01, 10) == -424
    assert sat(-500, 100, 0b11, 10) == -512 and sat(7, 100, 0b00, 10) == 7


@pytest.mark.parametrize(("dataflow", "mode", "buffers"),
                         [("ws", "wrap", 1), ("ws", "saturate", 1), ("ws", "saturate", 2),
                          ("os", "saturate", 1)])
def test_rtl_overflow_equals_golden(dataflow: str, mode: str, buffers: int) -> None:
    # double-buffered runs sum several K tiles per start: the same order as one tile a start
    extra = ({"act_depth": 6, "weight_buffers": buffers} if dataflow == "ws"
             else {"dram_words": 64})
    cfg = ArrayConfig(rows=4, cols=2, acc_bits=9, max_k=48, acc_overflow=mode,
                      dataflow=dataflow, **extra)
    rng = np.random.default_rng(11)
    with VerilatorDevice(cfg) as dev:
        drv = driver_for(dev, cfg)
        for m, k, n in ((3, 13, 4), (2, 48, 3)):
            a, w = overflowing(cfg, rng, m, k, n)
            got, _ = drv.gemm(a, w)
            want = array_gemm(cfg, a, w)
            np.testing.assert_array_equal(got, want)
            assert (want != ternary_gemm(a, w, cfg.act_bits)).any()


def test_saturating_top_has_no_multiplier(tmp_path: Path) -> None:
    cfg = ArrayConfig(rows=2, cols=2, acc_bits=12, max_k=64, acc_overflow="saturate")
    verilog = write_unit("top", cfg, tmp_path, "tritium_top")
    assert multiplier_report(verilog, "tritium_top") == {"coarse": {}, "ice40": {}}

