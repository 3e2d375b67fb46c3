"""The os dataflow on a board: the Verilated board top (UART, link, on-chip memory, os top)
behind a pseudo-terminal, driven by the same BoardDevice and os driver a real board gets.

Results equal golden's GEMM and the cycle counters equal golden's os model with the board
memory's timing (boards.os_mem.BOARD_TIMING). One simulator build serves the module."""

from __future__ import annotations

import numpy as np
import pytest

from tritium.boards.backend import BoardBackend
from tritium.boards.board_sim import PtyBoard, SimBoard
from tritium.boards.host import BoardDevice
from tritium.boards.os_mem import BOARD_TIMING
from tritium.bus import DeviceError, Program
from tritium.bus.os_regmap import OsCsr, OsRegMap
from tritium.golden import ArrayConfig, ternary_gemm
from tritium.golden.os_model import stream_gemm_events, stream_plan
from tritium.golden.os_port import IDEAL
from tritium.host.os_driver import OsDriver

# 2x2 PEs, 8-byte rows, K up to 24: a GEMM with K > 8 needs several activation rows per
# output row, and N > 4 several passes; the 32-row memory forces jobs to be cut.
CFG = ArrayConfig(rows=2, cols=2, dataflow="os", max_k=24, dram_bytes_per_cycle=8,
                  dram_words=32)
BOARD = SimBoard.at_baud(CFG, "ulx3s", req_bytes=256, max_reads=32)
FAST = {"timeout": 0.5}


@pytest.fixture(scope="module")
def board():
    with PtyBoard(BOARD) as b:
        yield b


def random_gemm(seed: int, m: int, k: int, n: int):
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, size=(m, k))
    a[0, :] = -128
    w = rng.integers(-1, 2, size=(k, n))
    w[:, 0] = 0                      # a zero column: skips are counted, not assumed
    return a, w


@pytest.mark.parametrize(("seed", "m", "k", "n"), [(0, 3, 24, 7), (1, 5, 9, 2), (2, 1, 1, 1)])
def test_gemm_equals_golden(board, seed: int, m: int, k: int, n: int) -> None:
    a, w = random_gemm(seed, m, k, n)
    with BoardDevice(board.port, CFG, **FAST) as dev:
        drv = OsDriver(dev, CFG)
        drv.identify()
        out, events = drv.gemm(a, w)
    np.testing.assert_array_equal(out, ternary_gemm(a, w, CFG.act_bits))
    want = stream_gemm_events(CFG, w, m, BOARD_TIMING)
    assert (events.tiles, events.cycles, events.macs, events.zero_skips) == \
        (want.tiles, want.cycles, want.macs, want.zero_skips)
    # The BRAM's cycle is visible: one more per start than an ideal memory.
    assert events.cycles == stream_gemm_events(CFG, w, m, IDEAL).cycles \
        + len(stream_plan(CFG, m, k, n))


def test_region_one_is_the_memory(board) -> None:
    """Host words written to region 1 read back, every word lane of a row, and CSRs still
    reach the top through the memory's bus pass-through."""
    rm = OsRegMap(CFG)
    rng = np.random.default_rng(7)
    words = rng.integers(0, 1 << 32, size=(rm.dram_words, rm.row_words), dtype=np.uint64)
    addrs = rm.dram_addrs(0, rm.dram_words)
    prog = Program()
    prog.write_block(addrs, words.ravel())
    prog.write(rm.csr(OsCsr.K_COUNT), 19)
    reads = prog.read_block(addrs)
    k_read = prog.read(rm.csr(OsCsr.K_COUNT))
    with BoardDevice(board.port, CFG, **FAST) as dev:
        out = dev.execute(prog.as_array())
    back = out[reads]
    assert int(out[k_read]) == 19
    np.testing.assert_array_equal(back, words.ravel().astype(np.uint32))


def test_board_backend_runs_os(board) -> None:
    """With no array given (as `tritium run --backend board`), the host finds the board's os
    configuration itself and runs the os driver."""
    backend = BoardBackend(port=board.port, **FAST)
    try:
        cfg = backend.device.cfg
        assert (cfg.dataflow, cfg.max_k, cfg.weight_packing) == ("os", CFG.max_k, "2bit")
        assert OsRegMap(cfg).config_words() == OsRegMap(CFG).config_words()
        assert isinstance(backend.accel, OsDriver)
        a, w = random_gemm(3, 2, 13, 5)
        out, events = backend.accel.gemm(a, backend.accel.pack(w))
    finally:
        backend.close()
    np.testing.assert_array_equal(out, ternary_gemm(a, w, CFG.act_bits))
    assert events.cycles == stream_gemm_events(CFG, w, 2, BOARD_TIMING).cycles


def test_wrong_os_configuration_is_refused(board) -> None:
    other = ArrayConfig(rows=2, cols=2, dataflow="os", max_k=24, dram_bytes_per_cycle=8,
                        dram_words=64)
    have, want = OsRegMap(CFG).config_words()[:2], OsRegMap(other).config_words()[:2]
    assert have != want
    with pytest.raises(DeviceError, match=rf"reports configuration words {have[0]:#x}, "
                       rf"{have[1]:#x}; the host expects {want[0]:#x}, {want[1]:#x} "
                       rf"\({other.name()}\)"):
        BoardDevice(board.port, other, **FAST)


def test_build_refuses_an_os_memory_the_link_cannot_address(tmp_path, capsys) -> None:
    """Bus region 1 is the board's RAM, so the link's 16-bit addresses bound it: one line,
    before any synthesis."""
    from tritium.boards.protocol import ADDR_BITS
    from tritium.cli import main

    big = ArrayConfig(rows=2, cols=2, dataflow="os", max_k=4096, dram_bytes_per_cycle=16)
    assert OsRegMap(big).addr_bits > ADDR_BITS
    assert main(["build", "--board", "icebreaker", "--dataflow", "os", "--rows", "2",
                 "--cols", "2", "--max-k", "4096", "--dram-bytes-per-cycle", "16",
                 "-o", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"needs {OsRegMap(big).addr_bits} address bits" in err
    assert "max_k or dram_words" in err and "Traceback" not in err
    assert not list(tmp_path.glob("*.json"))
