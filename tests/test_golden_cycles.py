from __future__ import annotations

import numpy as np
import pytest

from tritium.golden import ArrayConfig, gemm_cycles, gemm_events
from tritium.golden.cycles import gemm_events_from_nnz, scalesim_ws_cycles, tile_cycles


@pytest.mark.parametrize(("r", "c"), [(1, 1), (4, 8), (32, 32)])
@pytest.mark.parametrize(("m", "k", "n"), [(1, 2560, 2560), (7, 100, 33), (64, 64, 64)])
def test_ws_cycles_equal_scalesim_within_act_depth(r, c, m, k, n) -> None:
    cfg = ArrayConfig(rows=r, cols=c, act_depth=64)
    assert gemm_cycles(cfg, m, k, n) == scalesim_ws_cycles(r, c, m, k, n)


def test_design_doc_decode_example() -> None:
    """DESIGN.md: K = N = 2560 on a 32x32 WS array takes 608,000 cycles at M = 1."""
    assert gemm_cycles(ArrayConfig(rows=32, cols=32), 1, 2560, 2560) == 608_000


def test_m_beyond_act_depth_is_chunked() -> None:
    cfg = ArrayConfig(rows=4, cols=4, act_depth=10)
    # 25 rows stream as 10 + 10 + 5, each chunk re-loading every tile.
    per = 2 * 4  # K/R * N/C tiles for K = 8, N = 16 -> 2 * 4
    want = per * (tile_cycles(cfg, 10) * 2 + tile_cycles(cfg, 5))
    assert gemm_cycles(cfg, 25, 8, 16) == want


def test_events_count_zero_weights_and_padding() -> None:
    cfg = ArrayConfig(rows=2, cols=2)
    w = np.array([[1, 0, -1], [0, 0, 1], [1, 1, 1]])  # K=3, N=3 -> 2x2 tiles, padded
    ev = gemm_events(cfg, w, m=5)
    assert ev.tiles == 4
    assert ev.macs == 5 * int(np.count_nonzero(w))
    assert ev.macs + ev.zero_skips == 5 * ev.tiles * cfg.pes
    fast = gemm_events_from_nnz(cfg, 5, 3, 3, int(np.count_nonzero(w)))
    assert fast.as_dict() == ev.as_dict()


def test_fast_events_match_tile_walk_with_chunking() -> None:
    rng = np.random.default_rng(3)
    cfg = ArrayConfig(rows=3, cols=5, act_depth=7)
    w = rng.integers(-1, 2, (11, 13))
    for m in (1, 7, 8, 20):
        slow = gemm_events(cfg, w, m)
        fast = gemm_events_from_nnz(cfg, m, 11, 13, int(np.count_nonzero(w)))
        assert fast.as_dict() == slow.as_dict()
