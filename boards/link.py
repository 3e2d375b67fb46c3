"""The device side of the host link in Amaranth: boards/protocol.py (the golden) in hardware.

LinkController sits between the UART byte streams and the accelerator's bus. It buffers a whole
request frame before acting on it, because the CRC comes last and a frame must never run
a single write unless all of it arrived intact. An EXEC frame is then walked twice: a dry pass
that checks every op is well formed and counts reads against the response buffer, and a live
pass that drives the bus. Only a frame that passes the dry pass touches the accelerator, so a
malformed frame answers an error with nothing run.

The response is built in a word buffer and kept there: a retransmitted EXEC (same seq and type
as the last good frame) is answered from it without running anything again.

With LinkParams.store_words > 0 the controller also owns a weight store (boards/store.py) and
runs the link's store ops (PROTOCOL.md, "Resident weights"): it fills and reads the store, and
copies a tile or activation rows from it onto the accelerator's bus one word a cycle, so a
resident tile costs the link 10 bytes instead of a bus write per word.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..bus.contract import CTRL_START, Region, RegMapBase
from ..bus.ws_regmap import CTRL_ACCUMULATE, Csr, WsRegMap
from ..golden.config import ArrayConfig
from ..golden.dataflows import dataflow
from ..hdl.top import bus_signature
from . import protocol as P


@dataclass(frozen=True)
class LinkParams:
    """Buffer sizes of the device side, reported to the host in the IDENT response.

    req_bytes: the request buffer, a whole unstuffed frame (header, ops, CRC); a longer frame is
    dropped. max_reads: response buffer words, the most reads one EXEC frame may carry.
    The defaults fill two 4 kbit iCE40 block RAMs each: small next to the accelerator's buffers.
    """

    req_bytes: int = 1024
    max_reads: int = 256
    # 32-bit words of the weight store (boards/store.py; 0: none). Boards take the size their
    # memory has room for (store.store_budget), reported to the host in IDENT.
    store_words: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.store_words < 1 << P.STORE_ADDR_BITS:
            raise ValueError(f"LinkParams.store_words must be in 0..{(1 << P.STORE_ADDR_BITS) - 1}"
                             f", got {self.store_words}")
        if not P.HEADER_BYTES + P.CRC_BYTES + 7 <= self.req_bytes <= 0xFFFF:
            raise ValueError(f"LinkParams.req_bytes must be in {P.HEADER_BYTES + P.CRC_BYTES + 7}"
                             f"..65535 (room for one write op), got {self.req_bytes}")
        if not 1 <= self.max_reads <= 0xFFFF:
            raise ValueError(f"LinkParams.max_reads must be in 1..65535, got {self.max_reads}")

    @property
    def payload_bytes(self) -> int:
        return self.req_bytes - P.HEADER_BYTES - P.CRC_BYTES


def _crc16_taps() -> list[tuple[list[int], list[int]]]:
    """For each bit of the next CRC, the CRC bits and byte bits whose XOR it is.

    One CRC step is linear over GF(2) in (crc, byte), so feeding unit vectors through the
    Python reference finds the taps; the hardware is then one XOR tree per bit instead of eight
    chained shift stages.
    """
    def step(crc: int, byte: int) -> int:
        return P.crc16([byte], crc)

    taps = []
    for j in range(16):
        c_bits = [i for i in range(16) if step(1 << i, 0) >> j & 1]
        b_bits = [i for i in range(8) if step(0, 1 << i) >> j & 1]
        taps.append((c_bits, b_bits))
    return taps


_CRC_TAPS = _crc16_taps()


def crc16_step(crc, byte):
    """CRC-16/CCITT-FALSE after one more byte, as combinational logic."""
    bits = []
    for c_bits, b_bits in _CRC_TAPS:
        terms = [crc[i] for i in c_bits] + [byte[i] for i in b_bits]
        x = terms[0]
        for t in terms[1:]:
            x = x ^ t
        bits.append(x)
    return Cat(*bits)


# What the transmit side hands the SLIP encoder: a data byte, or a raw END delimiter.
TxSymbol = data.StructLayout({"byte": 8, "end": 1})


class SlipEncoder(wiring.Component):
    """Escapes END and ESC data bytes into two-byte sequences; passes `end` symbols as a raw END.

    The input symbol is consumed together with the ESC, and the escape code goes out next, so
    the producer never has to hold a byte for two output cycles.
    """

    def __init__(self) -> None:
        super().__init__({
            "i": In(stream.Signature(TxSymbol)),
            "o": Out(stream.Signature(8)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        second = Signal()
        code = Signal(8)
        sym = self.i.payload
        special = (sym.byte == P.END) | (sym.byte == P.ESC)
        with m.If(second):
            m.d.comb += [self.o.payload.eq(code), self.o.valid.eq(1)]
            with m.If(self.o.ready):
                m.d.sync += second.eq(0)
        with m.Else():
            m.d.comb += [
                self.o.valid.eq(self.i.valid),
                self.i.ready.eq(self.o.ready),
                self.o.payload.eq(Mux(sym.end, P.END, Mux(special, P.ESC, sym.byte))),
            ]
            with m.If(self.i.valid & self.o.ready & ~sym.end & special):
                m.d.sync += [second.eq(1),
                             code.eq(Mux(sym.byte == P.END, P.ESC_END, P.ESC_ESC))]
        return m


class _Copy:
    """Registers of a copy from the store onto the bus (OP_RUN_TILE's weight tile, OP_LOAD_ACTS'
    activation rows), and of OP_READ_BLOCK."""

    def __init__(self, rm: RegMapBase, store_bits: int) -> None:
        # The store word to fetch next; OP_READ_BLOCK's next bus address.
        self.next = Signal(max(store_bits + 1, P.ADDR_BITS))
        self.slot = Signal(7)
        self.acc = Signal()
        self.rows = Signal(8)        # OP_LOAD_ACTS: activation rows; OP_READ_BLOCK: words left
        self.r = Signal(range(max(rm.cfg.rows, rm.cfg.act_depth, 2)))
        # Only ws boards have a store to copy tiles from; every board reads blocks.
        words = (rm.weight_words, rm.act_words) if isinstance(rm, WsRegMap) else ()
        self.j = Signal(range(max((*words, 2))))


def _store_fields(op, operand, store_bits: int):
    """Store address (its low store_bits), whether its high bits are set (then it is outside
    the store), data word and run flags of a store op's operand bytes."""
    saddr = Mux(op == P.OP_STORE, operand[32:56],
                Mux((op == P.OP_RUN_TILE) | (op == P.OP_LOAD_ACTS), operand[8:32],
                    operand[0:24]))
    high = saddr[store_bits:].any() if store_bits < P.STORE_ADDR_BITS else Const(0, 1)
    return saddr[:store_bits], high, operand[0:32], operand[0:8]


class LinkController(wiring.Component):
    """Receives SLIP frames from `rx`, runs them on `bus`, answers on `tx` (boards/PROTOCOL.md).

    `rx_error` (the UART's framing error) spoils the frame being received. Bytes that arrive
    while a frame is being run or answered are lost; losing any byte other than END spoils the
    frame it belongs to, so the device resynchronises at the next END whatever it missed.
    `frames` toggles for each good frame (a board shows it on an LED).
    """

    def __init__(self, cfg: ArrayConfig, params: LinkParams | None = None) -> None:
        self.cfg = cfg
        self.params = params or LinkParams()
        self.map = dataflow(cfg.dataflow).load("regmap")(cfg)
        if self.map.addr_bits > P.ADDR_BITS:
            raise ValueError(
                f"the {cfg.name()} register map needs {self.map.addr_bits} address bits; the "
                f"link carries {P.ADDR_BITS} (lower act_depth or weight_tiles; os: max_k or "
                f"dram_words)")
        super().__init__({
            "rx": In(stream.Signature(8)),
            "rx_error": In(1),
            "tx": Out(stream.Signature(8)),
            "bus": Out(bus_signature(self.map.addr_bits)),
            "acc_busy": In(1),
            "frames": Out(1),
        })

    def _store_op(self, m, store, rm, tile_words, op, operand, live, count, sptr, sptr_ok,
                  copy, answer) -> None:
        """DO for a store op: the dry pass checks it against the store (PROTOCOL.md), the live
        pass writes or reads the store, or starts OP_RUN_TILE's copy."""
        words = self.params.store_words
        saddr, high, word, flags = _store_fields(op, operand, len(sptr))
        slot = flags[:7]
        bad = Signal()
        with m.Switch(op):
            with m.Case(P.OP_STORE, P.OP_STORE_READ):
                m.d.comb += bad.eq(high | (saddr >= words))
            with m.Case(P.OP_STORE_NEXT):
                m.d.comb += bad.eq(~sptr_ok | (sptr + 1 >= words))
            with m.Case(P.OP_RUN_TILE):
                m.d.comb += bad.eq(high | (saddr + tile_words > words)
                                   | (slot >= rm.cfg.weight_tiles))
            with m.Case(P.OP_LOAD_ACTS):
                rows = flags
                m.d.comb += bad.eq(high | (rows == 0) | (rows > rm.cfg.act_depth)
                                   | (saddr + rows * rm.act_words > words))
            with m.Default():
                m.d.comb += bad.eq(1)
        with m.If(bad):
            m.d.sync += answer(P.Status.BAD_OPS)
            m.next = "SEND"
        with m.Else():
            m.next = "FETCH"
            with m.Switch(op):
                with m.Case(P.OP_STORE):
                    m.d.sync += [sptr.eq(saddr), sptr_ok.eq(1)]
                    with m.If(live):
                        m.d.comb += [store.addr.eq(saddr), store.wdata.eq(word),
                                     store.we.eq(1)]
                with m.Case(P.OP_STORE_NEXT):
                    m.d.sync += sptr.eq(sptr + 1)
                    with m.If(live):
                        m.d.comb += [store.addr.eq(sptr + 1), store.wdata.eq(word),
                                     store.we.eq(1)]
                with m.Case(P.OP_STORE_READ):
                    with m.If(live):
                        m.d.comb += store.addr.eq(saddr)
                        m.next = "STORE_RDATA"
                    with m.Else():
                        count(1)
                with m.Case(P.OP_RUN_TILE), m.If(live):
                    m.d.comb += store.addr.eq(saddr)
                    m.d.sync += [copy.next.eq(saddr + 1), copy.slot.eq(slot),
                                 copy.acc.eq(flags[7]), copy.r.eq(0), copy.j.eq(0)]
                    m.next = "COPY"
                with m.Case(P.OP_LOAD_ACTS), m.If(live):
                    m.d.comb += store.addr.eq(saddr)
                    m.d.sync += [copy.next.eq(saddr + 1), copy.rows.eq(flags),
                                 copy.r.eq(0), copy.j.eq(0)]
                    m.next = "COPY_ACTS"

    def _read_block_op(self, m, operand, live, count, copy, answer) -> None:
        """DO for OP_READ_BLOCK: the dry pass counts its words, the live pass reads them."""
        baddr, n = operand[8:24], operand[0:8]
        with m.If((n == 0) | (baddr + n > 1 << P.ADDR_BITS)):
            m.d.sync += answer(P.Status.BAD_OPS)
            m.next = "SEND"
        with m.Elif(~live):
            count(n)
            m.next = "FETCH"
        with m.Else():
            m.d.sync += [copy.next.eq(baddr), copy.rows.eq(n)]
            m.next = "BLK_RD"

    def _read_block_states(self, m, resp_wr, reads, copy) -> None:
        bus = self.bus
        with m.State("BLK_RD"):
            m.d.comb += [bus.addr.eq(copy.next), bus.re.eq(1)]
            m.next = "BLK_DATA"
        with m.State("BLK_DATA"):
            m.d.comb += [resp_wr.addr.eq(reads), resp_wr.data.eq(bus.rdata),
                         resp_wr.en.eq(1)]
            m.d.sync += [reads.eq(reads + 1), copy.next.eq(copy.next + 1),
                         copy.rows.eq(copy.rows - 1)]
            m.next = "BLK_RD"
            with m.If(copy.rows == 1):
                m.next = "FETCH"

    def _run_tile_states(self, m, store, rm, copy, resp_wr, reads) -> None:
        """OP_RUN_TILE after its DO: one store word per cycle into the weight slot (the store
        answers the address of the cycle before), then W_TILE, CTRL start, wait for idle."""
        bus = self.bus
        with m.State("STORE_RDATA"):
            m.d.comb += [resp_wr.addr.eq(reads), resp_wr.data.eq(store.rdata),
                         resp_wr.en.eq(1)]
            m.d.sync += reads.eq(reads + 1)
            m.next = "FETCH"
        with m.State("COPY"):
            entry = (copy.slot << rm.row_bits) | copy.r
            offset = (entry << rm.weight_word_bits) | copy.j
            m.d.comb += [bus.addr.eq(offset | int(Region.WEIGHT) << rm.region_bits),
                         bus.wdata.eq(store.rdata), bus.we.eq(1),
                         store.addr.eq(copy.next)]
            m.d.sync += copy.next.eq(copy.next + 1)
            last_j = copy.j == rm.weight_words - 1
            with m.If(last_j):
                m.d.sync += [copy.j.eq(0), copy.r.eq(copy.r + 1)]
                with m.If(copy.r == rm.cfg.rows - 1):
                    m.next = "RUN_SLOT"
            with m.Else():
                m.d.sync += copy.j.eq(copy.j + 1)
        with m.State("COPY_ACTS"):
            offset = (copy.r << rm.act_word_bits) | copy.j
            m.d.comb += [bus.addr.eq(offset | int(Region.ACT) << rm.region_bits),
                         bus.wdata.eq(store.rdata), bus.we.eq(1),
                         store.addr.eq(copy.next)]
            m.d.sync += copy.next.eq(copy.next + 1)
            with m.If(copy.j == rm.act_words - 1):
                m.d.sync += [copy.j.eq(0), copy.r.eq(copy.r + 1)]
                with m.If(copy.r + 1 == copy.rows):
                    m.next = "FETCH"
            with m.Else():
                m.d.sync += copy.j.eq(copy.j + 1)
        with m.State("RUN_SLOT"):
            m.d.comb += [bus.addr.eq(rm.csr(Csr.W_TILE)), bus.wdata.eq(copy.slot),
                         bus.we.eq(1)]
            m.next = "RUN_GO"
        with m.State("RUN_GO"):
            m.d.comb += [bus.addr.eq(rm.csr(Csr.CTRL)),
                         bus.wdata.eq(CTRL_START | Mux(copy.acc, CTRL_ACCUMULATE, 0)),
                         bus.we.eq(1)]
            m.next = "RUN_HOLD"
        with m.State("RUN_HOLD"):     # the start shows in `busy` from the next cycle on
            m.next = "RUN_WAIT"
        with m.State("RUN_WAIT"), m.If(~self.acc_busy):
            m.next = "FETCH"

    def elaborate(self, platform) -> Module:
        m = Module()
        prm = self.params
        bus = self.bus
        resp_depth = max(prm.max_reads, P.IDENT_WORDS)
        rm = self.map
        has_store = prm.store_words > 0
        if has_store and self.cfg.dataflow != "ws":
            raise ValueError(f"LinkParams.store_words={prm.store_words}: the resident weight "
                             f"store copies ws weight tiles; dataflow {self.cfg.dataflow!r} "
                             "keeps its weights in its port memory (store_words must be 0)")
        if has_store:
            from .store import WeightStore

            m.submodules.store = store = WeightStore(prm.store_words)
        tile_words = P.tile_words(rm) if has_store else 0

        req_mem = Memory(shape=unsigned(8), depth=prm.req_bytes, init=[])
        resp_mem = Memory(shape=unsigned(32), depth=resp_depth, init=[])
        m.submodules.req_mem = req_mem
        m.submodules.resp_mem = resp_mem
        req_wr = req_mem.write_port()
        req_rd = req_mem.read_port()
        resp_wr = resp_mem.write_port()
        resp_rd = resp_mem.read_port()

        # --- receive: SLIP decode, CRC, header capture --------------------------------------
        in_recv = Signal()          # the main FSM is waiting for a frame
        count = Signal(range(prm.req_bytes + 1))
        esc = Signal()
        broken = Signal()           # bad escape, overflow, UART framing error or a lost byte
        crc = Signal(16, init=0xFFFF)
        hdr = Signal(P.HEADER_BYTES * 8)   # version, type, seq; byte 0 in the top bits
        frame_len = Signal(range(prm.req_bytes + 1))
        frame_ok = Signal()         # comb: an END just completed a frame worth answering

        rx_byte = self.rx.payload
        m.d.comb += self.rx.ready.eq(1)
        decoded = Signal(8)
        m.d.comb += decoded.eq(Mux(rx_byte == P.ESC_END, P.END, P.ESC))
        new_frame = [count.eq(0), esc.eq(0), broken.eq(0), crc.eq(0xFFFF)]

        with m.If(self.rx.valid):
            with m.If(rx_byte == P.END):
                m.d.sync += new_frame
                with m.If(in_recv & ~broken & (count >= P.HEADER_BYTES + P.CRC_BYTES)
                          & (crc == 0)):
                    m.d.comb += frame_ok.eq(1)
                    m.d.sync += frame_len.eq(count)
            with m.Elif(~in_recv):
                m.d.sync += broken.eq(1)         # a byte lost while busy spoils its frame
            with m.Elif(esc | (rx_byte != P.ESC)):
                byte = Mux(esc, decoded, rx_byte)
                m.d.sync += esc.eq(0)
                with m.If(esc & (rx_byte != P.ESC_END) & (rx_byte != P.ESC_ESC)):
                    m.d.sync += broken.eq(1)
                with m.Elif(count == prm.req_bytes):
                    m.d.sync += broken.eq(1)
                with m.Elif(~broken):
                    m.d.comb += [req_wr.addr.eq(count), req_wr.data.eq(byte), req_wr.en.eq(1)]
                    m.d.sync += [count.eq(count + 1), crc.eq(crc16_step(crc, byte))]
                    with m.If(count < P.HEADER_BYTES):
                        m.d.sync += hdr.eq((hdr << 8)[: len(hdr)] | byte)
            with m.Else():
                m.d.sync += esc.eq(1)
        with m.If(self.rx_error):
            m.d.sync += broken.eq(1)

        version = hdr[24:32]
        ftype = hdr[16:24]
        seq = hdr[0:16]

        # --- the cached response ------------------------------------------------------------
        resp_type = Signal(8)
        resp_seq = Signal(16)
        resp_status = Signal(8)
        resp_words = Signal(range(resp_depth + 1))
        cached = Signal()

        def answer(status, words=0):
            return [resp_type.eq(ftype), resp_seq.eq(seq), resp_status.eq(status),
                    resp_words.eq(words), cached.eq(1)]

        # --- op walker ------------------------------------------------------------------------
        ptr = Signal(range(prm.req_bytes + 1))
        end = Signal(range(prm.req_bytes + 1))
        op = Signal(8)
        need = Signal(3)            # operand bytes still to fetch for `op`
        operand = Signal(56)        # the op's operand bytes, the last one in the low bits
        live = Signal()
        # Answer words so far. The dry pass stops counting at the buffer's size and sets `over`
        # (a block read asks for up to 255 words in 4 bytes).
        reads = Signal(range(resp_depth + 1))
        over = Signal()

        def count(n) -> None:
            with m.If(reads + n > prm.max_reads):
                m.d.sync += over.eq(1)
            with m.Else():
                m.d.sync += reads.eq(reads + n)
        m.d.comb += req_rd.addr.eq(ptr)
        addr = Mux(op == P.OP_WRITE, operand[32:48], operand[0:16])
        # The store pointer: the last word an OP_STORE / OP_STORE_NEXT of this frame wrote.
        # Store addresses are compared and counted in the store's own width (the link carries
        # 24 bits; higher ones set make an address outside the store).
        store_bits = max(1, prm.store_words.bit_length())
        sptr = Signal(store_bits)
        sptr_ok = Signal()
        copy = _Copy(rm, store_bits)

        # --- transmit -------------------------------------------------------------------------
        m.submodules.slip = slip = SlipEncoder()
        wiring.connect(m, slip.o, wiring.flipped(self.tx))
        tx_crc = Signal(16)
        k = Signal(3)
        wi = Signal(range(resp_depth + 1))
        word = Signal(32)
        m.d.comb += resp_rd.addr.eq(wi)
        header_bytes = [Const(P.PROTOCOL_VERSION, 8), resp_type | P.RESPONSE,
                        resp_seq[8:16], resp_seq[0:8], resp_status]
        tx_sent = slip.i.valid & slip.i.ready

        frames = Signal()
        m.d.comb += self.frames.eq(frames)

        with m.FSM():
            with m.State("RECV"):
                m.d.comb += in_recv.eq(1)
                with m.If(frame_ok):
                    m.d.sync += frames.eq(~frames)
                    m.next = "CHECK"
            with m.State("CHECK"):
                with m.If(version != P.PROTOCOL_VERSION):
                    m.d.sync += answer(P.Status.BAD_VERSION)
                    m.next = "SEND"
                with m.Elif(ftype == P.FrameType.IDENT):
                    m.d.comb += [resp_wr.addr.eq(0), resp_wr.en.eq(1),
                                 resp_wr.data.eq(P.ident_params(prm.req_bytes, prm.max_reads))]
                    m.d.sync += [reads.eq(1), cached.eq(0)]
                    m.next = "ID_READ"
                with m.Elif(ftype == P.FrameType.EXEC):
                    with m.If(cached & (seq == resp_seq) & (ftype == resp_type)):
                        m.next = "SEND"          # a retransmission: answer, run nothing
                    with m.Else():
                        m.d.sync += [ptr.eq(P.HEADER_BYTES), end.eq(frame_len - P.CRC_BYTES),
                                     need.eq(0), live.eq(0), reads.eq(0), cached.eq(0),
                                     sptr_ok.eq(0), over.eq(0)]
                        m.next = "FETCH"
                with m.Else():
                    m.d.sync += answer(P.Status.BAD_TYPE)
                    m.next = "SEND"

            # IDENT: read ID, VERSION, CONFIG0, CONFIG1 off the accelerator's own bus.
            with m.State("ID_READ"):
                m.d.comb += [bus.re.eq(1), bus.addr.eq(reads - 1 + int(Csr.ID))]
                m.next = "ID_DATA"
            with m.State("ID_DATA"):
                m.d.comb += [resp_wr.addr.eq(reads), resp_wr.data.eq(bus.rdata),
                             resp_wr.en.eq(1)]
                m.d.sync += reads.eq(reads + 1)
                with m.If(reads == 4):
                    m.next = "ID_STORE"
                with m.Else():
                    m.next = "ID_READ"

            with m.State("ID_STORE"):
                m.d.comb += [resp_wr.addr.eq(5), resp_wr.data.eq(prm.store_words),
                             resp_wr.en.eq(1)]
                m.d.sync += answer(P.Status.OK, P.IDENT_WORDS)
                m.next = "SEND"

            # EXEC: FETCH presents req_mem[ptr] to BYTE one cycle later.
            with m.State("FETCH"):
                with m.If(ptr == end):
                    with m.If(need != 0):
                        m.d.sync += answer(P.Status.BAD_OPS)
                        m.next = "SEND"
                    with m.Elif(live):
                        m.d.sync += answer(P.Status.OK, reads)
                        m.next = "SEND"
                    with m.Elif(over):
                        m.d.sync += answer(P.Status.TOO_MANY_READS)
                        m.next = "SEND"
                    with m.Else():
                        m.d.sync += [live.eq(1), ptr.eq(P.HEADER_BYTES), reads.eq(0),
                                     sptr_ok.eq(0)]
                with m.Else():
                    m.next = "BYTE"
            with m.State("BYTE"):
                b = req_rd.data
                m.d.sync += ptr.eq(ptr + 1)
                with m.If(need == 0):
                    m.d.sync += op.eq(b)
                    with m.Switch(b):
                        with m.Case(P.OP_WRITE):
                            m.d.sync += need.eq(6)
                            m.next = "FETCH"
                        with m.Case(P.OP_READ):
                            m.d.sync += need.eq(2)
                            m.next = "FETCH"
                        with m.Case(P.OP_WAIT):
                            m.next = "DO"
                        for code in P.LINK_OPS.values():
                            with m.Case(code):
                                m.d.sync += need.eq(P.OP_BYTES[code] - 1)
                                m.next = "FETCH"
                        with m.Default():
                            m.d.sync += answer(P.Status.BAD_OPS)
                            m.next = "SEND"
                with m.Else():
                    m.d.sync += [operand.eq((operand << 8)[: len(operand)] | b),
                                 need.eq(need - 1)]
                    m.next = "FETCH"
                    with m.If(need == 1):
                        m.next = "DO"
            with m.State("DO"):
                with m.If(op == P.OP_READ_BLOCK):
                    self._read_block_op(m, operand, live, count, copy, answer)
                with m.Elif(op >= P.OP_STORE):
                    if has_store:
                        self._store_op(m, store, rm, tile_words, op, operand, live, count,
                                       sptr, sptr_ok, copy, answer)
                    else:       # no store on this board: every store op is refused
                        m.d.sync += answer(P.Status.BAD_OPS)
                        m.next = "SEND"
                with m.Elif(~live):
                    with m.If(op == P.OP_READ):
                        count(1)
                    m.next = "FETCH"
                with m.Elif(op == P.OP_WRITE):
                    m.d.comb += [bus.addr.eq(addr), bus.wdata.eq(operand[0:32]), bus.we.eq(1)]
                    m.next = "FETCH"
                with m.Elif(op == P.OP_READ):
                    m.d.comb += [bus.addr.eq(addr), bus.re.eq(1)]
                    m.next = "RDATA"
                with m.Elif(~self.acc_busy):    # OP_WAIT
                    m.next = "FETCH"
            with m.State("RDATA"):
                m.d.comb += [resp_wr.addr.eq(reads), resp_wr.data.eq(bus.rdata),
                             resp_wr.en.eq(1)]
                m.d.sync += reads.eq(reads + 1)
                m.next = "FETCH"
            self._read_block_states(m, resp_wr, reads, copy)
            if has_store:
                self._run_tile_states(m, store, rm, copy, resp_wr, reads)

            # Answer: END, header, words, CRC, END through the SLIP encoder.
            with m.State("SEND"):
                m.d.comb += [slip.i.payload.end.eq(1), slip.i.valid.eq(1)]
                m.d.sync += [tx_crc.eq(0xFFFF), k.eq(0)]
                with m.If(tx_sent):
                    m.next = "TX_HDR"
            with m.State("TX_HDR"):
                byte = Signal(8)
                with m.Switch(k):
                    for i, hb in enumerate(header_bytes):
                        with m.Case(i):
                            m.d.comb += byte.eq(hb)
                m.d.comb += [slip.i.payload.byte.eq(byte), slip.i.valid.eq(1)]
                with m.If(tx_sent):
                    m.d.sync += [tx_crc.eq(crc16_step(tx_crc, byte)), k.eq(k + 1), wi.eq(0)]
                    with m.If(k == P.RESP_HEADER_BYTES - 1):
                        m.next = "TX_LOAD"
                        with m.If(resp_words == 0):
                            m.d.sync += k.eq(0)
                            m.next = "TX_CRC"
            with m.State("TX_LOAD"):     # resp_mem[wi] is read here, latched next cycle
                m.next = "TX_LATCH"
            with m.State("TX_LATCH"):
                m.d.sync += [word.eq(resp_rd.data), k.eq(0)]
                m.next = "TX_WORD"
            with m.State("TX_WORD"):
                m.d.comb += [slip.i.payload.byte.eq(word[24:32]), slip.i.valid.eq(1)]
                with m.If(tx_sent):
                    m.d.sync += [tx_crc.eq(crc16_step(tx_crc, word[24:32])),
                                 word.eq(word << 8), k.eq(k + 1)]
                    with m.If(k == 3):
                        m.d.sync += [wi.eq(wi + 1), k.eq(0)]
                        m.next = "TX_LOAD"
                        with m.If(wi + 1 == resp_words):
                            m.next = "TX_CRC"
            with m.State("TX_CRC"):
                m.d.comb += [slip.i.payload.byte.eq(Mux(k == 0, tx_crc[8:16], tx_crc[0:8])),
                             slip.i.valid.eq(1)]
                with m.If(tx_sent):
                    m.d.sync += k.eq(k + 1)
                    with m.If(k == 1):
                        m.next = "TX_END"
            with m.State("TX_END"):
                m.d.comb += [slip.i.payload.end.eq(1), slip.i.valid.eq(1)]
                with m.If(tx_sent):
                    m.next = "RECV"
        return m
