"""Proof that a PE is a plug-in: this file defines a new PE, registers it and runs it through
generation, the Verilator device (a tiled GEMM through the host driver), the cocotb array bench
and golden equality on a 3x5 array, with no other file knowing about it.

The PE stores its weight as sign and magnitude bits, and gates its adder's operand to zero
when the magnitude is zero, instead of muxing the partial sum past the adder as the ternary
PE does. It takes the accelerator's 2-bit codes, so it also fits the accelerator top.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Module, Mux, Signal

from tritium.golden import ArrayConfig, ConfigError, gemm_events, ternary_gemm
from tritium.golden.gemm import systolic_gemm, weight_codes, wrap_signed
from tritium.hdl.generate import unit_verilog, write_unit
from tritium.hdl.pes import PESpec, SystolicPE, config_pe, get_pe, pe_names, register_pe
from tritium.host.arch import resolve_model
from tritium.host.driver import driver_for
from tritium.host.estimate import EstimateConfig, estimate
from tritium.sim.runner import run_bench
from tritium.sim.verilated import VerilatorDevice


def sign_magnitude_update(psum_in: int, act: int, code: int, acc_bits: int) -> int:
    """Golden rule: magnitude = bit 0, sign = bit 1 of a non-zero code; psum +- act * mag."""
    magnitude = code & 1
    negative = code >> 1 & magnitude
    term = act * magnitude
    return wrap_signed(psum_in - term if negative else psum_in + term, acc_bits)


class SignMagnitudePE(SystolicPE):
    def compute(self, m: Module) -> None:
        magnitude = Signal()
        negative = Signal()
        with m.If(self.w_load):
            m.d.sync += [magnitude.eq(self.w_in[0]), negative.eq(self.w_in[1] & self.w_in[0])]
        operand = Signal.like(self.act_in)
        m.d.comb += operand.eq(Mux(magnitude, self.act_in, 0))
        m.d.comb += self.sum.eq(Mux(negative, self.psum_in - operand, self.psum_in + operand))


# Registered at import, so every pytest-xdist worker that collects this file has it; the
# cocotb simulator's Python imports this file again (tritium.sim.runner.bench_pe).
SPEC = register_pe(PESpec("signmag", SignMagnitudePE, sign_magnitude_update,
                          description="sign and magnitude bits, operand gated on zero"))

CFG = ArrayConfig(rows=3, cols=5, acc_bits=16, max_k=255, act_depth=6, weight_tiles=2,
                  pe="signmag")


def test_registry_lists_the_plugin_and_rejects_unknown_names() -> None:
    assert get_pe("signmag") is SPEC and config_pe(CFG) is SPEC
    assert pe_names()[:2] == ["ternary", "mac"] and "signmag" in pe_names()
    with pytest.raises(ConfigError) as info:
        config_pe(replace(CFG, pe="nosuch"))
    message = str(info.value)
    assert "\n" not in message and "'nosuch'" in message
    assert "ternary, mac" in message and "signmag" in message
    with pytest.raises(ConfigError, match="already registered"):
        register_pe(PESpec("signmag", SignMagnitudePE, wrap_signed))
    assert register_pe(SPEC) is SPEC      # the same definition again (a re-import) is no clash


def test_config_names_the_pe() -> None:
    ternary = replace(CFG, pe="ternary")
    assert CFG.name() == f"{ternary.name()}_signmag" and CFG.key() != ternary.key()
    assert ArrayConfig.from_dict(CFG.to_dict()) == CFG
    with pytest.raises(ConfigError, match="ArrayConfig.pe"):
        replace(CFG, pe="sign mag")


def test_estimator_accepts_the_plugin_config() -> None:
    """The cost model prices dataflows and memory, not PE internals: same figures as the
    ternary PE's, with the PE named in the reported configuration."""
    model = resolve_model("microsoft/BitNet-b1.58-2B-4T")
    cfg = replace(CFG, max_k=8192, acc_bits=24)

    def run(c: ArrayConfig) -> dict:
        return estimate(model, EstimateConfig(c, 16.0, prompt_len=4, gen_len=2,
                                              zero_fraction=1 / 3))

    plugin, ternary = run(cfg), run(replace(cfg, pe="ternary"))
    assert plugin["config"]["array"]["pe"] == "signmag"
    for key in ("prefill", "decode", "energy", "totals"):
        assert plugin[key] == ternary[key], key


def test_golden_rule_is_the_ternary_gemm() -> None:
    """Folded down a column, the plug-in's rule gives golden's ternary GEMM, and it differs
    from the ternary rule only on the unused code 10 (both treat it as zero)."""
    rng = np.random.default_rng(5)
    a = rng.integers(-128, 128, (7, 11))
    w = rng.integers(-1, 2, (11, 4))
    np.testing.assert_array_equal(systolic_gemm(SPEC.update, a, weight_codes(w, 2), 16),
                                  ternary_gemm(a, w))
    ternary = get_pe("ternary").update
    for code in range(4):
        for act in (-128, -1, 0, 5, 127):
            assert SPEC.update(100, act, code, 16) == ternary(100, act, code, 16)


def test_generation_builds_the_plugin_into_every_unit(tmp_path: Path) -> None:
    for unit in ("pe", "array", "top"):
        verilog = write_unit(unit, CFG, tmp_path, f"t_{unit}")
        info = json.loads(verilog.with_suffix(".json").read_text())
        assert info["pe"] == "signmag" and info["config"]["pe"] == "signmag"
        assert verilog.read_text() != unit_verilog(unit, replace(CFG, pe="ternary"), f"t_{unit}")
    with pytest.raises(ConfigError, match="dataflow ws"):
        write_unit("top", replace(CFG, dataflow="os"), tmp_path)


def test_tiled_gemm_on_the_verilator_device() -> None:
    """A GEMM larger than the array in M, K and N, tiled by the host driver, on the fast
    device: results equal golden's ternary GEMM and the plug-in's own rule, counters equal
    golden's event model."""
    rng = np.random.default_rng(11)
    m, k, n = CFG.act_depth + 2, 3 * CFG.rows + 2, 2 * CFG.cols + 3
    a = rng.integers(-128, 128, (m, k))
    w = rng.choice([-1, 0, 1], size=(k, n), p=[0.4, 0.2, 0.4])
    with VerilatorDevice(CFG) as dev:
        acc = driver_for(dev)
        acc.identify()
        got, events = acc.gemm(a, w)
    np.testing.assert_array_equal(got, ternary_gemm(a, w, CFG.act_bits))
    np.testing.assert_array_equal(got, systolic_gemm(SPEC.update, a, weight_codes(w, 2),
                                                     CFG.acc_bits))
    assert events.as_dict() == gemm_events(CFG, w, m).as_dict()


def test_cocotb_array_bench_runs_the_plugin() -> None:
    """The array bench imports this file in the simulator's Python to find the PE's rule."""
    run_bench("array", CFG)
