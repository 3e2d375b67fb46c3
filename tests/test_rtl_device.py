"""The Verilator device (sim/verilated.py) runs host programs on the RTL top: results equal
golden's GEMM and its performance counters equal golden's event model."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tritium.bus import MAGIC, OP_READ, OPS, DeviceError, Program
from tritium.bus.contract import CTRL_START, STATUS_DONE, STATUS_ERROR
from tritium.bus.ws_regmap import Csr, WsRegMap
from tritium.golden import ArrayConfig, Tile, gemm_events, ternary_gemm
from tritium.golden.cycles import ws_run_cycles
from tritium.golden.tiling import Run
from tritium.host.ws_driver import WsDriver
from tritium.sim.verilated import VerilatorDevice, ensure_built

from .configs import BENCH_CONFIGS

CPP = Path(__file__).resolve().parent.parent / "sim" / "cpp"


def cpp_op_codes(text: str) -> dict[str, int]:
    """The OP_* constants a C++ harness defines (constexpr, const or #define)."""
    pattern = r"(?:constexpr|const)\s+[\w:]+\s+(OP_\w+)\s*=\s*(\d+)\s*;|#define\s+(OP_\w+)\s+(\d+)"
    return {m[0] or m[2]: int(m[1] or m[3]) for m in re.findall(pattern, text)}


def test_cpp_harness_op_codes_match_the_bus_contract() -> None:
    """sim/cpp runs Programs whose op codes tritium.bus defines: every OP_* a harness names
    has the bus's number, and the device harness handles every bus op."""
    sources = {path.name: path.read_text() for path in sorted(CPP.glob("*.cpp"))}
    assert "device.cpp" in sources
    for name, text in sources.items():
        for op, code in cpp_op_codes(text).items():
            assert OPS.get(op) == code, f"sim/cpp/{name}: {op} = {code}, bus says {OPS.get(op)}"
    device = sources["device.cpp"]
    assert cpp_op_codes(device) == OPS
    for op in OPS:
        assert re.search(rf"case\s+{op}\s*:", device), f"device.cpp does not handle {op}"


def test_op_code_parser_sees_a_mismatch() -> None:
    assert cpp_op_codes("constexpr int64_t OP_READ = 7;\n#define OP_WAIT 3\n") == \
        {"OP_READ": 7, "OP_WAIT": 3}
    assert cpp_op_codes("constexpr int64_t OP_READ = 7;") != {"OP_READ": OPS["OP_READ"]}


@pytest.fixture(scope="module", params=sorted(BENCH_CONFIGS))
def device(request: pytest.FixtureRequest):
    with VerilatorDevice(BENCH_CONFIGS[request.param]) as dev:
        yield dev


def _operands(cfg: ArrayConfig, rng: np.random.Generator, m: int, k: int, n: int):
    lo, hi = -(2 ** (cfg.act_bits - 1)), 2 ** (cfg.act_bits - 1)
    return rng.integers(lo, hi, (m, k)), rng.choice([-1, 0, 1], size=(k, n), p=[0.4, 0.2, 0.4])


def test_random_gemms_match_golden_and_counters(device: VerilatorDevice) -> None:
    cfg = device.cfg
    acc = WsDriver(device)
    acc.identify()
    rng = np.random.default_rng(cfg.rows * 31 + cfg.cols)
    shapes = [(1, 1, 1), (1, min(cfg.max_k, 37), 2 * cfg.cols + 1),
              (cfg.act_depth + 3, min(cfg.max_k, 3 * cfg.rows + 1), cfg.cols + 2)]
    for m, k, n in shapes:
        a, w = _operands(cfg, rng, m, k, n)
        got, events = acc.gemm(a, w)
        np.testing.assert_array_equal(got, ternary_gemm(a, w, cfg.act_bits))
        assert events.as_dict() == gemm_events(cfg, w, m).as_dict(), (m, k, n)


def test_packed_weights_give_the_same_result(device: VerilatorDevice) -> None:
    cfg = device.cfg
    acc = WsDriver(device)
    rng = np.random.default_rng(7)
    a, w = _operands(cfg, rng, 5, min(cfg.max_k, 2 * cfg.rows + 1), 3 * cfg.cols - 1)
    first, _ = acc.gemm(a, acc.pack(w))
    np.testing.assert_array_equal(first, ternary_gemm(a, w, cfg.act_bits))


def test_extremes_at_the_safe_k(device: VerilatorDevice) -> None:
    cfg = device.cfg
    acc = WsDriver(device)
    k = cfg.max_k
    lo = -(2 ** (cfg.act_bits - 1))
    a = np.full((2, k), lo)
    a[1] = 2 ** (cfg.act_bits - 1) - 1
    w = np.stack([np.full(k, -1), np.full(k, 1), np.zeros(k, dtype=int)], axis=1)
    got, _ = acc.gemm(a, w)
    np.testing.assert_array_equal(got, ternary_gemm(a, w, cfg.act_bits))
    assert got[0, 0] == -lo * k  # -128 * -1 summed K times: the largest positive sum


def test_identify_rejects_a_different_configuration(device: VerilatorDevice) -> None:
    cfg = device.cfg
    other = ArrayConfig(rows=cfg.rows + 1, cols=cfg.cols, act_bits=cfg.act_bits,
                        acc_bits=cfg.acc_bits, act_depth=cfg.act_depth,
                        max_k=cfg.max_k, weight_tiles=cfg.weight_tiles)
    with pytest.raises(DeviceError, match="configuration"):
        WsDriver(device, other).identify()


def test_bad_programs_raise_device_errors() -> None:
    cfg = BENCH_CONFIGS["2x3"]
    with VerilatorDevice(cfg) as dev:
        with pytest.raises(DeviceError, match="unknown bus operation at op 1"):
            dev.execute(np.array([[OP_READ, 0, 0], [9, 0, 0]]))
        with pytest.raises(DeviceError, match=r"\[n, 3\]"):
            dev.execute(np.zeros((2, 2)))
    with pytest.raises(DeviceError, match="closed"):
        dev.execute(np.array([[OP_READ, 0, 0]]))


def test_cycles_count_every_clock_and_per_clock_driving_agrees() -> None:
    """The per-clock entry points (the benchmark's baseline) see the same RTL."""
    cfg = BENCH_CONFIGS["2x3"]
    rm = WsRegMap(cfg)
    with VerilatorDevice(cfg) as dev:
        prog = Program()
        prog.read(rm.csr(Csr.ID))
        prog.write(rm.csr(Csr.M_COUNT), 3)
        prog.read(rm.csr(Csr.M_COUNT))
        before = dev.cycles
        words = dev.execute(prog.as_array())
        assert dev.cycles - before == 3
        assert words.tolist() == [MAGIC, 3]
        dev.poke(rm.csr(Csr.CONFIG0), 0, 0, 1)
        dev.tick()
        assert dev.rdata() == rm.config_words()[0]
        assert not dev.busy()


def test_builds_are_cached_per_configuration() -> None:
    cfg = BENCH_CONFIGS["1x1"]
    lib = ensure_built(cfg)
    stamp = lib.stat().st_mtime_ns
    assert ensure_built(cfg) == lib and lib.stat().st_mtime_ns == stamp
    assert ensure_built(BENCH_CONFIGS["2x3"]).parent != lib.parent


# --- double-buffered weights: runs of K tiles, exact against golden's run timing -------------

DOUBLE_CONFIGS = {
    "1x1": ArrayConfig(rows=1, cols=1, acc_bits=10, max_k=3, act_depth=4, weight_buffers=2),
    "2x3": ArrayConfig(rows=2, cols=3, acc_bits=14, max_k=63, act_depth=12, weight_tiles=4,
                       weight_buffers=2),
    "4x4": ArrayConfig(rows=4, cols=4, acc_bits=16, max_k=255, act_depth=16, weight_tiles=6,
                       weight_buffers=2),
}


@pytest.fixture(scope="module", params=sorted(DOUBLE_CONFIGS))
def double_device(request: pytest.FixtureRequest):
    with VerilatorDevice(DOUBLE_CONFIGS[request.param]) as dev:
        yield dev


def test_double_buffered_gemms_match_golden_and_counters(double_device: VerilatorDevice) -> None:
    """Odd M, K, N; several runs per output block (K split) and several M chunks; busy cycles
    equal golden.cycles.ws_run_cycles summed over the plan."""
    cfg = double_device.cfg
    acc = WsDriver(double_device)
    acc.identify()
    rng = np.random.default_rng(cfg.rows * 7 + cfg.cols)
    r, c = cfg.rows, cfg.cols
    shapes = [(1, 1, 1), (1, min(cfg.max_k, 5 * r - 1), 2 * c + 1),
              (3, min(cfg.max_k, 3 * r + 1), c + 2), (cfg.act_depth + 3, min(cfg.max_k, 4 * r), c),
              (2 * r + 1, min(cfg.max_k, 2 * r), 3)]
    for m, k, n in shapes:
        a, w = _operands(cfg, rng, m, k, n)
        got, events = acc.gemm(a, w)
        np.testing.assert_array_equal(got, ternary_gemm(a, w, cfg.act_bits))
        assert events.as_dict() == gemm_events(cfg, w, m).as_dict(), (m, k, n)


def test_one_run_takes_the_run_timing() -> None:
    """Single starts of every length the buffers allow, with m below, at and above R and C:
    the busy counter is ws_run_cycles, and only tile 0 of a start without accumulate
    overwrites the output block."""
    cfg = DOUBLE_CONFIGS["4x4"]
    rng = np.random.default_rng(11)
    with VerilatorDevice(cfg) as dev:
        acc = WsDriver(dev)
        for m, t, accumulate in [(1, 6, False), (2, 5, True), (4, 4, False), (5, 3, True),
                                 (16, 1, False), (3, 5, False)]:
            k = t * cfg.rows
            a, w = _operands(cfg, rng, m, k, cfg.cols)
            # The host cannot write the output banks: an accumulating start adds to what the
            # run before it left there.
            a0, w0 = _operands(cfg, rng, m, cfg.rows, cfg.cols)
            prior = ternary_gemm(a0, w0, cfg.act_bits)
            prog = Program()
            acc.queue_run(prog, a0, w0, Run((Tile(0, m, 0, cfg.rows, 0, cfg.cols, False, True),),
                                            slot=0, act_base=0))
            before = acc.queue_counters(prog)
            run = Run(tuple(Tile(0, m, k0, cfg.rows, 0, cfg.cols, accumulate or k0 > 0,
                                 k0 + cfg.rows >= k) for k0 in range(0, k, cfg.rows)),
                      slot=(m * 5) % cfg.weight_tiles, act_base=(m * 3) % cfg.act_depth)
            reads = acc.queue_run(prog, a, w, run)
            after = acc.queue_counters(prog)
            words = acc.run(prog)
            want = ternary_gemm(a, w, cfg.act_bits) + (prior if accumulate else 0)
            np.testing.assert_array_equal(words[reads].view(np.int32).reshape(m, cfg.cols), want)
            ev = acc.events_between(acc.counters_of(words, before), acc.counters_of(words, after))
            assert ev.cycles == ws_run_cycles(cfg, m, t), (m, t)
            assert ev.tiles == t


def test_double_buffered_bad_starts_flag_error_and_one_tile_by_default() -> None:
    cfg = DOUBLE_CONFIGS["2x3"]
    rm = WsRegMap(cfg)
    good = {Csr.M_COUNT: 3, Csr.W_TILE: 3, Csr.K_TILES: 4, Csr.A_BASE: 11}  # 3 * 4 = depth
    bads = [{Csr.K_TILES: 0}, {Csr.K_TILES: cfg.weight_tiles + 1}, {Csr.M_COUNT: 4},
            {Csr.M_COUNT: 0}, {Csr.A_BASE: cfg.act_depth}, {Csr.W_TILE: cfg.weight_tiles}]
    with VerilatorDevice(cfg) as dev:
        acc = WsDriver(dev)
        prog = Program()
        k_tiles = prog.read(rm.csr(Csr.K_TILES))
        words = acc.run(prog)
        assert words[k_tiles] == 1
        # bad starts first (a good one would leave `done` set), then the good one
        for bad in [*bads, {}]:
            prog = Program()
            for reg, value in {**good, **bad}.items():
                prog.write(rm.csr(reg), value)
            prog.write(rm.csr(Csr.CTRL), CTRL_START)
            prog.wait_idle()
            status = prog.read(rm.csr(Csr.STATUS))
            got = acc.run(prog)[status]
            want = STATUS_DONE if not bad else STATUS_ERROR
            assert got == want, (bad, got)
        assert acc.counters()["tiles"] == good[Csr.K_TILES]


def test_identify_tells_the_weight_buffering_apart() -> None:
    cfg = DOUBLE_CONFIGS["2x3"]
    with VerilatorDevice(BENCH_CONFIGS["2x3"]) as dev, \
            pytest.raises(DeviceError, match="configuration"):
        WsDriver(dev, replace(BENCH_CONFIGS["2x3"], weight_buffers=2)).identify()
    with VerilatorDevice(cfg) as dev:
        WsDriver(dev).identify()
