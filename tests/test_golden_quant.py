"""golden.quant against transformers' own BitNet code (`transformers.integrations.bitnet`),
run in torch float32: codes and scales must be bit-identical."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers.integrations import bitnet

from tritium.golden import InputError  # noqa: E402
from tritium.golden.quant import (  # noqa: E402
    dequantize,
    quantize_activations,
    quantize_weights,
)


@pytest.fixture
def eager():
    """Run transformers' @torch.compile'd functions eagerly: same source, no compile time."""
    import torch._dynamo

    with torch._dynamo.config.patch(disable=True):
        yield


def ulps(a: float, b: float) -> int:
    return abs(int(np.float32(a).view(np.int32)) - int(np.float32(b).view(np.int32)))


def random_activations(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Tokens spanning tiny to huge magnitudes, with all-zero and below-1e-5 tokens."""
    mags = rng.choice([1e-30, 1e-7, 3e-6, 1e-3, 1.0, 7.3, 1e4, 1e30], size=shape[:-1] + (1,))
    x = (rng.standard_normal(shape) * mags).astype(np.float32)
    flat = x.reshape(-1, shape[-1])
    flat[0] = 0.0
    if flat.shape[0] > 1:
        flat[1] = rng.integers(-3, 4, shape[-1]) * np.float32(2e-6)  # max below the 1e-5 clamp
    return x


def torch_act_quant(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    q, s = bitnet.BitLinear.activation_quant(None, torch.from_numpy(x))
    return q.numpy(), s.numpy()


# ---------------------------------------------------------------------------------------------
# activations


ACT_SHAPES = [(1,), (7,), (1, 1), (5, 33), (16, 128), (2, 3, 40), (4, 1, 2, 9)]


@pytest.mark.parametrize("shape", ACT_SHAPES)
def test_activations_match_transformers(eager, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(sum(shape) * 31 + len(shape))
    for _ in range(5):
        x = random_activations(rng, shape)
        q, s = quantize_activations(x)
        tq, ts = torch_act_quant(x)
        assert q.dtype == np.int8 and s.dtype == np.float32
        assert s.shape == shape[:-1] + (1,)
        assert np.array_equal(q, tq)
        assert np.array_equal(s, ts)
        # ActQuant (the AutoBitLinear path) returns the fake-quantised q / s
        fake = bitnet.ActQuant.apply(torch.from_numpy(x)).numpy()
        assert np.array_equal(q.astype(np.float32) / s, fake)


def test_activation_scale_is_torch_reciprocal_times_127(eager) -> None:
    """torch computes 127 / m as (1 / m) * 127; a true division differs for many m."""
    rng = np.random.default_rng(7)
    x = (rng.random((4000, 3)) * 100 + 1e-3).astype(np.float32)
    _, s = quantize_activations(x)
    _, ts = torch_act_quant(x)
    assert np.array_equal(s, ts)
    true_div = np.float32(127) / np.abs(x).max(-1, keepdims=True)
    assert not np.array_equal(true_div, ts)  # the distinction is real, so the test has teeth


def test_activation_ties_round_half_to_even(eager) -> None:
    x = np.array([[127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 125.5, 126.5]], dtype=np.float32)
    _, ts = torch_act_quant(x)
    assert ts[0, 0] == 1.0  # precondition: x * s is x itself, so every .5 is an exact tie
    q, s = quantize_activations(x)
    assert s[0, 0] == 1.0
    assert q.tolist() == [[127, 0, 2, 2, 0, -2, -2, 126, 126]]
    assert np.array_equal(q, torch_act_quant(x)[0])


def test_zero_and_tiny_tokens_clamp_to_1e5(eager) -> None:
    x = np.zeros((3, 5), dtype=np.float32)
    x[1, 2] = 4e-6  # below the clamp: scaled by 127 / 1e-5, not by 127 / 4e-6
    x[2, 0] = -1e-40  # subnormal
    q, s = quantize_activations(x)
    tq, ts = torch_act_quant(x)
    assert np.array_equal(q, tq) and np.array_equal(s, ts)
    assert np.allclose(s, 127 / 1e-5, rtol=1e-6)
    assert q[0].tolist() == [0] * 5
    assert q[1, 2] == 51  # 4e-6 * 1.27e7 = 50.8; 127 / 4e-6 would have given 127
    assert q[2].tolist() == [0] * 5


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_other_float_dtypes_go_through_float32(eager, dtype: type) -> None:
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((6, 20)) * 4).astype(dtype)
    q, s = quantize_activations(x)
    # ActQuant casts to float32, quantises, and casts q / s back to the input dtype
    fake = bitnet.ActQuant.apply(torch.from_numpy(x)).numpy()
    assert fake.dtype == dtype
    assert np.array_equal((q.astype(np.float32) / s).astype(dtype), fake)


@pytest.mark.parametrize(
    ("x", "fragment"),
    [
        (np.array([1.0, np.nan], dtype=np.float32), "finite"),
        (np.array([[1.0, -np.inf]], dtype=np.float32), "finite"),
        (np.array([1e300]), "finite"),  # overflows float32
        (np.array([[1, 2, 3]]), "float"),
        (np.array([True, False]), "float"),
        (np.float32(1.0), "dimension"),
        (np.zeros((2, 0), dtype=np.float32), "empty"),
    ],
)
def test_bad_activations_raise(x: np.ndarray, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment) as info:
        quantize_activations(x, name="hidden_states")
    assert "hidden_states" in str(info.value)


# ---------------------------------------------------------------------------------------------
# weights


def torch_weight_quant(w: np.ndarray) -> np.ndarray:
    return bitnet.WeightQuant.apply(torch.from_numpy(w)).numpy()


WEIGHT_SHAPES = [(1, 1), (1, 7), (4, 4), (13, 29), (64, 96), (256, 3)]


@pytest.mark.parametrize("shape", WEIGHT_SHAPES)
def test_weights_match_transformers_exactly(eager, shape: tuple[int, int]) -> None:
    """Weights on a 2^-10 grid: every float32 summation order gives the same exact sum, so the
    mean and everything after it must agree bit for bit with torch on any machine."""
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    for spread in (3, 300, 5000):
        w = (rng.integers(-spread, spread + 1, shape) / 1024).astype(np.float32)
        q, scale = quantize_weights(w)
        ref = torch_weight_quant(w)
        assert q.dtype == np.int8 and q.shape == shape
        assert isinstance(scale, float)
        assert np.array_equal(q, np.sign(ref).astype(np.int8))
        # q * scale is WeightQuant's dequantised weight, so scale is AutoBitLinear's weight_scale
        assert np.array_equal(q * np.float32(scale), ref)
        nonzero = np.abs(ref[ref != 0])
        if nonzero.size:
            assert np.all(nonzero == np.float32(scale))


def test_weights_on_general_floats_agree_up_to_summation_order(eager) -> None:
    """torch's float32 sum order (SIMD width, threads) differs from our float64 sum by an ulp or
    two of the mean; codes may then differ only where w * s is within a hair of +-0.5."""
    rng = np.random.default_rng(11)
    for _ in range(40):
        shape = (int(rng.integers(1, 90)), int(rng.integers(1, 90)))
        w = (rng.standard_normal(shape) * rng.choice([1e-3, 0.02, 1.0, 50.0])).astype(np.float32)
        q, scale = quantize_weights(w)
        ref = torch_weight_quant(w)
        ref_q = np.sign(ref).astype(np.int8)
        if np.any(ref_q):
            assert ulps(scale, np.abs(ref[ref != 0])[0]) <= 3
        ratio = np.abs(w) / np.float32(scale)
        differ = q != ref_q
        assert np.all(np.abs(ratio[differ] - 0.5) < 1e-5)


def test_weight_ties_round_half_to_even(eager) -> None:
    w = np.array([[0.5, -0.5, 1.5, -1.5, 1.0, -1.0]], dtype=np.float32)  # mean |w| is exactly 1
    q, scale = quantize_weights(w)
    assert scale == 1.0
    assert q.tolist() == [[0, 0, 1, -1, 1, -1]]  # 0.5 -> 0 (even), 1.5 -> 2 -> clamped to 1
    assert np.array_equal(q, np.sign(torch_weight_quant(w)))


def test_all_zero_weights_clamp_to_1e5(eager) -> None:
    w = np.zeros((8, 5), dtype=np.float32)
    q, scale = quantize_weights(w)
    assert not q.any()
    assert np.array_equal(torch_weight_quant(w), w)
    s = 1.0 / torch.zeros(1).mean().clamp_(min=1e-5)  # WeightQuant's scale expression
    assert np.float32(scale) == (1.0 / s).numpy()
    assert scale == pytest.approx(1e-5, rel=1e-6)


def test_float64_weights_are_quantised_as_float32(eager) -> None:
    rng = np.random.default_rng(5)
    w64 = (rng.integers(-500, 500, (9, 11)) / 256 + 1e-12).astype(np.float64)
    q, scale = quantize_weights(w64)
    ref = bitnet.WeightQuant.apply(torch.from_numpy(w64)).numpy()  # casts to float32 inside
    assert np.array_equal(q * np.float64(np.float32(scale)), ref)


def test_weight_scale_is_what_offline_autobitlinear_multiplies_by(eager) -> None:
    """The same layer run online from float weights and offline from (q, scale) agrees: scale is
    the offline checkpoint's weight_scale, not its inverse."""
    rng = np.random.default_rng(2)
    out_f, in_f = 24, 40
    w = (rng.standard_normal((out_f, in_f)) * 0.05).astype(np.float32)
    x = torch.from_numpy(rng.standard_normal((3, in_f)).astype(np.float32))
    q, scale = quantize_weights(w)

    online = bitnet.AutoBitLinear(in_f, out_f, bias=False, online_quant=True)
    online.weight.data = torch.from_numpy(w)
    offline = bitnet.AutoBitLinear(in_f, out_f, bias=False, online_quant=False)
    offline.weight.data = torch.from_numpy(q.astype(np.float32))
    offline.weight_scale.data = torch.tensor([scale], dtype=torch.float32)
    inverted = bitnet.AutoBitLinear(in_f, out_f, bias=False, online_quant=False)
    inverted.weight.data = offline.weight.data
    inverted.weight_scale.data = torch.tensor([1 / scale], dtype=torch.float32)
    with torch.no_grad():
        y_on, y_off, y_inv = online(x).numpy(), offline(x).numpy(), inverted(x).numpy()
    assert np.allclose(y_off, y_on, rtol=1e-5, atol=1e-6)
    assert not np.allclose(y_inv, y_on, rtol=1e-2)  # BitLinear's inverse convention would fail


@pytest.mark.parametrize(
    ("w", "fragment"),
    [
        (np.ones(4, dtype=np.float32), "2-D"),
        (np.ones((2, 2, 2), dtype=np.float32), "2-D"),
        (np.ones((2, 2), dtype=np.int8), "float"),
        (np.array([[0.1, np.nan]], dtype=np.float32), "finite"),
        (np.array([[np.inf, 0.1]], dtype=np.float32), "finite"),
        (np.zeros((0, 3), dtype=np.float32), "empty"),
        (np.full((2, 2), 3e38, dtype=np.float32), "overflow"),
    ],
)
def test_bad_weights_raise(w: np.ndarray, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment) as info:
        quantize_weights(w, name="q_proj.weight")
    assert "q_proj.weight" in str(info.value)


# ---------------------------------------------------------------------------------------------
# dequantize


def one_hot_ternary(rng: np.random.Generator, out_f: int, in_f: int) -> np.ndarray:
    w = np.zeros((out_f, in_f), dtype=np.int8)
    w[np.arange(out_f), rng.integers(0, in_f, out_f)] = rng.choice([-1, 1], out_f)
    return w


def offline_layer(w: np.ndarray, weight_scale: float) -> torch.nn.Module:
    layer = bitnet.AutoBitLinear(w.shape[1], w.shape[0], bias=False, online_quant=False)
    layer.weight.data = torch.from_numpy(w.astype(np.float32))
    layer.weight_scale.data = torch.tensor([weight_scale], dtype=torch.float32)
    return layer


def test_dequantize_order_is_bit_exact_with_autobitlinear(eager) -> None:
    """With one non-zero weight per output row, AutoBitLinear's float matmul adds a single term,
    so its output is exactly round(round(acc / s) * weight_scale): the order is observable."""
    rng = np.random.default_rng(17)
    out_f, in_f = 48, 64
    w = one_hot_ternary(rng, out_f, in_f)
    x = (rng.standard_normal((32, in_f)) * 3).astype(np.float32)
    ws = float(np.float32(0.0123457))
    with torch.no_grad():
        ref = offline_layer(w, ws)(torch.from_numpy(x)).numpy()

    q, s = quantize_activations(x)
    acc = q.astype(np.int32) @ w.T.astype(np.int32)
    got = dequantize(acc, s, ws)
    assert got.dtype == np.float32 and got.shape == (32, out_f)
    assert np.array_equal(got, ref)
    # the other orders round differently somewhere, so the comparison above can fail
    acc32, ws32 = acc.astype(np.float32), np.float32(ws)
    assert not np.array_equal(acc32 * (ws32 / s), ref)
    assert not np.array_equal(acc32 / (s / ws32), ref)


def test_dequantize_matches_autobitlinear_on_dense_weights(eager) -> None:
    rng = np.random.default_rng(23)
    out_f, in_f = 40, 200
    w = rng.integers(-1, 2, (out_f, in_f)).astype(np.int8)
    x = rng.standard_normal((2, 5, in_f)).astype(np.float32)
    ws = 0.037
    with torch.no_grad():
        ref = offline_layer(w, ws)(torch.from_numpy(x)).numpy()
    q, s = quantize_activations(x)
    acc = q.astype(np.int32) @ w.T.astype(np.int32)
    got = dequantize(acc, s, np.array([ws], dtype=np.float32))  # HF's one-element weight_scale
    # the float matmul of q / s rounds each term and partial sum: |error| <= ~K u sum|terms|
    terms = (np.abs(q).astype(np.float64) @ np.abs(w.T).astype(np.float64)) / s * ws
    assert np.all(np.abs(got.astype(np.float64) - ref) <= terms * (in_f + 2) * 2.0**-24)
    assert np.array_equal(got, dequantize(acc, s, ws))


@pytest.mark.parametrize(
    ("acc", "act_scale", "ws", "fragment"),
    [
        (np.ones((2, 3)), np.ones((2, 1), np.float32), 1.0, "acc.*int32"),
        (np.int32(5), np.ones((1,), np.float32), 1.0, "acc"),
        (np.array([[2**31]]), np.ones((1, 1), np.float32), 1.0, "acc.*int32"),
        (np.ones((2, 3), np.int32), np.ones((2,), np.float32), 1.0, r"act_scale.*\(2, 1\)"),
        (np.ones((2, 3), np.int32), np.ones((3, 1), np.float32), 1.0, "act_scale.*shape"),
        (np.ones((2, 3), np.int32), np.ones((2, 1), np.int32), 1.0, "act_scale.*float"),
        (np.ones((2, 3), np.int32), np.array([[1.0], [0.0]], np.float32), 1.0, "act_scale"),
        (np.ones((2, 3), np.int32), np.array([[1.0], [np.nan]], np.float32), 1.0, "act_scale"),
        (np.ones((2, 3), np.int32), np.ones((2, 1), np.float32), float("nan"), "weight_scale"),
        (np.ones((2, 3), np.int32), np.ones((2, 1), np.float32), 0.0, "weight_scale"),
        (np.ones((2, 3), np.int32), np.ones((2, 1), np.float32), np.ones(2), "weight_scale"),
        (np.ones((2, 3), np.int32), np.ones((2, 1), np.float32), "0.5", "weight_scale"),
    ],
)
def test_bad_dequantize_inputs_raise(acc, act_scale, ws, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment) as info:
        dequantize(acc, act_scale, ws, name="acc")
    assert any(n in str(info.value) for n in ("acc", "act_scale", "weight_scale"))


# ---------------------------------------------------------------------------------------------
# the code path transformers really runs is @torch.compile'd


@pytest.mark.slow
def test_compiled_transformers_quantisers_agree() -> None:
    rng = np.random.default_rng(29)
    x = random_activations(rng, (6, 70))
    q, s = quantize_activations(x)
    fake = bitnet.ActQuant.apply(torch.from_numpy(x)).numpy()
    assert np.array_equal(q.astype(np.float32) / s, fake)

    w = (rng.integers(-700, 700, (24, 70)) / 512).astype(np.float32)
    qw, scale = quantize_weights(w)
    ref = bitnet.WeightQuant.apply(torch.from_numpy(w)).numpy()
    assert np.array_equal(qw * np.float32(scale), ref)
