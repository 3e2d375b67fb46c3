"""Host driver for the "os" top (hdl/stream_top.py), with host/driver.py's Accelerator API.

The host lays a GEMM out in the top's simulated DRAM (golden.stream.stream_plan: weights of
whole passes, activation rows, result rows), starts it, and reads the results back, all as
host/driver.py Programs, so the cocotb bench, the Verilator device and a board run the same
code. accelerator_for picks the driver that matches a configuration's dataflow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..golden.config import ArrayConfig
from ..golden.cycles import Events
from ..golden.stream import StreamJob, stream_plan
from ..hdl import stream_regmap as srm
from ..hdl.stream_regmap import StreamCsr, StreamRegMap
from .driver import Accelerator, Device, DeviceError, Program


@dataclass(frozen=True)
class PackedStream:
    """A ternary weight [K, N] packed once into the DRAM rows one activation row streams.

    Pass p's rows are words[pass_start[p] : pass_start[p + 1]]; a job of whole passes is one
    contiguous slice.
    """

    k: int
    n: int
    words: np.ndarray
    pass_start: np.ndarray
    nnz: int


class StreamAccelerator:
    """Runs whole GEMMs on an os-dataflow Device, one start per golden.stream.stream_plan job."""

    def __init__(self, device: Device, cfg: ArrayConfig | None = None) -> None:
        """cfg: the configuration the host expects (default: the one the device was built for);
        identify() checks the device against it."""
        self.device = device
        self.cfg = cfg or device.cfg
        self.map = StreamRegMap(self.cfg)

    def run(self, prog: Program) -> np.ndarray:
        return self.device.execute(prog.as_array())

    def identify(self) -> None:
        """Check the device is a tritium os accelerator built for this ArrayConfig."""
        regs = (StreamCsr.ID, StreamCsr.VERSION, StreamCsr.DATAFLOW, StreamCsr.CONFIG0,
                StreamCsr.CONFIG1, StreamCsr.CONFIG2)
        prog = Program()
        for reg in regs:
            prog.read(self.map.csr(reg))
        ident, version, dataflow, *config = (int(x) for x in self.run(prog))
        if ident != srm.MAGIC:
            raise DeviceError(f"device ID is {ident:#010x}, expected {srm.MAGIC:#010x} "
                              "(is this a tritium accelerator?)")
        if version != srm.VERSION:
            raise DeviceError(f"device speaks register-map version {version}, host speaks "
                              f"{srm.VERSION}")
        if dataflow != srm.DATAFLOW_OS:
            raise DeviceError(f"device runs dataflow {'ws' if dataflow == 0 else dataflow} "
                              f"(DATAFLOW={dataflow}), the host expects os")
        want = self.map.config_words()
        if tuple(config) != want:
            raise DeviceError(f"device array configuration words "
                              f"{', '.join(f'{c:#x}' for c in config)} do not match "
                              f"{self.cfg.name()} ({', '.join(f'{c:#x}' for c in want)})")

    def _queue_counters(self, prog: Program) -> list[int]:
        idx = []
        for lo in srm.COUNTER_CSRS:
            idx.append(prog.read(self.map.csr(lo)))
            prog.read(self.map.csr(lo + 1))
        return idx

    @staticmethod
    def _counters(words: np.ndarray, idx: list[int]) -> dict[str, int]:
        return {name: int(words[i + 1]) << 32 | int(words[i])
                for name, i in zip(srm.COUNTERS, idx, strict=True)}

    def counters(self) -> dict[str, int]:
        prog = Program()
        idx = self._queue_counters(prog)
        return self._counters(self.run(prog), idx)

    def pack(self, w: np.ndarray) -> PackedStream:
        """Pack ternary w [K, N] into stream order (inputs must already be checked)."""
        w = np.asarray(w)
        words, starts = self.map.weight_rows(w)
        return PackedStream(w.shape[0], w.shape[1], words, starts, int(np.count_nonzero(w)))

    def queue_weights(self, prog: Program, packed: PackedStream, job: StreamJob) -> None:
        """Write the rows of the job's passes into DRAM at job.w_base."""
        p0 = job.n0 // self.cfg.pes
        p1 = p0 + -(-job.n // self.cfg.pes)
        rows = packed.words[packed.pass_start[p0] : packed.pass_start[p1]]
        prog.write_block(self.map.dram_addrs(job.w_base, len(rows)), rows)

    def queue_job(self, prog: Program, a: np.ndarray, job: StreamJob) -> np.ndarray:
        """Queue one start (its weights must already be in DRAM): activation rows, counts,
        bases, start, wait, result reads. Returns the indices of the reads (in the order
        StreamRegMap.results_of takes them)."""
        rm = self.map
        k = a.shape[1]
        acts = rm.act_rows(a[job.m0 : job.m0 + job.m])
        prog.write_block(rm.dram_addrs(job.a_base, acts.shape[0] * acts.shape[1]), acts)
        for reg, value in ((StreamCsr.M_COUNT, job.m), (StreamCsr.K_COUNT, k),
                           (StreamCsr.N_COUNT, job.n), (StreamCsr.W_BASE, job.w_base),
                           (StreamCsr.A_BASE, job.a_base), (StreamCsr.O_BASE, job.o_base)):
            prog.write(rm.csr(reg), value)
        prog.write(rm.csr(StreamCsr.CTRL), srm.CTRL_START)
        prog.wait_idle()
        return prog.read_block(rm.dram_addrs(job.o_base, job.out_rows(self.cfg)))

    def gemm(self, a: np.ndarray, w: np.ndarray | PackedStream) -> tuple[np.ndarray, Events]:
        """int32 [M, N] = a [M, K] @ w [K, N] on the device, and the events its counters saw.

        Inputs must already be checked (golden.checks); w may be packed once with pack().
        One program per start, so no program holds more than one job's result reads.
        """
        packed = w if isinstance(w, PackedStream) else self.pack(w)
        m, k = a.shape
        n = packed.n
        out = np.zeros((m, n), dtype=np.int32)
        jobs = stream_plan(self.cfg, m, k, n)
        prog = Program()
        start = self._queue_counters(prog)
        before = after = None
        loaded_n0 = None
        for i, job in enumerate(jobs):
            if job.n0 != loaded_n0:
                self.queue_weights(prog, packed, job)
                loaded_n0 = job.n0
            reads = self.queue_job(prog, a, job)
            end = self._queue_counters(prog) if i == len(jobs) - 1 else None
            words = self.run(prog)
            if before is None:
                before = self._counters(words, start)
            out[job.m0 : job.m0 + job.m, job.n0 : job.n0 + job.n] = \
                self.map.results_of(words[reads], job.n)
            if end is not None:
                after = self._counters(words, end)
            prog = Program()
        assert before is not None and after is not None
        return out, Events(
            tiles=after["tiles"] - before["tiles"],
            cycles=after["busy_cycles"] - before["busy_cycles"],
            macs=after["macs"] - before["macs"],
            zero_skips=after["zero_skips"] - before["zero_skips"],
        )


def accelerator_for(device: Device, cfg: ArrayConfig | None = None
                    ) -> Accelerator | StreamAccelerator:
    """The host driver for cfg's dataflow (default: the configuration the device was built for)."""
    cfg = cfg or device.cfg
    if cfg.dataflow == "os":
        return StreamAccelerator(device, cfg)
    return Accelerator(device, cfg)
