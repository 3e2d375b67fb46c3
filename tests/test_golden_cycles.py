from __future__ import annotations

import numpy as np
import pytest

from tritium.golden import ArrayConfig, ConfigError, gemm_cycles, gemm_events, plan_gemm
from tritium.golden.cycles import (
    gemm_events_from_nnz,
    scalesim_ws_cycles,
    tile_cycles,
    ws_run_cycles,
)
from tritium.golden.memory import MemoryConfig, ws_gemm_cost
from tritium.golden.tiling import plan_runs


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


# --- double-buffered weights (weight_buffers=2) ----------------------------------------------

def _double(**kw) -> ArrayConfig:
    return ArrayConfig(weight_buffers=2, **kw)


@pytest.mark.parametrize(("r", "c"), [(1, 1), (2, 3), (4, 4), (32, 32)])
def test_run_streams_back_to_back_once_m_covers_the_array(r, c) -> None:
    """With m >= R and m >= C every load and copy wave hides under the previous tile's stream:
    a run costs one fill (2 cycles), T*m vectors and one drain (R + C - 2)."""
    cfg = _double(rows=r, cols=c)
    for m in (max(r, c), max(r, c) + 5):
        for t in (1, 2, 7):
            assert ws_run_cycles(cfg, m, t) == 2 + t * m + r + c - 2


def test_short_tiles_wait_for_the_loader() -> None:
    """m < R: each tile waits for the previous tile's R-cycle load, so a run costs at least
    R per tile, and never less than back-to-back streaming."""
    cfg = _double(rows=8, cols=2)
    for t in (2, 5):
        assert ws_run_cycles(cfg, 1, t) >= 8 * (t - 1) + 2 + 1 + 8 + 2 - 2
        assert ws_run_cycles(cfg, 1, t) > ws_run_cycles(cfg, 1, t - 1)


def test_single_tile_run_saves_the_load() -> None:
    """One tile on a double-buffered array streams after 2 cycles instead of R."""
    for r, c in [(2, 3), (8, 8), (32, 32)]:
        one, two = ArrayConfig(rows=r, cols=c), _double(rows=r, cols=c)
        for m in (1, 9, 64):
            assert tile_cycles(one, m) - ws_run_cycles(two, m, 1) == r - 2


def test_double_plan_covers_every_tile_once_within_half_the_buffers() -> None:
    for cfg in (_double(rows=3, cols=5, act_depth=64, weight_tiles=12),
                _double(rows=2, cols=3, act_depth=5, weight_tiles=3, max_k=63, acc_bits=14),
                _double(rows=4, cols=4, act_depth=1, weight_tiles=1)):
        for m, k, n in [(1, 1, 1), (67, 10, 7), (9, 13, 11)]:
            runs = plan_runs(cfg, m, k, n)
            seen = [(t.m0, t.k0, t.n0) for run in runs for t in run.tiles]
            chunked = ArrayConfig(rows=cfg.rows, cols=cfg.cols, act_depth=runs[0].m)
            want = [(t.m0, t.k0, t.n0) for t in plan_gemm(chunked, m, k, n)]
            assert sorted(seen) == sorted(want)
            for i, run in enumerate(runs):
                assert len(run.tiles) <= max(1, cfg.weight_tiles // 2)
                assert run.m * len(run.tiles) <= max(1, cfg.act_depth // 2)
                assert run.slot == (i % 2) * (cfg.weight_tiles // 2)
                assert run.act_base == (i % 2) * (cfg.act_depth // 2)
                assert [t.accumulate for t in run.tiles] == [t.k0 > 0 for t in run.tiles]
                assert all(t.m == run.m for t in run.tiles)


def test_double_events_from_nnz_match_the_run_walk() -> None:
    rng = np.random.default_rng(5)
    cfg = _double(rows=3, cols=5, act_depth=20, weight_tiles=6)
    w = rng.integers(-1, 2, (23, 13))
    for m in (1, 7, 10, 31):
        slow = gemm_events(cfg, w, m)
        fast = gemm_events_from_nnz(cfg, m, 23, 13, int(np.count_nonzero(w)))
        assert fast.as_dict() == slow.as_dict()
        assert slow.cycles == sum(ws_run_cycles(cfg, run.m, len(run.tiles))
                                  for run in plan_runs(cfg, m, 23, 13))
        if m <= cfg.act_depth // 2:   # the same M chunks: every run saves its loads
            assert slow.cycles < gemm_cycles(ArrayConfig(rows=3, cols=5, act_depth=20), m, 23, 13)


def test_2b4t_prefill_reaches_85_percent_of_the_peak() -> None:
    """Issue 11 part 3's target, modelled: 2B-4T's matmuls at M = 512 on a 32x32
    double-buffered array at 16 GB/s and 250 MHz, DRAM transfers included."""
    cfg = _double(rows=32, cols=32, act_depth=2048, weight_tiles=4, clock_mhz=250.0)
    mem = MemoryConfig(16e9 / 250e6)
    h, f, kv = 2560, 6912, 640
    shapes = [(h, h), (h, kv), (h, kv), (h, h), (h, f), (h, f), (f, h)]
    cycles = sum(ws_gemm_cost(cfg, mem, 512, k, n, k * n * 2 // 3).cycles for k, n in shapes)
    peak = sum(512 * k * n for k, n in shapes) / cfg.pes
    assert peak / cycles >= 0.85
    single = ArrayConfig(rows=32, cols=32, clock_mhz=250.0)
    assert sum(ws_gemm_cost(single, mem, 512, k, n, 0).cycles for k, n in shapes) > 2 * cycles


def test_weight_buffers_is_checked_and_names_its_builds() -> None:
    with pytest.raises(ConfigError, match="weight_buffers must be 1 .* or 2"):
        ArrayConfig(weight_buffers=3)
    one, two = ArrayConfig(), ArrayConfig(weight_buffers=2)
    assert two.key() != one.key() and two.name() != one.name()
    assert ArrayConfig.from_dict(two.to_dict()) == two


def test_double_buffered_cost_equals_the_run_by_run_schedule() -> None:
    """golden.memory's per-block aggregation against the schedule it describes, walked run by
    run over plan_runs: the first load exposed, then each run costs max(its compute, the next
    run's load), then the block's results drain after its last run."""
    mem = MemoryConfig(3.5)
    for cfg in (_double(rows=2, cols=3, act_depth=5, weight_tiles=3, max_k=63, acc_bits=14),
                _double(rows=7, cols=5, act_depth=33, weight_tiles=9)):
        for m, k, n in [(1, 1, 1), (5, 9, 4), (40, 17, 23), (12, 14, 10)]:
            runs = plan_runs(cfg, m, k, n)
            loads = [sum(mem.weight_bytes(t.k * t.n) + t.m * t.k for t in run.tiles)
                     / mem.dram_bytes_per_cycle for run in runs]
            time = loads[0]
            for i, run in enumerate(runs):
                nxt = loads[i + 1] if i + 1 < len(runs) else 0.0
                time += max(ws_run_cycles(cfg, run.m, len(run.tiles)), nxt)
                if run.last_k:
                    time += run.m * run.tiles[0].n * mem.out_bytes / mem.dram_bytes_per_cycle
            cost = ws_gemm_cost(cfg, mem, m, k, n, 1)
            assert cost.cycles == pytest.approx(time, rel=1e-12), (m, k, n)
            assert cost.compute_cycles == gemm_cycles(cfg, m, k, n)
