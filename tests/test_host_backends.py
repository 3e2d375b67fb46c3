"""The backend interface, the registry and the golden backend's exact integer kernel."""

from __future__ import annotations

import numpy as np
import pytest

from tritium.golden import ArrayConfig, InputError, gemm_events, ternary_gemm
from tritium.golden.cycles import Events
from tritium.host import backends
from tritium.host.backends import (
    DEFAULT_ARRAY,
    EINSUM_MAX_M,
    Backend,
    GoldenBackend,
    exact_matmul,
    make_backend,
    register_backend,
)


@pytest.mark.parametrize("m", [1, 2, EINSUM_MAX_M, EINSUM_MAX_M + 1, 33])
@pytest.mark.parametrize(("k", "n"), [(1, 1), (7, 13), (96, 200), (200, 96)])
def test_exact_matmul_equals_golden_gemm(m, k, n) -> None:
    rng = np.random.default_rng(m * 1000 + k + n)
    a = rng.integers(-128, 128, (m, k)).astype(np.int8)
    w = rng.integers(-1, 2, (k, n)).astype(np.int8)
    got = exact_matmul(a, w, [])
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, ternary_gemm(a, w))


@pytest.mark.parametrize("m", [1, 64])
def test_exact_matmul_extremes_at_long_k(m) -> None:
    """-128 x -1 summed over K = 6912 (2B-4T's down_proj) and K past float32's exact range."""
    for k in (6912, 140_000):
        a = np.full((m, k), -128, np.int8)
        w = np.stack([np.full(k, -1), np.full(k, 1), np.zeros(k)], axis=1).astype(np.int8)
        got = exact_matmul(a, w, [])
        np.testing.assert_array_equal(got, np.array([[128 * k, -128 * k, 0]] * m))


def test_golden_backend_events_equal_the_cycle_model() -> None:
    cfg = ArrayConfig(rows=3, cols=5, act_depth=4)
    rng = np.random.default_rng(0)
    w = rng.choice(np.array([-1, 0, 1], np.int8), size=(23, 17), p=[0.3, 0.4, 0.3])
    with GoldenBackend(cfg) as be:
        p = be.prepare(w, name="w")
        for m in (1, 4, 9):
            a = rng.integers(-128, 128, (m, 23)).astype(np.int8)
            out, ev = be.matmul(a, p)
            np.testing.assert_array_equal(out, ternary_gemm(a, w))
            assert ev.as_dict() == gemm_events(cfg, w, m).as_dict()
        assert be.calls == 3 and be.seconds > 0


def test_registry_and_errors() -> None:
    assert set(backends.backend_names()) >= {"golden", "rtl", "board"}
    with pytest.raises(InputError, match=r"unknown backend 'tpu'; known backends: golden, "
                                         r"(?=.*\brtl\b)(?=.*\bboard\b)"):
        make_backend("tpu")
    with pytest.raises(InputError, match="backend 'golden' does not take option.*port"):
        make_backend("golden", port="/dev/null")
    with pytest.raises(InputError, match="array must be an ArrayConfig"):
        make_backend("golden", array={"rows": 4})
    be = make_backend("golden")
    assert be.array == DEFAULT_ARRAY and (be.array.rows, be.array.cols) == (4, 4)
    assert be.array.max_k >= 6912
    # narrower activations are the numerics `tritium eval` studies (tests/test_eval.py)
    assert make_backend("golden", ArrayConfig(act_bits=4, acc_bits=16, max_k=2000)).array \
        .act_bits == 4


def test_transports_register_through_entry_points() -> None:
    """host names no transport: rtl and board come from the tritium.backends entry points,
    loaded only when asked for."""
    from tritium.boards.backend import BoardBackend
    from tritium.sim.backend import RtlBackend

    assert backends._factory("rtl") is RtlBackend
    assert backends._factory("board") is BoardBackend


def test_a_broken_entry_point_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import EntryPoint

    broken = EntryPoint("fpga9", "tritium.no_such_module:Backend", backends.ENTRY_POINT_GROUP)
    monkeypatch.setattr(backends, "_entry_points", lambda: {"fpga9": broken})
    with pytest.raises(InputError, match=r"backend 'fpga9' \(tritium.no_such_module:Backend\) "
                                         r"cannot be loaded"):
        make_backend("fpga9")


def test_registering_a_backend() -> None:
    class Counting(Backend):
        name = "counting"

        def __init__(self, array: ArrayConfig, *, scale: int = 1) -> None:
            super().__init__(array)
            self.scale = scale

        def _matmul(self, a, p):
            return exact_matmul(a, p.w) * self.scale, None

    register_backend("counting", Counting)
    try:
        be = make_backend("counting", scale=2)
        p = be.prepare(np.eye(3, dtype=np.int8))
        out, ev = be.matmul(np.array([[1, 2, 3]], np.int8), p)
        assert out.tolist() == [[2, 4, 6]] and ev is None
    finally:
        backends._REGISTRY.pop("counting")


def test_prepare_and_matmul_check_their_inputs() -> None:
    be = make_backend("golden", ArrayConfig(rows=2, cols=2, max_k=8))
    with pytest.raises(InputError, match="must be ternary"):
        be.prepare(np.array([[2, 0]], np.int8), name="bad")
    with pytest.raises(InputError, match="w9 has K=9 but ArrayConfig.max_k=8"):
        be.prepare(np.zeros((9, 2), np.int8), name="w9")
    p = be.prepare(np.ones((3, 2), np.int8), name="w")
    with pytest.raises(InputError, match=r"activations are \(1, 4\) .* K must agree"):
        be.matmul(np.zeros((1, 4), np.int8), p)
    with pytest.raises(InputError, match="int8 values"):
        be.matmul(np.array([[300, 0, 0]]), p)
    out, ev = be.matmul(np.array([[1, -2, 3]]), p)   # other int dtypes are checked and taken
    assert out.tolist() == [[2, 2]] and isinstance(ev, Events)
