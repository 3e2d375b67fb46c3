"""End to end without a board: the Verilated board top (UART pins included) behind a
pseudo-terminal, driven by the same BoardDevice a real board gets, with faults on the line.
The simulated UART runs the ULX3S's bit timing at its default rate (25 clocks per bit at
25 MHz: 1 Mbaud), and the host opens the port at that rate.

One simulator build serves every test in this module (~30 s once, cached under build/)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import serial

from tritium.boards import protocol as P
from tritium.boards.board_sim import LineProxy, PtyBoard, SimBoard
from tritium.boards.host import DEFAULT_BAUD, BoardDevice
from tritium.bus import MAGIC, VERSION, DeviceError
from tritium.bus.ws_regmap import Csr, WsRegMap
from tritium.golden import ArrayConfig, gemm_events, ternary_gemm
from tritium.host.ws_driver import WsDriver

CFG = ArrayConfig(rows=4, cols=3, act_depth=8, weight_tiles=2)
# Small link buffers, so a GEMM needs many frames and the splitting is exercised.
BOARD = SimBoard.at_baud(CFG, "ulx3s", req_bytes=160, max_reads=12)
FAST = {"timeout": 0.3}      # the host's default baud is the board's


@pytest.fixture(scope="module")
def board():
    with PtyBoard(BOARD) as b:
        yield b


def random_gemm(seed: int, m: int = 11, k: int = 10, n: int = 7):
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, size=(m, k))
    a[0, :] = -128
    w = rng.integers(-1, 2, size=(k, n))
    return a, w


def check_gemm(dev: BoardDevice, seed: int) -> None:
    """Result and performance counters equal golden: a frame run twice would add tiles."""
    a, w = random_gemm(seed)
    out, events = WsDriver(dev).gemm(a, w)
    np.testing.assert_array_equal(out, ternary_gemm(a, w, CFG.act_bits))
    want = gemm_events(CFG, w, a.shape[0])
    assert (events.tiles, events.cycles, events.macs, events.zero_skips) == \
        (want.tiles, want.cycles, want.macs, want.zero_skips)


def test_identify_and_gemm(board) -> None:
    with BoardDevice(board.port, **FAST) as dev:
        assert dev.cfg.name() == CFG.name() and dev.cfg.act_depth == CFG.act_depth
        assert (dev.link.req_bytes, dev.link.max_reads) == (160, 12)
        WsDriver(dev).identify()
        check_gemm(dev, 0)
        stats = dev.stats
        assert stats.retransmits == 0 and stats.frames > 10
        # Link time is the bytes that crossed, 10 bits each at the link's rate; the rest of the
        # time spent in transactions is the device's.
        assert stats.baud == DEFAULT_BAUD
        assert stats.bytes_sent > stats.frames * (P.HEADER_BYTES + P.CRC_BYTES)
        assert stats.bytes_received > stats.frames * (P.RESP_HEADER_BYTES + P.CRC_BYTES)
        assert stats.link_seconds == pytest.approx(
            (stats.bytes_sent + stats.bytes_received) * 10 / DEFAULT_BAUD)
        assert stats.link_seconds + stats.compute_seconds == pytest.approx(stats.seconds)
        assert stats.as_dict()["retries"] == 0


def test_wrong_array_configuration_is_refused(board) -> None:
    with pytest.raises(DeviceError, match=r"built for a 4x3 array.*expects a 8x8 array"):
        BoardDevice(board.port, ArrayConfig(rows=8, cols=8), **FAST)


def test_busy_port_is_refused(board) -> None:
    with BoardDevice(board.port, **FAST), \
            pytest.raises(DeviceError, match=f"{board.port}.*busy"):
        BoardDevice(board.port, **FAST)


def test_missing_port_is_named() -> None:
    with pytest.raises(DeviceError, match="/dev/ttyNOPE0: no such device"):
        BoardDevice("/dev/ttyNOPE0")


def exec_frame(seq: int, ops) -> bytes:
    return P.request(P.FrameType.EXEC, seq, P.encode_ops(np.array(ops, dtype=np.int64)))


def test_rtl_answers_like_the_protocol_model(board) -> None:
    """Raw frames, good and bad, to the RTL and to LinkModel: byte-identical answers."""
    rm = WsRegMap(CFG)
    csrs = {rm.csr(Csr.ID): MAGIC, rm.csr(Csr.VERSION): VERSION,
            rm.csr(Csr.CONFIG0): rm.config_words()[0], rm.csr(Csr.CONFIG1): rm.config_words()[1]}
    regs = dict(csrs)
    writes = []

    def execute(ops):
        out = []
        for op, addr, word in ops.tolist():
            if op == P.OP_WRITE:
                regs[addr] = word
                writes.append((addr, word))
            elif op == P.OP_READ:
                out.append(regs.get(addr, 0))
        return np.array(out, dtype=np.uint32)

    model = P.LinkModel(execute, tuple(csrs.values()), req_bytes=160, max_reads=12)
    mc, wt = rm.csr(Csr.M_COUNT), rm.csr(Csr.W_TILE)
    rw = [(P.OP_WRITE, mc, 5), (P.OP_WRITE, wt, 1), (P.OP_READ, mc, 0), (P.OP_READ, wt, 0),
          (P.OP_WAIT, 0, 0), (P.OP_READ, rm.csr(Csr.ID), 0)]
    good = P.request(P.FrameType.IDENT, 0x1234)
    cases = [
        P.slip_encode(good),
        P.slip_encode(exec_frame(1, rw)),
        P.slip_encode(exec_frame(1, [(P.OP_WRITE, mc, 7)])),          # replay of seq 1
        P.slip_encode(exec_frame(2, [(P.OP_WRITE, mc, 3), (P.OP_READ, mc, 0)])),
        P.slip_encode(P.request(P.FrameType.IDENT, 3, version=P.PROTOCOL_VERSION + 1)),
        P.slip_encode(P.request(0x42, 4)),                             # unknown type
        P.slip_encode(P.request(P.FrameType.EXEC, 5, bytes([P.OP_READ, 0]))),  # cut short
        P.slip_encode(P.request(P.FrameType.EXEC, 6, bytes([P.OP_WRITE, 0, 5, 0, 0, 0, 9, 0x66]))),
        P.slip_encode(exec_frame(7, [(P.OP_WRITE, mc, 1)] + [(P.OP_READ, mc, 0)] * 13)),
        P.slip_encode(bytes([good[0] ^ 0x40]) + good[1:]),             # bad CRC: no answer
        P.slip_encode(exec_frame(8, [(P.OP_WAIT, 0, 0)] * 170)),       # too long: no answer
        bytes([P.ESC, 0x01]) + P.slip_encode(good)[1:],                # bad escape: dropped...
        P.slip_encode(good),                                           # ...then resync
        bytes([0x55, 0xAA, P.ESC, P.ESC_END, 0x00] * 20) + P.slip_encode(good),
        P.slip_encode(exec_frame(9, [(P.OP_READ, mc, 0)])),
    ]
    with serial.Serial(board.port, DEFAULT_BAUD, timeout=0.5) as ser:
        dec = P.SlipDecoder()
        for i, wire in enumerate(cases):
            want = P.SlipDecoder().feed(model.receive(wire))
            ser.write(wire)
            got: list[bytes] = []
            deadline = time.monotonic() + (1.0 if want else 0.3)
            while len(got) < len(want) or (not want and time.monotonic() < deadline):
                if time.monotonic() > deadline:
                    break
                got += dec.feed(ser.read(max(1, ser.in_waiting)))
            assert got == want, f"case {i}: RTL {[g.hex() for g in got]} model " \
                                f"{[x.hex() for x in want]}"
    # The model ran neither the replayed write (7) nor the refused frames' writes; the RTL's
    # last answer (M_COUNT still 3) equal to the model's shows it did not either.
    assert writes == [(mc, 5), (wt, 1), (mc, 3)]


class Faults:
    """Seeded byte faults for one direction of the line."""

    def __init__(self, seed: int, *, corrupt: float = 0.0, drop: float = 0.0,
                 stall: float = 0.0, stall_s: float = 0.0) -> None:
        self.rng = np.random.default_rng(seed)
        self.corrupt, self.drop, self.stall, self.stall_s = corrupt, drop, stall, stall_s
        self.count = 0

    def __call__(self, data: bytes) -> bytes:
        out = bytearray()
        for b in data:
            r = self.rng.random()
            if r < self.drop:
                self.count += 1
                continue
            if r < self.drop + self.corrupt:
                self.count += 1
                b ^= 1 << int(self.rng.integers(0, 8))
            out.append(b)
        if self.stall and self.rng.random() < self.stall:
            self.count += 1
            time.sleep(self.stall_s)
        return bytes(out)


class Once:
    """Flips a bit of the n-th byte (counted from 1) that passes, then stays out of the way.
    n is chosen inside a frame, not on a delimiter."""

    def __init__(self, n: int) -> None:
        self.left = n

    def __call__(self, data: bytes) -> bytes:
        if 0 < self.left <= len(data):
            i = self.left - 1
            data = data[:i] + bytes([data[i] ^ 0x10]) + data[i + 1 :]
        self.left -= len(data)
        return data


def test_corrupted_request_is_retransmitted(board) -> None:
    with LineProxy(board.port, to_device=Once(40)) as line, \
            BoardDevice(line.port, retries=3, **FAST) as dev:
        check_gemm(dev, 1)
        assert dev.stats.timeouts == 1 and dev.stats.retransmits == 1


def test_corrupted_answer_is_retransmitted_and_not_rerun(board) -> None:
    with LineProxy(board.port, to_host=Once(35)) as line, \
            BoardDevice(line.port, retries=3, **FAST) as dev:
        check_gemm(dev, 2)      # the device answered the retransmission from its cache
        assert dev.stats.bad_frames == 1 and dev.stats.retransmits == 1


def test_random_corruption_drops_and_stalls(board) -> None:
    to_dev = Faults(10, corrupt=0.003, drop=0.003, stall=0.02, stall_s=0.4)
    to_host = Faults(11, corrupt=0.003, drop=0.003, stall=0.02, stall_s=0.4)
    with LineProxy(board.port, to_device=to_dev, to_host=to_host) as line, \
            BoardDevice(line.port, retries=25, **FAST) as dev:
        for seed in (3, 4):
            check_gemm(dev, seed)
        assert to_dev.count + to_host.count > 3, "the fault injector injected nothing"
        assert dev.stats.retransmits > 0
        assert dev.stats.stale > 0 or dev.stats.bad_frames > 0


def test_dead_line_gives_a_clear_error_after_bounded_retries(board) -> None:
    with LineProxy(board.port, to_device=lambda b: b) as line:
        dev = BoardDevice(line.port, retries=2, **FAST)
        line.to_device = lambda b: b""
        start = time.monotonic()
        with pytest.raises(DeviceError, match=r"no valid answer .* after 3 attempts \(3 x timeout"):
            WsDriver(dev).counters()
        assert time.monotonic() - start < 3
        dev.close()


def test_device_recovers_framing_after_garbage(board) -> None:
    rng = np.random.default_rng(5)
    with LineProxy(board.port) as line, BoardDevice(line.port, **FAST) as dev:
        for _ in range(3):
            noise = bytes(rng.integers(0, 256, 300, dtype=np.uint8))
            line.inject_to_device(noise + bytes([P.ESC, P.END, P.ESC]))
            time.sleep(0.05)
            check_gemm(dev, 6)


def test_small_model_generates_golden_tokens_on_the_board(board, tmp_path) -> None:
    """A BitNet checkpoint run through the board backend: the exact host code a real board
    gets, driving the RTL of the board top, gives golden's tokens and logits."""
    from tritium.boards.backend import BoardBackend
    from tritium.host import BitNetModel
    from tritium.host.synthetic import write_random_checkpoint

    path = write_random_checkpoint(tmp_path / "tiny", hidden=16, intermediate=24, layers=1,
                                   heads=2, kv_heads=1, vocab=40, seed=3)
    prompt = [1, 7, 3]
    golden = BitNetModel.from_pretrained(path, backend="golden", array=CFG)
    want_tokens = golden.generate(prompt, max_new_tokens=3)
    want_logits = golden.logits(prompt)
    model = BitNetModel.from_pretrained(path, backend=BoardBackend(port=board.port, **FAST))
    try:
        assert list(model.generate(prompt, max_new_tokens=3)) == list(want_tokens)
        np.testing.assert_array_equal(model.logits(prompt), want_logits)
    finally:
        model.close()


def test_tritium_run_drives_the_board(board, tmp_path, capsys) -> None:
    """`tritium run --backend board --port` on the pty board equals golden's tokens."""
    import json

    from tritium.cli import main
    from tritium.host import BitNetModel
    from tritium.host.synthetic import write_random_checkpoint

    path = write_random_checkpoint(tmp_path / "tiny", hidden=16, intermediate=24, layers=1,
                                   heads=2, kv_heads=1, vocab=40, seed=5)
    want = BitNetModel.from_pretrained(path, backend="golden", array=CFG).generate(
        [2, 9], max_new_tokens=3, stop_at_eos=False)
    args = ["run", "--model", str(path), "--tokens", "2,9", "--max-new-tokens", "3",
            "--no-eos", "--backend", "board", "--port", board.port]
    assert main([*args, "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["new_tokens"] == list(want)
    assert r["array"]["rows"] == CFG.rows and r["array"]["cols"] == CFG.cols
    assert r["stats"]["total"]["tiles"] > 0
    link = r["link"]
    assert link["baud"] == DEFAULT_BAUD and link["frames"] > 0 and link["retries"] == 0
    assert link["link_seconds"] == pytest.approx(
        (link["bytes_sent"] + link["bytes_received"]) * 10 / DEFAULT_BAUD, abs=1e-6)
    assert 0 < link["compute_seconds"] <= link["transaction_seconds"]

    # The text report says the same, at the rate given with --baud.
    assert main([*args, "--baud", str(DEFAULT_BAUD)]) == 0
    out = capsys.readouterr().out.splitlines()
    line = next(x for x in out if x.startswith("link "))
    assert f"{DEFAULT_BAUD:,} baud: {link['frames']:,} frames" in line
    assert "s, compute " in line
    assert any(x.startswith("retries 0 (0 timeouts") for x in out)


def test_retries_reach_the_run_report(board, tmp_path, capsys) -> None:
    """A corrupted answer on the line shows up as a retry in `tritium run`'s JSON and text."""
    import json

    from tritium.cli import main
    from tritium.host.synthetic import write_random_checkpoint

    path = write_random_checkpoint(tmp_path / "tiny", hidden=16, intermediate=24, layers=1,
                                   heads=2, kv_heads=1, vocab=40, seed=5)
    with LineProxy(board.port, to_host=Once(200)) as line:
        assert main(["run", "--model", str(path), "--tokens", "2", "--max-new-tokens", "1",
                     "--no-eos", "--backend", "board", "--port", line.port, "--json"]) == 0
    link = json.loads(capsys.readouterr().out)["link"]
    assert link["retries"] >= 1 and link["bad_frames"] >= 1


def test_tritium_run_refuses_a_bad_baud(tmp_path, capsys) -> None:
    from tritium.cli import main

    assert main(["run", "--model", str(tmp_path), "--tokens", "1", "--backend", "board",
                 "--port", "/dev/ttyNOPE0", "--baud", "0"]) == 1
    assert "--baud must be a positive" in capsys.readouterr().err


def test_tritium_run_board_needs_a_port(tmp_path, capsys) -> None:
    from tritium.cli import main

    assert main(["run", "--model", str(tmp_path), "--tokens", "1", "--backend", "board"]) == 1
    assert "--port" in capsys.readouterr().err
