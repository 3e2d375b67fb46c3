"""BoardDevice: a host Device (bus/contract.py) that runs Programs on a board over a serial link.

The same code drives a real board (/dev/ttyUSB1) and the simulated board top behind a
pseudo-terminal (boards/board_sim.py PtyBoard). It speaks boards/protocol.py:

- on open it sends IDENT and checks the link protocol version, the accelerator's ID and
  register-map VERSION, and its array configuration against the one the host expects;
- execute() splits a Program into frames that fit the device's buffers (sizes from IDENT);
- each frame is retransmitted, with the same sequence number, after a timeout or a corrupted
  answer; the device answers a repeated sequence number from its cache, so writes never run
  twice. After `retries` retransmissions it raises DeviceError. A response is accepted only
  with a good CRC, the protocol version, the request's type and sequence number, and the
  number of words the frame's reads ask for: never a wrong result.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..bus.contract import MAGIC, VERSION, Csr, DeviceError, config0_fields
from ..bus.os_regmap import OsCsr, OsRegMap
from ..golden.config import ArrayConfig, safe_k
from ..golden.dataflows import dataflow
from . import protocol as P
from .protocol import DEFAULT_BAUD

__all__ = ["DEFAULT_BAUD", "BoardDevice", "LinkInfo", "LinkStats", "config_from_words",
           "open_serial", "store_ops"]


@dataclass
class LinkStats:
    """What the link did, and where the time of its transactions went.

    A transaction is one request and its answer; the device runs the request's operations
    (an accelerator WAIT included) between the two, so its wall time is bytes on the wire plus
    the device's work. `link_seconds` is the wire's share: the bytes both ways, 10 bits each
    at `baud`; `compute_seconds` is the rest (the device working, and USB turnaround).
    """

    baud: int = DEFAULT_BAUD
    frames: int = 0          # requests answered
    retransmits: int = 0
    timeouts: int = 0
    bad_frames: int = 0      # responses dropped for a bad CRC, escape or layout
    stale: int = 0           # good responses to an earlier request (old sequence number)
    bytes_sent: int = 0
    bytes_received: int = 0
    seconds: float = 0.0     # wall time inside transactions, retransmissions included
    # The board backend's weight mode (boards/resident.ResidentPlan), when a backend runs.
    resident: Any = None

    @property
    def link_seconds(self) -> float:
        return (self.bytes_sent + self.bytes_received) * 10 / self.baud

    @property
    def compute_seconds(self) -> float:
        return max(0.0, self.seconds - self.link_seconds)

    def as_dict(self) -> dict[str, int | float]:
        return {"baud": self.baud, "frames": self.frames, "retries": self.retransmits,
                "timeouts": self.timeouts, "bad_frames": self.bad_frames, "stale": self.stale,
                "bytes_sent": self.bytes_sent, "bytes_received": self.bytes_received,
                "link_seconds": round(self.link_seconds, 6),
                "compute_seconds": round(self.compute_seconds, 6),
                "transaction_seconds": round(self.seconds, 6),
                **(self.resident.as_dict() if self.resident is not None else {})}


@dataclass(frozen=True)
class LinkInfo:
    """What IDENT told the host."""

    req_bytes: int
    max_reads: int
    ident: int
    version: int
    config0: int
    config1: int
    store_words: int = 0     # the weight store's 32-bit words (0: the board has none)

    @property
    def payload_bytes(self) -> int:
        return self.req_bytes - P.HEADER_BYTES - P.CRC_BYTES


def store_ops(addr: int, words: np.ndarray) -> np.ndarray:
    """[n, 3] ops writing `words` into the store from `addr` on: OP_STORE, then OP_STORE_NEXT
    rows carrying the address each lands at (protocol.OP_STORE_NEXT)."""
    ops = np.empty((len(words), 3), dtype=np.int64)
    ops[:, 0] = P.OP_STORE_NEXT
    ops[:, 1] = addr + np.arange(len(words))
    ops[:, 2] = np.asarray(words, dtype=np.int64) & 0xFFFFFFFF
    if len(ops):
        ops[0, 0] = P.OP_STORE
    return ops


def config_from_words(config0: int, config1: int) -> ArrayConfig:
    """The ArrayConfig a device's CONFIG0/CONFIG1 words describe (host-side fields defaulted)."""
    f = config0_fields(config0)
    max_k = ArrayConfig().max_k
    if f["acc_overflow"] == "safe":
        max_k = min(max_k, safe_k(int(f["act_bits"]), int(f["acc_bits"])))
    return ArrayConfig(**f, act_depth=config1 & 0xFFFF, weight_tiles=config1 >> 16 & 0xFFFF,
                       max_k=max_k)


def _describe(config0: int, config1: int) -> str:
    f = config0_fields(config0)
    return (f"{f['rows']}x{f['cols']} array, act_bits={f['act_bits']}, "
            f"acc_bits={f['acc_bits']}, acc_overflow={f['acc_overflow']}, "
            f"act_depth={config1 & 0xFFFF}, weight_tiles={config1 >> 16 & 0xFFFF}")


def open_serial(port: str, baud: int):
    """Open `port` exclusively; a missing, busy or forbidden port raises DeviceError naming it."""
    import serial

    try:
        ser = serial.Serial(port, baud, timeout=0, write_timeout=5, exclusive=True)
    except serial.SerialException as exc:
        text = str(exc)
        if "No such file" in text or "Errno 2" in text:
            hint = "no such device (is the board plugged in? try --port with another path)"
        elif "exclusively lock" in text or "Resource temporarily unavailable" in text:
            hint = "the port is busy: another program has it open"
        elif "Permission denied" in text or "Errno 13" in text:
            hint = "permission denied (on Linux, add yourself to the 'dialout' group)"
        else:
            hint = text
        raise DeviceError(f"cannot open serial port {port}: {hint}") from exc
    except (OSError, ValueError) as exc:
        raise DeviceError(f"cannot open serial port {port}: {exc}") from exc
    return ser


class BoardDevice:
    """The accelerator on a board, behind a serial port (a host Device)."""

    def __init__(self, port: str, cfg: ArrayConfig | None = None, *, baud: int = DEFAULT_BAUD,
                 timeout: float = 1.0, retries: int = 5) -> None:
        """port: serial device path. cfg: the array the host expects; None takes the device's
        (read from IDENT). timeout: seconds to wait for an answer beyond the time the bytes take
        on the wire at `baud`. retries: retransmissions of one frame before giving up."""
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        if not isinstance(baud, int) or baud <= 0:
            raise ValueError(f"baud must be a positive integer, got {baud!r}")
        self.port = port
        self.baud = baud
        self.timeout = timeout
        self.retries = retries
        self.stats = LinkStats(baud=baud)
        self._seq = secrets.randbelow(1 << 16)
        self._decoder = P.SlipDecoder()
        self._ser = open_serial(port, baud)
        try:
            self._ser.reset_input_buffer()
            # Close whatever partial frame the device may hold from an earlier session.
            self._ser.write(bytes([P.END]))
            self.link = self._identify()
            self.cfg = self._check_config(cfg)
        except BaseException:
            self._ser.close()
            raise

    # --- identification ---------------------------------------------------------------------

    def _identify(self) -> LinkInfo:
        words = self._transact(P.FrameType.IDENT, b"", nwords=P.IDENT_WORDS)
        params, ident, version, c0, c1, store = words
        info = LinkInfo(req_bytes=params >> 16, max_reads=params & 0xFFFF, ident=ident,
                        version=version, config0=c0, config1=c1, store_words=store)
        if ident != MAGIC:
            raise DeviceError(f"the device on {self.port} reports ID {ident:#010x}, expected "
                              f"{MAGIC:#010x}: it is not a tritium accelerator")
        if version != VERSION:
            raise DeviceError(f"the accelerator on {self.port} has register-map version "
                              f"{version}; this host speaks {VERSION}")
        if info.payload_bytes < P.OP_BYTES[P.OP_WRITE] or info.max_reads < 1:
            raise DeviceError(f"the device on {self.port} reports unusable link buffers "
                              f"({info.req_bytes} request bytes, {info.max_reads} reads)")
        return info

    def _check_config(self, cfg: ArrayConfig | None) -> ArrayConfig:
        c0, c1 = self.link.config0, self.link.config1
        if cfg is None:
            return self._os_config() or config_from_words(c0, c1)
        want = tuple(dataflow(cfg.dataflow).load("regmap")(cfg).config_words()[:2])
        if (c0, c1) != want and cfg.dataflow != "ws":
            raise DeviceError(
                f"the board on {self.port} reports configuration words {c0:#x}, {c1:#x}; the "
                f"host expects {want[0]:#x}, {want[1]:#x} ({cfg.name()}): "
                f"rebuild and flash the board with these options, or run with the board's "
                f"configuration")
        if (c0, c1) != want:
            raise DeviceError(
                f"the board on {self.port} was built for a {_describe(c0, c1)}; the host "
                f"expects a {_describe(*want)} ({cfg.name()}): rebuild and flash the board "
                f"with these options, or run with the board's configuration")
        return cfg

    def _os_config(self) -> ArrayConfig | None:
        """The board's os array, when its top is os: IDENT's words say nothing of the dataflow
        or of max_k, so ask the DATAFLOW and CONFIG2 CSRs (boards/os_mem.py)."""
        ops = np.array([[P.OP_READ, Csr.DATAFLOW, 0], [P.OP_READ, OsCsr.CONFIG2, 0]])
        df, max_k = self._transact(P.FrameType.EXEC, P.encode_ops(ops), nwords=2)
        if df != dataflow("os").ident:
            return None
        c0, c1 = self.link.config0, self.link.config1
        cfg = ArrayConfig(rows=c0 & 0xFF, cols=c0 >> 8 & 0xFF, act_bits=c0 >> 16 & 0xFF,
                          acc_bits=c0 >> 24 & 0xFF, dataflow="os", max_k=max_k,
                          dram_bytes_per_cycle=c1 & 0xFFFF, dram_words=1 << (c1 >> 16 & 0xFF),
                          weight_packing="base3" if c1 >> 24 & 1 else "2bit")
        # The same memory sized automatically is the same device; keep the simpler config.
        auto = replace(cfg, dram_words=0)
        return auto if OsRegMap(auto).dram_words == cfg.dram_words else cfg

    # --- the Device interface ----------------------------------------------------------------

    def execute(self, ops: np.ndarray) -> np.ndarray:
        ops = np.asarray(ops, dtype=np.int64).reshape(-1, 3)
        out: list[int] = []
        for start, end in P.split_ops(ops, self.link.payload_bytes, self.link.max_reads):
            chunk = P.with_leading_store(ops[start:end])
            nreads = int(P.op_reads(chunk).sum())
            out.extend(self._transact(P.FrameType.EXEC, P.encode_ops(chunk), nwords=nreads))
        return np.array(out, dtype=np.uint32)

    def store(self, addr: int, words: np.ndarray) -> None:
        """Write `words` into the board's weight store from word `addr` on: one OP_STORE, then
        OP_STORE_NEXT (5 bytes a word on the wire; each frame starts with an OP_STORE)."""
        words = np.asarray(words, dtype=np.int64).ravel()
        if addr < 0 or addr + len(words) > self.link.store_words:
            raise DeviceError(f"store words {addr}..{addr + len(words) - 1} do not fit the "
                              f"{self.link.store_words}-word weight store of the board on "
                              f"{self.port}")
        self.execute(store_ops(addr, words))

    def close(self) -> None:
        if self._ser is not None:
            self._ser.close()
            self._ser = None

    def __enter__(self) -> BoardDevice:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- one request, with retransmission ------------------------------------------------------

    def _transact(self, ftype: P.FrameType, payload: bytes, nwords: int) -> tuple[int, ...]:
        if self._ser is None:
            raise DeviceError(f"the board on {self.port} is closed")
        self._seq = (self._seq + 1) & 0xFFFF
        seq = self._seq
        wire = P.slip_encode(P.request(ftype, seq, payload))
        # Bytes on the wire both ways (escapes at most double the answer), 10 bits per byte.
        answer_bytes = 2 * (P.RESP_HEADER_BYTES + 4 * nwords + P.CRC_BYTES) + 2
        wait = self.timeout + (len(wire) + answer_bytes) * 10 / self.baud
        problems: list[str] = []
        start = time.perf_counter()
        try:
            for attempt in range(self.retries + 1):
                if attempt:
                    self.stats.retransmits += 1
                try:
                    self._ser.write(wire)
                    self._ser.flush()
                except Exception as exc:  # noqa: BLE001 - pyserial raises several unrelated types
                    raise DeviceError(f"writing to serial port {self.port} failed: {exc}") from exc
                self.stats.bytes_sent += len(wire)
                words, problem = self._await(ftype, seq, nwords, time.monotonic() + wait)
                if words is not None:
                    self.stats.frames += 1
                    return words
                problems.append(problem)
        finally:
            self.stats.seconds += time.perf_counter() - start
        summary = ", ".join(f"{problems.count(p)} x {p}" for p in dict.fromkeys(problems))
        raise DeviceError(
            f"no valid answer from the board on {self.port} to {ftype.name} frame {seq} after "
            f"{self.retries + 1} attempts ({summary}); check the cable, the baud rate "
            f"({self.baud}) and that the board is programmed with a tritium bitstream")

    def _await(self, ftype: int, seq: int, nwords: int,
               deadline: float) -> tuple[tuple[int, ...] | None, str]:
        """Read until the answer to (ftype, seq) arrives, a corrupted frame does (the device
        has then finished answering, so retransmitting at once beats waiting), or the deadline."""
        ser = self._ser
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.stats.timeouts += 1
                return None, "timeout"
            ser.timeout = min(left, 0.05)
            try:
                data = ser.read(max(1, ser.in_waiting))
            except Exception as exc:  # noqa: BLE001
                raise DeviceError(f"reading serial port {self.port} failed: {exc}") from exc
            self.stats.bytes_received += len(data)
            bad_before = self._decoder.bad
            frames = self._decoder.feed(data)
            if self._decoder.bad != bad_before:
                self.stats.bad_frames += self._decoder.bad - bad_before
                return None, "corrupted answer"
            for frame in frames:
                try:
                    resp = P.parse_response(frame)
                except P.ProtocolError:
                    self.stats.bad_frames += 1
                    return None, "corrupted answer"
                if resp.version != P.PROTOCOL_VERSION:
                    raise DeviceError(
                        f"the board on {self.port} speaks link protocol version "
                        f"{resp.version}; this host speaks {P.PROTOCOL_VERSION}: update tritium "
                        "or rebuild the bitstream with this version")
                if resp.seq != seq or resp.ftype != ftype:
                    self.stats.stale += 1
                    continue
                if resp.status != P.Status.OK:
                    try:
                        name = P.Status(resp.status).name
                    except ValueError:
                        name = f"status {resp.status}"
                    raise DeviceError(f"the board on {self.port} refused {ftype.name} frame "
                                      f"{seq}: {name}")
                if len(resp.words) != nwords:
                    raise DeviceError(f"the board on {self.port} answered {len(resp.words)} "
                                      f"words to {ftype.name} frame {seq}, expected {nwords}")
                return resp.words, ""
