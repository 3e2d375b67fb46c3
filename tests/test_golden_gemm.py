from __future__ import annotations

import numpy as np
import pytest

from tritium.golden import ArrayConfig, InputError, plan_gemm, ternary_gemm
from tritium.golden.gemm import code_value, systolic_gemm, weight_codes, wrap_signed
from tritium.golden.tiling import act_tile, weight_tile
from tritium.hdl import mac_pe, pe


def naive(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Integer reference with Python ints: no BLAS, no float, no overflow."""
    m, k = a.shape
    n = w.shape[1]
    out = np.zeros((m, n), dtype=object)
    for i in range(m):
        for j in range(n):
            out[i, j] = sum(int(a[i, t]) * int(w[t, j]) for t in range(k))
    return out


@pytest.mark.parametrize(("m", "k", "n"), [(1, 1, 1), (3, 7, 5), (1, 33, 17), (9, 64, 3)])
def test_gemm_matches_integer_reference(m: int, k: int, n: int) -> None:
    rng = np.random.default_rng(m * 100 + k)
    a = rng.integers(-128, 128, (m, k))
    w = rng.integers(-1, 2, (k, n))
    got = ternary_gemm(a, w)
    assert got.dtype == np.int32
    assert np.array_equal(got, naive(a, w).astype(np.int64))


def test_gemm_is_exact_past_float32_mantissa() -> None:
    """K * 128 > 2**24 forces the float64 path; sums of +-128 must still be exact."""
    k = 2**17 + 3
    a = np.full((1, k), -128)
    w = np.full((k, 2), -1)
    w[0, 1] = 1
    got = ternary_gemm(a, w)
    assert got[0, 0] == 128 * k
    assert got[0, 1] == 128 * (k - 1) - 128


def test_gemm_rejects_bad_input() -> None:
    a = np.zeros((2, 3), int)
    w = np.zeros((3, 4), int)
    with pytest.raises(InputError, match=r"weights must be ternary.*found 2 at index \(1, 2\)"):
        bad = w.copy()
        bad[1, 2] = 2
        ternary_gemm(a, bad)
    with pytest.raises(InputError, match=r"activations must be int8 values in \[-128, 127\]"):
        ternary_gemm(np.full((2, 3), 128), w)
    with pytest.raises(InputError, match="K must agree"):
        ternary_gemm(a, np.zeros((4, 4), int))
    with pytest.raises(InputError, match="must be a 2-D array"):
        ternary_gemm(np.zeros(3, int), w)
    with pytest.raises(InputError, match="must hold integers"):
        ternary_gemm(np.full((2, 3), 0.5), w)


def test_code_values_and_pe_wrap() -> None:
    assert [code_value(b) for b in range(4)] == [0, 1, 0, -1]
    assert pe.update(5, -7, 0b01, 32) == -2
    assert pe.update(5, -7, 0b11, 32) == 12
    assert pe.update(5, -7, 0b00, 32) == 5
    assert pe.update(5, -7, 0b10, 32) == 5
    assert pe.update(2**11 - 1, 1, 0b01, 12) == -(2**11)  # two's complement wrap
    assert [wrap_signed(v, 4) for v in (7, 8, -8, -9, 16)] == [7, -8, -8, 7, 0]


def test_weight_codes_are_twos_complement() -> None:
    assert weight_codes([[-1, 0, 1]], 2).tolist() == [[0b11, 0b00, 0b01]]
    assert weight_codes([[-128, -1, 127]], 8).tolist() == [[0x80, 0xFF, 0x7F]]
    assert [code_value(int(c)) for c in weight_codes([-1, 0, 1], 2)] == [-1, 0, 1]


@pytest.mark.parametrize("rule", [pe.update, mac_pe.update], ids=["ternary", "mac"])
def test_systolic_gemm_of_a_pe_rule_is_the_ternary_gemm(rule) -> None:
    """Folded down K PEs, either built-in rule computes the ternary GEMM of ternary weights
    (the wide MAC rule taking them as int8 codes)."""
    rng = np.random.default_rng(3)
    a = rng.integers(-128, 128, (6, 9))
    w = rng.integers(-1, 2, (9, 5))
    bits = 2 if rule is pe.update else 8
    got = systolic_gemm(rule, a, weight_codes(w, bits), 32)
    np.testing.assert_array_equal(got, naive(a, w).astype(np.int64))


def test_systolic_gemm_wraps_like_an_accumulator() -> None:
    a = np.full((1, 3), 127)
    codes = weight_codes(np.ones((3, 1), int), 2)
    assert systolic_gemm(pe.update, a, codes, 9).tolist() == [[wrap_signed(381, 9)]]
    assert wrap_signed(381, 9) == 381 - 512
    with pytest.raises(InputError, match="K must agree"):
        systolic_gemm(pe.update, a, weight_codes(np.ones((2, 1), int), 2), 9)


@pytest.mark.parametrize(("m", "k", "n"), [(1, 8, 8), (13, 9, 10), (40, 3, 1)])
def test_tiles_cover_gemm_exactly(m: int, k: int, n: int) -> None:
    """Summing the padded tiles in plan order reproduces the GEMM: the plan misses nothing and
    counts nothing twice, and accumulate/last_k flags say when a block starts and ends."""
    cfg = ArrayConfig(rows=4, cols=3, act_depth=16)
    rng = np.random.default_rng(1)
    a = rng.integers(-128, 128, (m, k))
    w = rng.integers(-1, 2, (k, n))
    out = np.zeros((m, n), dtype=np.int64)
    acc = None
    for t in plan_gemm(cfg, m, k, n):
        part = act_tile(cfg, a, t).astype(np.int64) @ weight_tile(cfg, w, t).astype(np.int64)
        acc = part if not t.accumulate else acc + part
        if t.last_k:
            out[t.m0 : t.m0 + t.m, t.n0 : t.n0 + t.n] = acc[:, : t.n]
    assert np.array_equal(out, naive(a, w).astype(np.int64))


def test_plan_rejects_k_beyond_max_k() -> None:
    cfg = ArrayConfig(acc_bits=16, max_k=255)
    with pytest.raises(InputError, match="K=256 exceeds ArrayConfig.max_k=255"):
        plan_gemm(cfg, 1, 256, 1)
    with pytest.raises(InputError, match="dimension M must be >= 1"):
        plan_gemm(cfg, 0, 4, 4)
