"""What every cocotb bench shares: the config under test, a seeded RNG, clock and reset."""

from __future__ import annotations

import json
import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotb.types import Logic

from ..golden.config import ArrayConfig


def bench_config() -> ArrayConfig:
    return ArrayConfig.from_dict(json.loads(os.environ["TRITIUM_CONFIG"]))


def bench_rng() -> np.random.Generator:
    return np.random.default_rng(cocotb.RANDOM_SEED)


async def start(dut) -> None:
    """Start a 10 ns clock, hold reset two cycles; returns just after a rising edge."""
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


def uint(handle) -> int:
    """Unsigned value of a port; cocotb gives 1-bit ports a scalar Logic, wider ones an array."""
    value = handle.value
    return int(value) if isinstance(value, Logic) else value.to_unsigned()


def pack_lanes(values, bits: int) -> int:
    word = 0
    for i, v in enumerate(values):
        word |= (int(v) & ((1 << bits) - 1)) << (bits * i)
    return word


def unpack_lanes(word: int, bits: int, n: int) -> list[int]:
    out = []
    for i in range(n):
        v = (word >> (bits * i)) & ((1 << bits) - 1)
        out.append(v - (1 << bits) if v >> (bits - 1) else v)
    return out


def act_values(rng: np.random.Generator, shape, bits: int, corner: float = 0.2) -> np.ndarray:
    """Random signed activations with the extremes (e.g. -128 and 127) over-represented."""
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    a = rng.integers(lo, hi + 1, size=shape)
    pick = rng.random(shape) < corner
    a[pick] = rng.choice([lo, hi], size=int(pick.sum()))
    return a


def extreme_cases(cfg, rng, m: int, k: int, n: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """GEMMs at the corners: activations at both ends of their range against all-zero, all +1
    and all -1 weights, labelled for failure messages."""
    lo, hi = -(2 ** (cfg.act_bits - 1)), 2 ** (cfg.act_bits - 1) - 1
    extremes = rng.choice([lo, hi], (m, k))
    return {
        "all zero weights": (extremes, np.zeros((k, n), int)),
        "all +1, all 127": (np.full((m, k), hi), np.ones((k, n), int)),
        "all -1, all -128": (np.full((m, k), lo), -np.ones((k, n), int)),
        "all +1, -128 and 127": (extremes, np.ones((k, n), int)),
    }
