"""The "os" accelerator top: outputs stationary, activations broadcast, ternary weights streamed
through a memory port at up to dram_bytes_per_cycle into adder-only PEs (golden/os_model.py,
golden/os_port.py)."""

from __future__ import annotations

import re

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..bus.os_regmap import OsCsr, OsRegMap
from ..golden.config import BUS_BITS, ArrayConfig
from ..golden.os_model import acts_per_row, k_per_lane, stream_drain_cycles, stream_groups
from .pes import accumulate
from .top import AcceleratorTop, Control, accelerator_signature

_ABUF_FILL = re.compile(r"  initial begin\n(?:    abuf\[\d+\] = \d+'h0+;\n)+  end\n")

# Sequencer phases while busy (golden/os_model.py: load, compute, drain).
LOAD, COMPUTE, DRAIN = 0, 1, 2


class OsPE(wiring.Component):
    """Output-stationary PE: one accumulator that adds, subtracts or holds the broadcast
    activation by a 2-bit ternary code (bit 0 "non-zero", bit 1 "negate", as TernaryPE).

    `first` starts a new sum from zero on the pass's k = 0 beat, so passes need no clear cycle.
    The accumulator holds while `en` is low, which is when the top drains it.
    """

    def __init__(self, act_bits: int, acc_bits: int, overflow: str = "wrap") -> None:
        self.acc_bits, self.overflow = acc_bits, overflow
        super().__init__({
            "en": In(1),
            "first": In(1),
            "code": In(2),
            "act": In(signed(act_bits)),
            "acc": Out(signed(acc_bits)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        # No reset: `first` already starts every sum from zero, and a register without a
        # reset term depends on no top-level input, so Verilator evaluates it once per clock
        # instead of in every input-change pass as well.
        acc = Signal.like(self.acc, reset_less=True)
        base = Signal.like(self.acc)
        m.d.comb += [self.acc.eq(acc), base.eq(Mux(self.first, 0, acc))]
        with m.If(self.en):
            with m.If(~self.code[0]):
                m.d.sync += acc.eq(base)
            with m.Elif(self.code[1]):
                m.d.sync += acc.eq(accumulate(base - self.act, self.acc_bits, self.overflow))
            with m.Else():
                m.d.sync += acc.eq(accumulate(base + self.act, self.acc_bits, self.overflow))
        return m


def _popcount(bits: list[Value]) -> Value:
    """Balanced adder tree: the counters need the non-zero count of a whole DRAM row. (A SWAR
    count of the packed row is fewer operations on paper but simulates slower in Verilator.)"""
    if not bits:
        return Const(0, 1)
    level = [b.as_unsigned() for b in bits]
    while len(level) > 1:
        pairs = [level[i] + level[i + 1] for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            pairs.append(level[-1])
        level = pairs
    return level[0]


def mem_port_signature(addr_bits: int, data_bits: int) -> wiring.Signature:
    """The os top's memory port, from the top's side (golden/os_port.py has the contract):
    read requests, read responses and result writes, each a valid/ready stream."""
    return wiring.Signature({
        "rd_addr": Out(addr_bits),
        "rd_valid": Out(1),
        "rd_ready": In(1),
        "rsp_data": In(data_bits),
        "rsp_valid": In(1),
        "rsp_ready": Out(1),
        "wr_addr": Out(addr_bits),
        "wr_data": Out(data_bits),
        "wr_valid": Out(1),
        "wr_ready": In(1),
    })


class OsAccelerator(AcceleratorTop):
    """P = rows x cols OsPEs, an activation buffer, a sequencer and a memory port.

    The host writes weight and activation rows into the memory behind the port (bus region 1,
    served by the harness or board, not by this top: bus/os_regmap.py), sets M_COUNT,
    K_COUNT, N_COUNT, W_ROWS and the three base rows, then CTRL.start. Every beat moves one
    memory row and fires in the cycle its transfer happens:
      LOAD     an activation row arrives and is written into the activation buffer.
      COMPUTE  a weight row arrives; group g's PEs (columns gW .. gW+W-1 of the pass) add
               their lane's value for the k-step, read from the activation buffer.
      DRAIN    L accumulators (columns dL .. dL+L-1 of the pass) leave as one result row.
    A request generator asks for the rows of the load and compute beats in order, ahead of
    them, as far as the memory accepts. So a start takes
    golden.os_model.stream_gemm_cycles(cfg, M, K, N, timing) busy cycles for the memory's
    golden.os_port.PortTiming. RTL size does not depend on max_k beyond the activation
    buffer, nor on the model.
    """

    dataflow = "os"

    def __init__(self, cfg: ArrayConfig) -> None:
        # AcceleratorTop's ports plus the memory port.
        self.cfg = cfg
        self.map = OsRegMap(cfg)
        members = dict(accelerator_signature(self.map.addr_bits).members.items())
        members["mem"] = Out(mem_port_signature(self.map.dram_bits, 8 * self.map.row_bytes))
        wiring.Component.__init__(self, wiring.Signature(members))

    @staticmethod
    def fix_verilog(text: str) -> str:
        """Drop the activation buffer's power-on zero fill: Amaranth always emits it, one
        line per word, and at max_k = 8192 it was a third of a 2x2 top's build time. Every
        row a k-step reads is written by its LOAD beat first, so no value is ever read from
        the fill (and a synthesised buffer has none)."""
        return _ABUF_FILL.sub("", text)

    def elaborate_dataflow(self, m: Module, ctl: Control) -> None:
        cfg, rm = self.cfg, self.map
        port = self.mem
        p = cfg.pes
        w = rm.codes_per_row
        lanes_out = rm.results_per_row
        groups = stream_groups(cfg)
        lanes = min(w, p)                       # weight lanes that reach a PE
        last_group_size = p - (groups - 1) * w
        drains = stream_drain_cycles(cfg)
        t = k_per_lane(cfg)                     # k per lane: 1 (2-bit) or 5 (base-3 byte)
        a_per_row = acts_per_row(cfg)
        slots = a_per_row // t                  # k-steps per activation-buffer row
        act_rows = -(-cfg.max_k // a_per_row)

        # --- the activation buffer -------------------------------------------------------------
        abuf = Memory(shape=unsigned(8 * rm.row_bytes), depth=max(act_rows, 2), init=[])
        m.submodules.abuf = abuf
        abuf_wr = abuf.write_port()
        # The last LOAD beat writes the row the first COMPUTE beat reads (K <= A): pass it on.
        abuf_rd = abuf.read_port(transparent_for=(abuf_wr,))

        # --- control registers ---------------------------------------------------------------
        m_count = ctl.register(OsCsr.M_COUNT, 32, "m_count")
        k_count = ctl.register(OsCsr.K_COUNT, 32, "k_count")
        n_count = ctl.register(OsCsr.N_COUNT, 32, "n_count")
        w_rows = ctl.register(OsCsr.W_ROWS, 32, "w_rows")
        w_base = ctl.register(OsCsr.W_BASE, rm.dram_bits, "w_base")
        a_base = ctl.register(OsCsr.A_BASE, rm.dram_bits, "a_base")
        o_base = ctl.register(OsCsr.O_BASE, rm.dram_bits, "o_base")
        busy, start_ok = ctl.busy, ctl.start_ok
        ctl.allow_start((m_count != 0) & (k_count != 0) & (k_count <= cfg.max_k)
                        & (n_count != 0) & (w_rows != 0))

        # --- request generator: the rows of every load and compute beat, in order ------------
        # Per activation row: its ceil(K/A) activation rows (a pointer that runs on), then the
        # W_ROWS weight rows of all passes from W_BASE (the host's count: no multiplier here).
        rq_act = Signal()                  # asking for activation rows (else weight rows)
        rq_live = Signal()                 # rows left to ask for
        rq_rows = Signal(32)               # activation rows left, this one included
        rq_loaded = Signal(range(act_rows * a_per_row + a_per_row + 1))
        rq_left = Signal(32)               # weight rows left in this activation row
        rq_a = Signal(rm.dram_bits)
        rq_w = Signal(rm.dram_bits)
        m.d.comb += [
            port.rd_valid.eq(busy & rq_live),
            port.rd_addr.eq(Mux(rq_act, rq_a, rq_w)),
        ]
        with m.If(start_ok):
            m.d.sync += [rq_live.eq(1), rq_act.eq(1), rq_rows.eq(m_count),
                         rq_loaded.eq(a_per_row), rq_a.eq(a_base)]
        with m.Elif(port.rd_valid & port.rd_ready):
            with m.If(rq_act):
                m.d.sync += [rq_a.eq(rq_a + 1), rq_loaded.eq(rq_loaded + a_per_row)]
                with m.If(rq_loaded >= k_count):
                    m.d.sync += [rq_act.eq(0), rq_left.eq(w_rows), rq_w.eq(w_base)]
            with m.Else():
                m.d.sync += [rq_w.eq(rq_w + 1), rq_left.eq(rq_left - 1)]
                with m.If(rq_left == 1):
                    m.d.sync += [rq_act.eq(1), rq_loaded.eq(a_per_row),
                                 rq_rows.eq(rq_rows - 1)]
                    with m.If(rq_rows == 1):
                        m.d.sync += rq_live.eq(0)

        # --- sequencer state: what the current beat is -------------------------------------
        phase = Signal(2)
        rows_left = Signal(32)             # activation rows still to run, this one included
        n_left = Signal(32)                # columns of this row still to run, this pass's too
        load_row = Signal(range(max(act_rows, 2)))
        loaded = Signal(range(act_rows * a_per_row + a_per_row + 1))  # in by this beat's end
        k = Signal(range(max(cfg.max_k + t, 2)))         # first k of this k-step
        g = Signal(range(max(groups, 2)))
        g_cols = Signal(range(groups * w + w + 1))       # pass columns covered through group g
        k_row = Signal(range(max(act_rows, 2)))          # where a[m, k] sits in the buffer
        k_lane = Signal(range(max(slots, 2)))
        d = Signal(range(max(drains, 2)))                # drain beat of this pass
        d_cols = Signal(range(p + 2 * lanes_out + 1))    # pass columns drained by this beat
        o_ptr = Signal(rm.dram_bits)       # next result row to write

        in_load = busy & (phase == LOAD)
        in_compute = busy & (phase == COMPUTE)
        in_drain = busy & (phase == DRAIN)
        # A beat fires when its row moves: a response for load and compute, a write for drain.
        m.d.comb += [
            port.rsp_ready.eq(in_load | in_compute),
            port.wr_valid.eq(in_drain),
            port.wr_addr.eq(o_ptr),
        ]
        fire = Signal()
        m.d.comb += fire.eq((port.rsp_ready & port.rsp_valid)
                            | (port.wr_valid & port.wr_ready))

        n_pass = Signal(range(p + 1))
        m.d.comb += n_pass.eq(Mux(n_left > p, p, n_left))
        last_load = loaded >= k_count
        last_group = g_cols >= n_pass
        last_k = k + t >= k_count
        last_pass = n_left <= p
        last_row = rows_left == 1
        last_drain = d_cols >= n_pass

        # Where the next COMPUTE beat's activations sit: k = 0 of a pass unless the current
        # beat is a compute beat that moves on to the next group or the next k-step. The
        # buffer is read a cycle ahead, so a beat that does not fire reads its own row again.
        nk_row = Signal.like(k_row)
        nk_lane = Signal.like(k_lane)
        with m.If(in_compute & (~fire | ~last_group)):
            m.d.comb += [nk_row.eq(k_row), nk_lane.eq(k_lane)]
        with m.Elif(in_compute):
            with m.If(k_lane == slots - 1):
                m.d.comb += [nk_row.eq(k_row + 1), nk_lane.eq(0)]
            with m.Else():
                m.d.comb += [nk_row.eq(k_row), nk_lane.eq(k_lane + 1)]
        m.d.comb += abuf_rd.addr.eq(nk_row)
        with m.If(fire | start_ok):
            m.d.sync += [k_row.eq(nk_row), k_lane.eq(nk_lane)]

        def begin_pass():
            m.d.sync += [phase.eq(COMPUTE), k.eq(0), g.eq(0), g_cols.eq(w)]

        def begin_row():
            m.d.sync += [phase.eq(LOAD), load_row.eq(0), loaded.eq(a_per_row)]

        with m.If(start_ok):
            begin_row()
            m.d.sync += [rows_left.eq(m_count), n_left.eq(n_count), o_ptr.eq(o_base)]

        with m.If(in_load & fire):
            with m.If(last_load):
                begin_pass()
            with m.Else():
                m.d.sync += [load_row.eq(load_row + 1), loaded.eq(loaded + a_per_row)]
        with m.If(in_compute & fire):
            with m.If(~last_group):
                m.d.sync += [g.eq(g + 1), g_cols.eq(g_cols + w)]
            with m.Elif(~last_k):
                m.d.sync += [k.eq(k + t), g.eq(0), g_cols.eq(w)]
            with m.Else():
                m.d.sync += [phase.eq(DRAIN), d.eq(0), d_cols.eq(lanes_out)]
        with m.If(in_drain & fire):
            m.d.sync += o_ptr.eq(o_ptr + 1)
            with m.If(~last_drain):
                m.d.sync += [d.eq(d + 1), d_cols.eq(d_cols + lanes_out)]
            with m.Elif(~last_pass):
                begin_pass()
                m.d.sync += n_left.eq(n_left - p)
            with m.Elif(~last_row):
                begin_row()
                m.d.sync += [rows_left.eq(rows_left - 1), n_left.eq(n_count)]
            with m.Else():
                ctl.finish()

        # --- activation buffer: LOAD beats write the row that arrives -------------------------
        m.d.comb += [
            abuf_wr.addr.eq(load_row),
            abuf_wr.data.eq(port.rsp_data),
            abuf_wr.en.eq(in_load & fire),
        ]
        # The k-step's T activations, from slot k_lane of the buffer row.
        acts = [Signal(signed(cfg.act_bits), name=f"act{i}") for i in range(t)]
        with m.Switch(k_lane):
            for sl in range(slots):
                with m.Case(sl):
                    for i, a in enumerate(acts):
                        lo = 8 * (sl * t + i)
                        m.d.comb += a.eq(abuf_rd.data[lo : lo + cfg.act_bits])

        # --- weight lanes ----------------------------------------------------------------------
        # Each lane gives the PEs of its column an (operand, code) pair: 2-bit, the broadcast
        # activation and the lane's code; base-3, the sum of the byte's five ternary products
        # (decoded with shift-and-add, golden/base3.py) and "add".
        wrow = port.rsp_data
        lane_op, lane_code, lane_nz = [], [], []
        for j in range(lanes):
            if t == 1:
                lane_op.append(acts[0])
                lane_code.append(wrow[2 * j : 2 * j + 2])
                lane_nz.append([wrow[2 * j]])
                continue
            x: Value = wrow[8 * j : 8 * j + 8]
            terms, nz = [], []
            for i in range(t):
                # 3x is one adder; a named stage keeps the next one from copying its tree.
                tri = Signal(10, name=f"lane{j}_x3_{i}")
                m.d.comb += tri.eq((x << 1) + x)
                digit = tri[8:10]                     # 0 -> -1, 1 -> 0, 2 -> +1
                x = tri[:8]
                terms.append(Mux(digit[1], acts[i], Mux(digit[0], 0, -acts[i])))
                nz.append(digit != 1)
            total = Signal(signed(cfg.act_bits + 3), name=f"lane{j}")
            m.d.comb += total.eq(sum(terms[1:], terms[0]))
            lane_op.append(total)
            lane_code.append(Const(0b01, 2))
            lane_nz.append(nz)

        # --- PEs -----------------------------------------------------------------------------
        gsel = [Signal(name=f"gsel{i}") for i in range(groups)]
        for i, s in enumerate(gsel):
            m.d.comb += s.eq(in_compute & fire & (g == i))
        op_bits = cfg.act_bits if t == 1 else cfg.act_bits + 3
        pes = [OsPE(op_bits, cfg.acc_bits, cfg.acc_overflow) for _ in range(p)]
        for c, pe in enumerate(pes):
            m.submodules[f"pe_{c}"] = pe
            lane = c % w
            m.d.comb += [
                pe.en.eq(gsel[c // w]),
                pe.first.eq(k == 0),
                pe.code.eq(lane_code[lane]),
                pe.act.eq(lane_op[lane]),
            ]

        # --- result rows: drain beat d writes the accumulators of columns d*L .. d*L+L-1 ------
        # (A shift chain through the PEs needs no wide mux but doubles the Verilated model's
        # cycle time.)
        results = [Signal(signed(BUS_BITS), name=f"drain{j}") for j in range(lanes_out)]
        with m.Switch(d):
            for dd in range(drains):
                with m.Case(dd):
                    for j, word in enumerate(results):
                        c = dd * lanes_out + j
                        m.d.comb += word.eq(pes[c].acc if c < p else 0)
        m.d.comb += port.wr_data.eq(Cat(*results))

        # --- performance counters --------------------------------------------------------------
        # Lanes past P in the last group carry no PE; the host writes them as zero, but the
        # counters must not trust that.
        live = []
        for j in range(lanes):
            ok = Const(1) if j < last_group_size else (g != groups - 1)
            live.extend(bit & ok for bit in lane_nz[j])
        nnz = Signal(range(t * lanes + 1))
        m.d.comb += nnz.eq(_popcount(live))
        group_size = Signal(range(t * w + 1))
        m.d.comb += group_size.eq(Mux(g == groups - 1, t * last_group_size, t * min(w, p)))
        # The counts reach the counters a cycle late (a drain beat always follows the last
        # compute beat, so they are in before `done`). Registered without reset, the count
        # depends on no top-level input, which keeps the adder tree out of Verilator's
        # per-input-change evaluation.
        beat_macs = Signal(range(t * lanes + 1), reset_less=True)
        beat_skips = Signal(range(t * w + 1), reset_less=True)
        m.d.sync += [beat_macs.eq(Mux(in_compute & fire, nnz, 0)),
                     beat_skips.eq(Mux(in_compute & fire, group_size - nnz, 0))]

        ctl.count("tiles", in_compute & fire & (k == 0) & (g == 0))
        ctl.count("macs", beat_macs)
        ctl.count("zero_skips", beat_skips)
