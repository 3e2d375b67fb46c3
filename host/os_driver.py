"""Host driver of the "os" top (hdl/os_top.py).

The host lays a GEMM out in the memory behind the top's port (bus region 1; the harness or
board serves it; golden.os_model.stream_plan: weights of whole passes, activation rows, result
rows), starts it, and reads the results back, all as Programs, so the cocotb bench, the
Verilator device and a board run the same code. Each start also tells the top how many
weight rows one activation row streams (W_ROWS), so the top needs no multiplier to count them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..bus.contract import CTRL_START, Program
from ..bus.os_regmap import OsCsr, OsRegMap
from ..golden.cycles import Events
from ..golden.os_model import StreamJob, stream_plan
from .driver import DataflowDriver


@dataclass(frozen=True)
class OsPackedWeights:
    """A ternary weight [K, N] packed once into the DRAM rows one activation row streams.

    Pass p's rows are words[pass_start[p] : pass_start[p + 1]]; a job of whole passes is one
    contiguous slice.
    """

    k: int
    n: int
    words: np.ndarray
    pass_start: np.ndarray
    nnz: int


class OsDriver(DataflowDriver):
    """Runs whole GEMMs on an os Device, one start per golden.os_model.stream_plan job."""

    dataflow = "os"
    regmap = OsRegMap

    def pack(self, w: np.ndarray) -> OsPackedWeights:
        """Pack ternary w [K, N] into stream order (inputs must already be checked)."""
        w = np.asarray(w)
        words, starts = self.map.weight_rows(w)
        return OsPackedWeights(w.shape[0], w.shape[1], words, starts, int(np.count_nonzero(w)))

    def queue_weights(self, prog: Program, packed: OsPackedWeights, job: StreamJob) -> None:
        """Write the rows of the job's passes into DRAM at job.w_base."""
        p0 = job.n0 // self.cfg.pes
        p1 = p0 + -(-job.n // self.cfg.pes)
        rows = packed.words[packed.pass_start[p0] : packed.pass_start[p1]]
        prog.write_block(self.map.dram_addrs(job.w_base, len(rows)), rows)

    def queue_job(self, prog: Program, a: np.ndarray, job: StreamJob) -> np.ndarray:
        """Queue one start (its weights must already be in DRAM): activation rows, counts,
        bases, start, wait, result reads. Returns the indices of the reads (in the order
        OsRegMap.results_of takes them)."""
        rm = self.map
        k = a.shape[1]
        acts = rm.act_rows(a[job.m0 : job.m0 + job.m])
        prog.write_block(rm.dram_addrs(job.a_base, acts.shape[0] * acts.shape[1]), acts)
        for reg, value in ((OsCsr.M_COUNT, job.m), (OsCsr.K_COUNT, k),
                           (OsCsr.N_COUNT, job.n), (OsCsr.W_ROWS, job.weight_rows(self.cfg, k)),
                           (OsCsr.W_BASE, job.w_base),
                           (OsCsr.A_BASE, job.a_base), (OsCsr.O_BASE, job.o_base)):
            prog.write(rm.csr(reg), value)
        prog.write(rm.csr(OsCsr.CTRL), CTRL_START)
        prog.wait_idle()
        return prog.read_block(rm.dram_addrs(job.o_base, job.out_rows(self.cfg)))

    def gemm(self, a: np.ndarray, w: np.ndarray | OsPackedWeights) -> tuple[np.ndarray, Events]:
        """int32 [M, N] = a [M, K] @ w [K, N] on the device, and the events its counters saw.

        Inputs must already be checked (golden.checks); w may be packed once with pack().
        One program per start, so no program holds more than one job's result reads.
        """
        packed = w if isinstance(w, OsPackedWeights) else self.pack(w)
        m, k = a.shape
        n = packed.n
        out = np.zeros((m, n), dtype=np.int32)
        jobs = stream_plan(self.cfg, m, k, n)
        prog = Program()
        start = self.queue_counters(prog)
        before = after = None
        loaded_n0 = None
        for i, job in enumerate(jobs):
            if job.n0 != loaded_n0:
                self.queue_weights(prog, packed, job)
                loaded_n0 = job.n0
            reads = self.queue_job(prog, a, job)
            end = self.queue_counters(prog) if i == len(jobs) - 1 else None
            words = self.run(prog)
            if before is None:
                before = self.counters_of(words, start)
            out[job.m0 : job.m0 + job.m, job.n0 : job.n0 + job.n] = \
                self.map.results_of(words[reads], job.n)
            if end is not None:
                after = self.counters_of(words, end)
            prog = Program()
        assert before is not None and after is not None
        return out, self.events_between(before, after)
