"""The host link protocol, specified in Python: the golden model of boards/link.py's hardware.

See boards/PROTOCOL.md for the prose. In short: SLIP-framed (RFC 1055) frames over an 8N1
UART; every frame is

    version:u8  type:u8  seq:u16  [status:u8 (responses only)]  payload  crc:u16

with every multi-byte field big-endian and the CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF,
no reflection, no final XOR) of all bytes before it. Big-endian CRC means the CRC of a whole
good frame is 0, which is how the hardware checks it without knowing where the frame ends.

Requests: IDENT (no payload) and EXEC (a host/driver.py Program encoded as ops, plus the
link's own ops: block reads and the weight store's, below). The device
answers each good request once, with the same seq and type | 0x80; it keeps its last response
and re-sends it, without running anything, when an EXEC arrives with the same seq again (IDENT,
which changes nothing, always runs afresh), so a
retransmitted request never runs its writes twice. Frames with a bad CRC, a bad escape, or
more bytes than the device's request buffer are dropped without an answer.

`LinkModel` is the device side in Python (the expectation the RTL bench compares against, and a
stand-in device for host tests); `SlipDecoder`, `request`, `parse_response` and `split_ops` are
what the host (boards/host.py) uses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from ..bus.contract import CTRL_START, OP_READ, OP_WAIT, OP_WRITE, OPS
from ..bus.ws_regmap import CTRL_ACCUMULATE, Csr, WsRegMap

# 2: IDENT answers a sixth word (the weight store's size) and EXEC knows the store ops.
PROTOCOL_VERSION = 2
# The line rate both ends use unless told otherwise: every board's default (boards/platforms.py),
# exact on both board clocks (12 MHz / 12, 25 MHz / 25) and well inside both USB bridges.
DEFAULT_BAUD = 1_000_000

# SLIP (RFC 1055)
END = 0xC0
ESC = 0xDB
ESC_END = 0xDC
ESC_ESC = 0xDD

HEADER_BYTES = 4        # version, type, seq (2)
RESP_HEADER_BYTES = 5   # ... and status
CRC_BYTES = 2
RESPONSE = 0x80         # set in the type byte of every response

# Op encodings in an EXEC payload: the bus contract's op codes (bus/contract.py), then
#   OP_WRITE addr:u16 word:u32;  OP_READ addr:u16 -> one u32 word in the response;
#   OP_WAIT (until the accelerator is not busy)
ADDR_BITS = 16          # address field width: boards.top rejects wider register maps

# Link ops beyond the bus contract's (PROTOCOL.md, "Link ops"). They are the link's business,
# not the bus's, so they live here and not in bus/contract.OPS (which the C++ harness mirrors).
# In a host op list [op, addr, word]:
#   OP_READ_BLOCK (op, bus address, n)        20 addr:u16 n:u8       n bus reads from addr up
#   OP_STORE      (op, store address, word)   10 addr:u24 word:u32   store[addr] = word
#   OP_STORE_NEXT (op, store address, word)   11 word:u32            store[last + 1] = word, after
#       a STORE in the same frame; the row's address (last + 1) is not sent, but lets a frame
#       that would start with it start with an OP_STORE instead (split_ops, BoardDevice)
#   OP_STORE_READ (op, store address, 0)      12 addr:u24            store[addr] into the answer
#   OP_RUN_TILE   (op, store address, flags)  13 addr:u24 flags:u8   copy the tile at addr into
#       weight slot flags & 0x7F, then W_TILE = slot, CTRL = start (| accumulate if flags bit 7),
#       and wait until the accelerator is idle
#   OP_LOAD_ACTS  (op, store address, m)      15 addr:u24 m:u8       copy m activation rows
#       (m x act_words words) from the store into activation entries 0..m-1
OP_READ_BLOCK = 0x20
OP_STORE = 0x10
OP_STORE_NEXT = 0x11
OP_STORE_READ = 0x12
OP_RUN_TILE = 0x13
OP_LOAD_ACTS = 0x15
STORE_OPS = {"OP_STORE": OP_STORE, "OP_STORE_NEXT": OP_STORE_NEXT,
             "OP_STORE_READ": OP_STORE_READ, "OP_RUN_TILE": OP_RUN_TILE,
             "OP_LOAD_ACTS": OP_LOAD_ACTS}
LINK_OPS = {"OP_READ_BLOCK": OP_READ_BLOCK, **STORE_OPS}
assert not set(LINK_OPS.values()) & set(OPS.values()), "link ops collide with bus ops"
STORE_ADDR_BITS = 24
RUN_ACCUMULATE = 0x80   # OP_RUN_TILE flags: accumulate into the output buffer
RUN_SLOT_MASK = 0x7F
OP_BYTES = {OP_WRITE: 7, OP_READ: 3, OP_WAIT: 1, OP_READ_BLOCK: 4,
            OP_STORE: 8, OP_STORE_NEXT: 5, OP_STORE_READ: 4, OP_RUN_TILE: 5, OP_LOAD_ACTS: 5}
_ADDR16 = (OP_WRITE, OP_READ, OP_READ_BLOCK)
_ADDR24 = (OP_STORE, OP_STORE_READ, OP_RUN_TILE, OP_LOAD_ACTS)
_WORD32 = (OP_WRITE, OP_STORE, OP_STORE_NEXT)
_BYTE8 = (OP_READ_BLOCK, OP_RUN_TILE, OP_LOAD_ACTS)


def op_reads(ops: np.ndarray) -> np.ndarray:
    """Words each op of an [n, 3] op list puts into the answer."""
    ops = np.asarray(ops, dtype=np.int64).reshape(-1, 3)
    kind = ops[:, 0]
    return np.where((kind == OP_READ) | (kind == OP_STORE_READ), 1,
                    np.where(kind == OP_READ_BLOCK, ops[:, 2], 0))


class FrameType(IntEnum):
    IDENT = 0x01
    EXEC = 0x02


class Status(IntEnum):
    OK = 0
    BAD_VERSION = 1      # the request's version byte is not the device's PROTOCOL_VERSION
    BAD_TYPE = 2         # unknown frame type
    BAD_OPS = 3          # unknown opcode, or an op cut short by the end of the frame
    TOO_MANY_READS = 4   # more reads than the response buffer holds; nothing was run


class ProtocolError(ValueError):
    """A frame or op list that does not follow the protocol."""


def crc16(data: Iterable[int], crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE; crc16(b"123456789") == 0x29B1."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def with_crc(body: bytes) -> bytes:
    return body + crc16(body).to_bytes(2, "big")


def slip_encode(frame: bytes) -> bytes:
    """END, the frame with END/ESC escaped, END. The leading END ends any garbage the far side
    may have buffered, so the frame itself always starts clean."""
    out = bytearray([END])
    for b in frame:
        if b == END:
            out += bytes([ESC, ESC_END])
        elif b == ESC:
            out += bytes([ESC, ESC_ESC])
        else:
            out.append(b)
    out.append(END)
    return bytes(out)


@dataclass
class SlipDecoder:
    """Byte-at-a-time SLIP decoder that survives garbage.

    Yields every non-empty run of bytes between two ENDs; a run with an invalid escape or
    longer than `max_bytes` is counted in `bad` and not yielded.
    """

    max_bytes: int | None = None
    bad: int = 0
    _buf: bytearray = field(default_factory=bytearray)
    _esc: bool = False
    _broken: bool = False

    def feed(self, data: bytes) -> list[bytes]:
        frames = []
        for b in data:
            if b == END:
                if self._broken:
                    self.bad += 1
                elif self._buf:
                    frames.append(bytes(self._buf))
                self._buf.clear()
                self._esc = self._broken = False
                continue
            if self._esc:
                self._esc = False
                if b == ESC_END:
                    b = END
                elif b == ESC_ESC:
                    b = ESC
                else:
                    self._broken = True
            elif b == ESC:
                self._esc = True
                continue
            if self.max_bytes is not None and len(self._buf) >= self.max_bytes:
                self._broken = True
            if not self._broken:
                self._buf.append(b)
        return frames


def encode_ops(ops: np.ndarray) -> bytes:
    """EXEC payload for an [n, 3] host op list (bus ops and the link's own ops)."""
    out = bytearray()
    for op, addr, word in np.asarray(ops, dtype=np.int64).reshape(-1, 3).tolist():
        if op not in OP_BYTES:
            raise ProtocolError(f"unknown bus op {op}; expected one of "
                                f"{', '.join(str(o) for o in OP_BYTES)} (bus and link ops)")
        out.append(op)
        if op in _ADDR16:
            if not 0 <= addr < 1 << ADDR_BITS:
                raise ProtocolError(f"bus address {addr:#x} does not fit the link's "
                                    f"{ADDR_BITS}-bit address field")
            out += addr.to_bytes(2, "big")
        elif op in _ADDR24:
            if not 0 <= addr < 1 << STORE_ADDR_BITS:
                raise ProtocolError(f"store address {addr:#x} does not fit the link's "
                                    f"{STORE_ADDR_BITS}-bit store address field")
            out += addr.to_bytes(3, "big")
        if op in _WORD32:
            out += (word & 0xFFFFFFFF).to_bytes(4, "big")
        elif op in _BYTE8:
            if not 0 <= word <= 0xFF:
                raise ProtocolError(f"op {op:#04x}: its count or flags {word:#x} do not fit "
                                    f"a byte")
            out.append(word)
    return bytes(out)


def decode_ops(payload: bytes) -> list[tuple[int, int, int]]:
    """Inverse of encode_ops (OP_STORE_NEXT's address, not sent, decodes as 0); raises
    ProtocolError as the device would answer BAD_OPS."""
    ops, i = [], 0
    while i < len(payload):
        op = payload[i]
        size = OP_BYTES.get(op)
        if size is None:
            raise ProtocolError(f"unknown opcode {op:#04x} at payload byte {i}")
        if i + size > len(payload):
            raise ProtocolError(f"op {op} at payload byte {i} is cut short by the frame end")
        body = payload[i + 1 : i + size]
        addr = word = 0
        if op in _ADDR16:
            addr = int.from_bytes(body[:2], "big")
        elif op in _ADDR24:
            addr = int.from_bytes(body[:3], "big")
        if op in _WORD32:
            word = int.from_bytes(body[-4:], "big")
        elif op in _BYTE8:
            word = body[-1]
        ops.append((op, addr, word))
        i += size
    return ops


def split_ops(ops: np.ndarray, payload_bytes: int, max_reads: int) -> list[tuple[int, int]]:
    """[start, end) op ranges, in order, each of which fits one EXEC frame: at most
    `payload_bytes` of encoded ops and `max_reads` answer words. An OP_STORE_NEXT that starts
    a frame is sent as an OP_STORE (with_leading_store), and its size counted so."""
    ops = np.asarray(ops, dtype=np.int64).reshape(-1, 3)
    kinds = ops[:, 0].tolist()
    nreads = op_reads(ops).tolist()
    chunks, start, size, reads = [], 0, 0, 0
    for i, op in enumerate(kinds):
        n = OP_BYTES.get(op)
        if n is None:
            raise ProtocolError(f"unknown bus op {op} at op {i}")
        r = nreads[i]
        if r > max_reads:
            raise ProtocolError(f"op {i} reads {r} words; a frame answers at most {max_reads}")
        if size + n > payload_bytes or reads + r > max_reads:
            chunks.append((start, i))
            start, size, reads = i, 0, 0
            if op == OP_STORE_NEXT:
                n = OP_BYTES[OP_STORE]
        size += n
        reads += r
    if start < len(kinds) or not chunks:
        chunks.append((start, len(kinds)))
    return chunks


def with_leading_store(chunk: np.ndarray) -> np.ndarray:
    """A frame's ops with a leading OP_STORE_NEXT turned into the OP_STORE it stands for."""
    if len(chunk) and chunk[0, 0] == OP_STORE_NEXT:
        chunk = chunk.copy()
        chunk[0, 0] = OP_STORE
    return chunk


def request(ftype: int, seq: int, payload: bytes = b"",
            version: int = PROTOCOL_VERSION) -> bytes:
    """An unstuffed request frame with its CRC."""
    return with_crc(bytes([version, ftype]) + (seq & 0xFFFF).to_bytes(2, "big") + payload)


def response(ftype: int, seq: int, status: int, words: Iterable[int] = ()) -> bytes:
    body = bytes([PROTOCOL_VERSION, (ftype | RESPONSE) & 0xFF]) + seq.to_bytes(2, "big")
    body += bytes([status]) + b"".join((w & 0xFFFFFFFF).to_bytes(4, "big") for w in words)
    return with_crc(body)


@dataclass(frozen=True)
class Response:
    version: int
    ftype: int          # the request type this answers (RESPONSE bit cleared)
    seq: int
    status: int
    words: tuple[int, ...]


def parse_response(frame: bytes) -> Response:
    """Check length, CRC and layout of a response frame; raises ProtocolError naming the fault.

    The version is returned, not checked: the caller decides what a mismatch means.
    """
    if len(frame) < RESP_HEADER_BYTES + CRC_BYTES:
        raise ProtocolError(f"response of {len(frame)} bytes is shorter than a header and CRC")
    if crc16(frame) != 0:
        raise ProtocolError("response CRC mismatch")
    body = frame[RESP_HEADER_BYTES:-CRC_BYTES]
    if frame[1] & RESPONSE == 0:
        raise ProtocolError(f"frame type {frame[1]:#04x} is not a response")
    if len(body) % 4:
        raise ProtocolError(f"response payload of {len(body)} bytes is not whole words")
    words = tuple(int.from_bytes(body[i : i + 4], "big") for i in range(0, len(body), 4))
    return Response(frame[0], frame[1] & ~RESPONSE & 0xFF, int.from_bytes(frame[2:4], "big"),
                    frame[4], words)


IDENT_WORDS = 6    # buffer sizes, ID, VERSION, CONFIG0, CONFIG1, store words


def ident_params(req_bytes: int, max_reads: int) -> int:
    """First word of an IDENT response: the device's buffer sizes."""
    return (req_bytes & 0xFFFF) << 16 | (max_reads & 0xFFFF)


def run_tile_ops(regmap: WsRegMap, words: np.ndarray, flags: int) -> np.ndarray:
    """The bus ops OP_RUN_TILE stands for: `words` (a tile as the store holds it) into slot
    flags & RUN_SLOT_MASK, W_TILE, CTRL start (accumulating if flags & RUN_ACCUMULATE), WAIT."""
    slot = flags & RUN_SLOT_MASK
    ops = np.zeros((len(words) + 3, 3), dtype=np.int64)
    ops[: len(words), 0] = OP_WRITE
    ops[: len(words), 1] = regmap.weight_addrs(slot)
    ops[: len(words), 2] = words
    ops[-3] = (OP_WRITE, regmap.csr(Csr.W_TILE), slot)
    ops[-2] = (OP_WRITE, regmap.csr(Csr.CTRL),
               CTRL_START | (CTRL_ACCUMULATE if flags & RUN_ACCUMULATE else 0))
    ops[-1] = (OP_WAIT, 0, 0)
    return ops


def tile_words(regmap: WsRegMap) -> int:
    """Store words one weight tile takes: its rows of weight-buffer words, as the bus writes
    them (WsRegMap.weight_words_of(...).ravel())."""
    return regmap.cfg.rows * regmap.weight_words


def check_store_ops(ops: list[tuple[int, int, int]], store_words: int,
                    regmap: WsRegMap | None) -> str | None:
    """Why the store ops of one frame cannot run (None: they can); the device answers BAD_OPS.

    Every store address must fall inside the store (a board without one has store_words 0),
    an OP_STORE_NEXT must follow an OP_STORE of the same frame and stay inside, a tile or
    activation block must lie wholly inside the store, a tile name a weight slot the array has,
    and activation rows number 1..act_depth. A block read reads 1 or more words below 2**16."""
    last = None
    for i, (op, addr, word) in enumerate(ops):
        if op == OP_READ_BLOCK:
            if word == 0 or addr + word > 1 << ADDR_BITS:
                return f"op {i}: block read of {word} words from {addr:#x}"
        elif op in STORE_OPS.values() and store_words == 0:
            return f"op {i}: the board has no weight store"
        elif op == OP_STORE:
            if addr >= store_words:
                return f"op {i}: store address {addr} outside the {store_words}-word store"
            last = addr
        elif op == OP_STORE_NEXT:
            if last is None or last + 1 >= store_words:
                return f"op {i}: OP_STORE_NEXT without a store word before it in the store"
            last += 1
        elif op == OP_STORE_READ:
            if addr >= store_words:
                return f"op {i}: store address {addr} outside the {store_words}-word store"
        elif op == OP_RUN_TILE:
            if regmap is None or addr + tile_words(regmap) > store_words:
                return f"op {i}: tile at {addr} outside the {store_words}-word store"
            if word & RUN_SLOT_MASK >= regmap.cfg.weight_tiles:
                return f"op {i}: weight slot {word & RUN_SLOT_MASK} is not in the array"
        elif op == OP_LOAD_ACTS:
            if regmap is None or not 1 <= word <= regmap.cfg.act_depth:
                return f"op {i}: {word} activation rows (1..act_depth)"
            if addr + word * regmap.act_words > store_words:
                return f"op {i}: activations at {addr} outside the {store_words}-word store"
    return None


@dataclass
class LinkModel:
    """The device side of the link in Python: what boards/link.py's LinkController must do.

    execute(ops) runs a bus op list on an accelerator and returns the read words (any host
    Device does); ident_words are the accelerator's ID, VERSION, CONFIG0 and CONFIG1 CSRs.
    store_words: the weight store's size (0: none); regmap: the accelerator's register map,
    which OP_RUN_TILE needs to know where a tile goes.
    """

    execute: Callable[[np.ndarray], np.ndarray]
    ident_words: tuple[int, int, int, int]
    req_bytes: int = 512
    max_reads: int = 64
    store_words: int = 0
    regmap: WsRegMap | None = None
    dropped: int = 0
    _decoder: SlipDecoder = field(init=False)
    _store: np.ndarray = field(init=False)
    _last_key: tuple[int, int] | None = None
    _last: bytes = b""

    def __post_init__(self) -> None:
        self._decoder = SlipDecoder(max_bytes=self.req_bytes)
        self._store = np.zeros(self.store_words, dtype=np.uint32)

    def receive(self, data: bytes) -> bytes:
        """Feed bytes from the host; returns the bytes the device sends back."""
        out = b""
        bad_before = self._decoder.bad
        for frame in self._decoder.feed(data):
            reply = self.handle(frame)
            if reply is not None:
                out += slip_encode(reply)
        self.dropped += self._decoder.bad - bad_before
        return out

    def handle(self, frame: bytes) -> bytes | None:
        """The unstuffed response to one unstuffed request frame, or None if it is dropped."""
        if len(frame) < HEADER_BYTES + CRC_BYTES or crc16(frame) != 0:
            self.dropped += 1
            return None
        version, ftype, seq = frame[0], frame[1], int.from_bytes(frame[2:4], "big")
        payload = frame[HEADER_BYTES:-CRC_BYTES]
        if version != PROTOCOL_VERSION:
            reply = response(ftype, seq, Status.BAD_VERSION)
        elif ftype == FrameType.IDENT:
            words = [ident_params(self.req_bytes, self.max_reads), *self.ident_words,
                     self.store_words]
            reply = response(ftype, seq, Status.OK, words)
        elif ftype == FrameType.EXEC:
            if (seq, ftype) == self._last_key:
                return self._last
            try:
                ops = decode_ops(payload)
            except ProtocolError:
                reply = response(ftype, seq, Status.BAD_OPS)
            else:
                if check_store_ops(ops, self.store_words, self.regmap) is not None:
                    reply = response(ftype, seq, Status.BAD_OPS)
                elif sum(op_reads(np.array(ops, dtype=np.int64).reshape(-1, 3))) \
                        > self.max_reads:
                    reply = response(ftype, seq, Status.TOO_MANY_READS)
                else:
                    reply = response(ftype, seq, Status.OK, self._run(ops))
        else:
            reply = response(ftype, seq, Status.BAD_TYPE)
        self._last_key, self._last = (seq, ftype), reply
        return reply

    def _run(self, ops: list[tuple[int, int, int]]) -> list[int]:
        """Run a checked op list in order: bus ops on the accelerator, store ops here."""
        out: list[int] = []
        bus: list[np.ndarray] = []

        def flush() -> None:
            if bus:
                out.extend(int(w) for w in self.execute(np.concatenate(bus)))
                bus.clear()

        last = 0
        for op, addr, word in ops:
            if op == OP_STORE:
                self._store[addr] = word
                last = addr
            elif op == OP_STORE_NEXT:
                last += 1
                self._store[last] = word
            elif op == OP_STORE_READ:
                flush()
                out.append(int(self._store[addr]))
            elif op == OP_RUN_TILE:
                assert self.regmap is not None
                words = self._store[addr : addr + tile_words(self.regmap)]
                bus.append(run_tile_ops(self.regmap, words, word))
            elif op == OP_LOAD_ACTS:
                assert self.regmap is not None
                words = self._store[addr : addr + word * self.regmap.act_words]
                bus.append(np.stack([np.full(len(words), OP_WRITE),
                                     self.regmap.act_addrs(word), words], axis=1))
            elif op == OP_READ_BLOCK:
                bus.append(np.stack([np.full(word, OP_READ), np.arange(addr, addr + word),
                                     np.zeros(word, dtype=np.int64)], axis=1))
            else:
                bus.append(np.array([[op, addr, word]], dtype=np.int64))
        flush()
        return out
