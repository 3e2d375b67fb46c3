"""`tritium estimate` behind a non-ideal os memory port: tokens/s follow golden's cycle model."""

from __future__ import annotations

import json

import pytest

from tritium.cli import main
from tritium.golden import ArrayConfig
from tritium.golden.memory import MemoryConfig, os_config
from tritium.golden.os_model import stream_gemm_cycles
from tritium.golden.os_port import PortTiming
from tritium.host.arch import resolve_model
from tritium.host.estimate import EstimateConfig, estimate
from tritium.host.hostcost import HostParams

B2 = "bitnet-b1.58-2B-4T"
CFG = ArrayConfig(rows=32, cols=32, clock_mhz=250.0)
HOST = HostParams(20.0, 50.0, 4.0, source="given")
F_HZ = 250e6


def run(port: PortTiming) -> dict:
    ecfg = EstimateConfig(CFG, 16.0, dataflow="os", prompt_len=8, gen_len=4, host=HOST,
                          os_port=port)
    return estimate(resolve_model(B2), ecfg)


def golden_cycles(m: int, port: PortTiming) -> int:
    """os cycles of one token's (m = 1) or one prompt's matmuls, straight from golden."""
    oc = os_config(CFG, MemoryConfig(16e9 / F_HZ))
    model = resolve_model(B2)
    return model.num_hidden_layers * sum(stream_gemm_cycles(oc, m, mm.k, mm.n, port)
                                         for mm in model.matmuls())


@pytest.fixture(scope="module")
def ideal() -> dict:
    return run(PortTiming())


def test_latency_lowers_tokens_per_s_as_golden_says(ideal: dict) -> None:
    port = PortTiming(latency=40)
    late = run(port)
    d0, d = ideal["decode"], late["decode"]
    assert d0["cycles_per_token"] == golden_cycles(1, PortTiming())
    assert d["cycles_per_token"] == golden_cycles(1, port)
    assert d["tokens_per_s"] == pytest.approx(F_HZ / golden_cycles(1, port))
    assert d["tokens_per_s"] < d0["tokens_per_s"]
    # the waits are stalls: compute (ideal-port) cycles and DRAM bytes stay as they were
    assert d["compute_cycles"] == d0["cycles_per_token"]
    assert d["stall_cycles"] == golden_cycles(1, port) - golden_cycles(1, PortTiming())
    assert d["dram_bytes"] == d0["dram_bytes"]
    assert late["prefill"]["cycles"] == golden_cycles(8, port)
    # idle PEs clock through the waits
    assert late["energy"]["decode_j_per_token"] > ideal["energy"]["decode_j_per_token"]
    assert late["config"]["os_port"] == {"latency": 40, "stall_ppm": 0, "seed": 0}
    assert any("latency 40 cycles" in a for a in late["assumptions"])
    assert any("os memory port: ideal" in a for a in ideal["assumptions"])


def test_stalls_are_exact_for_decode() -> None:
    port = PortTiming(latency=3, stall_ppm=50_000, seed=7)
    d = run(port)["decode"]
    assert d["cycles_per_token"] == golden_cycles(1, port)
    assert d["cycles_per_token"] > golden_cycles(1, PortTiming(latency=3))


def test_cli_port_options(capsys) -> None:
    base = ["estimate", "--model", B2, "--rows", "32", "--cols", "32", "--clock-mhz", "250",
            "--dram-gbps", "16", "--prompt-len", "8", "--gen-len", "4", "--host-gbps", "20",
            "--host-gflops", "50", "--json", "-"]
    assert main([*base, "--dataflow", "os", "--port-latency", "40"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["decode"]["cycles_per_token"] == golden_cycles(1, PortTiming(latency=40))
    assert main([*base, "--dataflow", "ws", "--port-latency", "4"]) != 0
    err = capsys.readouterr().err
    assert "--port-latency" in err and "os" in err and len(err.strip().splitlines()) == 1
    assert main([*base, "--dataflow", "os", "--port-stall-ppm", "1000000"]) != 0
    assert "--port-stall-ppm must be 0..999999" in capsys.readouterr().err
