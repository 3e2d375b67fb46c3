"""The link protocol's Python golden (boards/protocol.py): CRC, SLIP, op encoding, splitting and
the device-side semantics of LinkModel. No RTL here; tests/test_link_board.py runs the RTL."""

from __future__ import annotations

import numpy as np
import pytest

from tritium.boards import protocol as P


def test_crc_is_ccitt_false() -> None:
    assert P.crc16(b"123456789") == 0x29B1          # the catalogued check value
    frame = P.with_crc(b"any bytes at all")
    assert P.crc16(frame) == 0                      # big-endian CRC: a good frame sums to 0


def test_slip_round_trip_with_special_bytes() -> None:
    rng = np.random.default_rng(1)
    frames = [bytes([P.END, P.ESC, P.ESC_END, P.ESC_ESC]),
              bytes(rng.integers(0, 256, 300, dtype=np.uint8))]
    wire = b"".join(P.slip_encode(f) for f in frames)
    assert P.SlipDecoder().feed(wire) == frames
    assert P.END not in P.slip_encode(frames[0])[1:-1]


def test_slip_decoder_recovers_after_garbage() -> None:
    good = P.request(P.FrameType.IDENT, 3)
    dec = P.SlipDecoder(max_bytes=64)
    garbage = bytes([0x12, P.ESC, 0x00, 0x34]) + bytes(100)    # bad escape, then too long
    frames = dec.feed(garbage + P.slip_encode(good))
    assert frames == [good]
    assert dec.bad == 1
    frames = dec.feed(bytes(100) + bytes([P.END]) + P.slip_encode(good))
    assert frames == [good] and dec.bad == 2


def test_ops_round_trip_and_sizes() -> None:
    ops = np.array([(P.OP_WRITE, 0x1234, 0xDEADBEEF), (P.OP_READ, 0xFFFF, 0), (P.OP_WAIT, 0, 0)])
    payload = P.encode_ops(ops)
    assert len(payload) == 7 + 3 + 1
    assert P.decode_ops(payload) == [tuple(int(x) for x in op) for op in ops]


@pytest.mark.parametrize("ops, match", [
    ([(9, 0, 0)], "unknown bus op 9"),
    ([(P.OP_READ, 1 << 16, 0)], "16-bit address"),
])
def test_encode_rejects_bad_ops(ops, match: str) -> None:
    with pytest.raises(P.ProtocolError, match=match):
        P.encode_ops(np.array(ops))


@pytest.mark.parametrize("payload, match", [
    (bytes([0x07]), "unknown opcode"),
    (bytes([P.OP_WRITE, 0, 1, 2]), "cut short"),
])
def test_decode_rejects_bad_payloads(payload: bytes, match: str) -> None:
    with pytest.raises(P.ProtocolError, match=match):
        P.decode_ops(payload)


def test_split_ops_respects_both_limits() -> None:
    rng = np.random.default_rng(2)
    kinds = rng.choice([P.OP_WRITE, P.OP_READ, P.OP_WAIT], size=500)
    ops = np.stack([kinds, np.zeros(500, int), np.zeros(500, int)], axis=1)
    chunks = P.split_ops(ops, payload_bytes=50, max_reads=4)
    assert chunks[0][0] == 0 and chunks[-1][1] == 500
    for (_, e0), (s1, _) in zip(chunks, chunks[1:], strict=False):
        assert e0 == s1
    for s, e in chunks:
        assert 0 < len(P.encode_ops(ops[s:e])) <= 50
        assert np.count_nonzero(ops[s:e, 0] == P.OP_READ) <= 4
    assert P.split_ops(np.zeros((0, 3), int), 50, 4) == [(0, 0)]


class Regs:
    """A register file that counts how often it was written: enough to see double execution."""

    def __init__(self) -> None:
        self.mem: dict[int, int] = {}
        self.writes = 0

    def execute(self, ops: np.ndarray) -> np.ndarray:
        out = []
        for op, addr, word in ops.tolist():
            if op == P.OP_WRITE:
                self.mem[addr] = word
                self.writes += 1
            elif op == P.OP_READ:
                out.append(self.mem.get(addr, 0))
        return np.array(out, dtype=np.uint32)


def exec_frame(seq: int, ops) -> bytes:
    return P.request(P.FrameType.EXEC, seq, P.encode_ops(np.array(ops)))


def test_link_model_answers_and_replays_without_rerunning() -> None:
    regs = Regs()
    model = P.LinkModel(regs.execute, (1, 2, 3, 4), req_bytes=64, max_reads=4)
    ident = P.parse_response(model.handle(P.request(P.FrameType.IDENT, 9)))
    assert ident.words == (P.ident_params(64, 4), 1, 2, 3, 4, 0) and ident.seq == 9
    req = exec_frame(10, [(P.OP_WRITE, 5, 77), (P.OP_READ, 5, 0)])
    first = model.handle(req)
    assert P.parse_response(first).words == (77,)
    assert model.handle(req) == first and regs.writes == 1        # a retransmission
    assert model.handle(exec_frame(11, [(P.OP_WRITE, 5, 1)])) is not None
    assert regs.writes == 2


@pytest.mark.parametrize("frame, status", [
    (P.request(P.FrameType.IDENT, 1, version=7), P.Status.BAD_VERSION),
    (P.request(0x55, 1), P.Status.BAD_TYPE),
    (P.request(P.FrameType.EXEC, 1, bytes([P.OP_WRITE, 0])), P.Status.BAD_OPS),
    (exec_frame(1, [(P.OP_WRITE, 0, 1)] + [(P.OP_READ, 0, 0)] * 5), P.Status.TOO_MANY_READS),
])
def test_link_model_errors_run_nothing(frame: bytes, status: P.Status) -> None:
    regs = Regs()
    model = P.LinkModel(regs.execute, (1, 2, 3, 4), req_bytes=64, max_reads=4)
    resp = P.parse_response(model.handle(frame))
    assert resp.status == status and resp.words == () and regs.writes == 0


def test_link_model_drops_bad_frames() -> None:
    model = P.LinkModel(Regs().execute, (1, 2, 3, 4), req_bytes=16, max_reads=4)
    good = P.request(P.FrameType.IDENT, 1)
    corrupt = bytes([good[0] ^ 1]) + good[1:]
    too_long = exec_frame(2, [(P.OP_WAIT, 0, 0)] * 20)
    assert model.receive(P.slip_encode(corrupt) + P.slip_encode(too_long)) == b""
    assert model.dropped == 2
    assert P.parse_response(P.SlipDecoder().feed(model.receive(P.slip_encode(good)))[0]).seq == 1
