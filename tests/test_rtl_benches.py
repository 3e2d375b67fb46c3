"""The cocotb benches, one Verilator build per unit and configuration."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tritium.golden import ArrayConfig, safe_k
from tritium.sim.runner import run_bench

from .configs import BENCH_CONFIGS


@pytest.mark.parametrize("acc_bits", [32, 12])
def test_pe(acc_bits: int, waves: bool) -> None:
    run_bench("pe", ArrayConfig(rows=1, cols=1, acc_bits=acc_bits,
                                max_k=safe_k(8, acc_bits)), waves=waves)


@pytest.mark.parametrize("name", BENCH_CONFIGS)
def test_array(name: str, waves: bool) -> None:
    run_bench("array", BENCH_CONFIGS[name], waves=waves)


def test_array_of_the_mac_baseline(waves: bool) -> None:
    """The array bench takes any registered PE: the int8 MAC's 8-bit codes, random ones
    included, against its own golden rule."""
    run_bench("array", replace(BENCH_CONFIGS["2x3"], pe="mac"), waves=waves)


@pytest.mark.parametrize("name", BENCH_CONFIGS)
def test_top(name: str, waves: bool) -> None:
    run_bench("top", BENCH_CONFIGS[name], waves=waves)


def test_top_double_buffered(waves: bool) -> None:
    """The shared bus cases on a double-buffered top: every start a run of K tiles, each
    run's busy pin and counters against golden.cycles.ws_run_cycles."""
    run_bench("top", replace(BENCH_CONFIGS["2x3"], act_depth=12, weight_tiles=4,
                             weight_buffers=2), waves=waves)


def test_configs_reach_the_safe_k_limit() -> None:
    """The ws bench's accumulator test (sim/bench_ws.py safe_limit_k) runs K = max_k only where
    that stays short; make sure the matrix keeps some configurations whose max_k is the
    overflow limit itself."""
    at_limit = [n for n, c in BENCH_CONFIGS.items()
                if c.max_k == safe_k(c.act_bits, c.acc_bits) and c.max_k <= 64 * c.rows]
    assert len(at_limit) >= 2, at_limit
