"""Energy model: event counts times a per-operation energy table.

The table is data (`golden/data/energy_45nm_horowitz.json`: Horowitz, ISSCC 2014, 45 nm) with
its sources and a node-scaling section (Stillmaker & Baas 2017), so a user can swap in their own
with `EnergyTable.load(path)`. A table file is JSON:

    {"name": ..., "node_nm": 45, "source": ...,
     "operations": {"int_add_8": {"pj": 0.03, "source": ...}, ...},   # or plain numbers
     "scaling": {"energy_factor": {"45": 1.0, "7": 0.094}, "not_scaled": ["dram_64b"]}}

Required operations: int_add_8, int_add_16, int_add_32, sram_64b_8kb, dram_64b,
register_bit_write, register_bit_idle. Optional: sram_64b_32kb, sram_64b_1mb (larger buffers),
anything else (kept and reported, unused by the accelerator model).

What the accelerator's events cost (`energy_of`):
  pe_adds       one add/subtract at acc_bits per non-zero weight a vector meets (a "MAC")
  output_adds   one acc_bits add per result accumulated into the output buffer
  saturation    acc_overflow="saturate" only: the clamp behind each of those adds
                (EnergyTable.saturate_pj; neither DESIGN.md nor Horowitz gives a figure, so it
                is derived from the table's own adder energy per bit)
  registers     bits written into PE pipeline registers (activation, partial sum, weight code);
                a flip-flop's read is a wire, so reads are not charged separately
  sram_*        weight / activation / output buffer bits read and written, per 64 bits, priced
                by buffer capacity; writes are charged as reads
  dram          bytes moved between DRAM and the buffers
  idle          PE-cycles in which a PE holds no vector (fill, drain, stalls on DRAM): its
                registers are clocked but do not change (register_bit_idle per bit)
Zero-weight skips cost their register writes but no add. CPU-side work (norms, attention,
RoPE, quantisation, embedding, LM head) is not part of this model.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .checks import InputError

DEFAULT_TABLE = "energy_45nm_horowitz.json"
REQUIRED_OPS = ("int_add_8", "int_add_16", "int_add_32", "sram_64b_8kb", "dram_64b",
                "register_bit_write", "register_bit_idle")
# SRAM price points by capacity (bytes), when the table has them
_SRAM_POINTS = (("sram_64b_8kb", 8 * 1024), ("sram_64b_32kb", 32 * 1024),
                ("sram_64b_1mb", 1024 * 1024))
_ADD_POINTS = (("int_add_8", 8), ("int_add_16", 16), ("int_add_32", 32))

COMPONENTS = ("pe_adds", "output_adds", "registers", "sram_weight", "sram_act", "sram_out",
              "dram", "idle", "saturation")
# Coarser groups for the report and the plot
GROUPS = {
    "pe_adds": ("pe_adds", "output_adds", "saturation"),
    "registers": ("registers",),
    "sram": ("sram_weight", "sram_act", "sram_out"),
    "dram": ("dram",),
    "idle": ("idle",),
}
PJ = 1e-12


class EnergyTableError(InputError):
    """An energy table file is missing, malformed or lacks an operation; names the file."""


@dataclass(frozen=True)
class EnergyTable:
    """Energy per operation in pJ at one technology node."""

    name: str
    node_nm: float
    ops: dict[str, float]
    source: str = ""
    op_sources: dict[str, str] = field(default_factory=dict)
    # node (nm) -> energy factor relative to the table's own node
    scaling: dict[float, float] = field(default_factory=dict)
    scaling_source: str = ""
    not_scaled: frozenset[str] = frozenset()
    path: str = ""
    base_node_nm: float | None = None   # set on a scaled copy: the node the data came from

    # -- loading ------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path | None = None) -> EnergyTable:
        """The shipped Horowitz 45 nm table, or a user's JSON table file."""
        if path is None:
            ref = resources.files(__package__).joinpath("data", DEFAULT_TABLE)
            text, where = ref.read_text(encoding="utf-8"), f"tritium.golden/data/{DEFAULT_TABLE}"
        else:
            p = Path(path)
            where = str(p)
            try:
                text = p.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise EnergyTableError(f"energy table {p} not found") from None
            except (OSError, UnicodeDecodeError) as exc:
                raise EnergyTableError(f"energy table {p}: cannot read: {exc}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EnergyTableError(f"energy table {where}: not valid JSON ({exc})") from None
        return cls.from_dict(data, where)

    @classmethod
    def from_dict(cls, data: Any, where: str = "energy table") -> EnergyTable:
        if not isinstance(data, dict):
            raise EnergyTableError(f"{where}: must hold a JSON object")
        raw_ops = data.get("operations")
        if not isinstance(raw_ops, dict):
            raise EnergyTableError(f"{where}: needs an \"operations\" object mapping operation "
                                   f"names to pJ (required: {', '.join(REQUIRED_OPS)})")
        ops: dict[str, float] = {}
        op_sources: dict[str, str] = {}
        for name, entry in raw_ops.items():
            value = entry.get("pj") if isinstance(entry, dict) else entry
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value < 0:
                raise EnergyTableError(f"{where}: operation {name!r} must be a finite number of "
                                       f"pJ >= 0 (or {{\"pj\": ...}}), got {entry!r}")
            ops[name] = float(value)
            if isinstance(entry, dict) and "source" in entry:
                op_sources[name] = str(entry["source"])
        missing = [n for n in REQUIRED_OPS if n not in ops]
        if missing:
            raise EnergyTableError(f"{where}: missing operation(s) {', '.join(missing)} "
                                   f"(required: {', '.join(REQUIRED_OPS)})")
        node = data.get("node_nm", 45)
        if isinstance(node, bool) or not isinstance(node, (int, float)) or not node > 0:
            raise EnergyTableError(f"{where}: node_nm must be a positive number, got {node!r}")
        scaling: dict[float, float] = {}
        scaling_source = ""
        not_scaled: frozenset[str] = frozenset()
        sc = data.get("scaling")
        if sc is not None:
            if not isinstance(sc, dict) or not isinstance(sc.get("energy_factor"), dict):
                raise EnergyTableError(f"{where}: \"scaling\" must be an object with an "
                                       "\"energy_factor\" object mapping node (nm) to factor")
            for k, v in sc["energy_factor"].items():
                try:
                    nm = float(k)
                except ValueError:
                    raise EnergyTableError(f"{where}: scaling node {k!r} is not a number of "
                                           "nm") from None
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 \
                        or not nm > 0:
                    raise EnergyTableError(f"{where}: scaling factor for {k} nm must be a "
                                           f"positive number, got {v!r}")
                scaling[nm] = float(v)
            if float(node) not in scaling:
                raise EnergyTableError(f"{where}: scaling.energy_factor must list the table's "
                                       f"own node_nm={node}")
            scaling_source = str(sc.get("source", ""))
            not_scaled = frozenset(str(n) for n in sc.get("not_scaled", ()))
        return cls(name=str(data.get("name", Path(where).stem)), node_nm=float(node), ops=ops,
                   source=str(data.get("source", "")), op_sources=op_sources, scaling=scaling,
                   scaling_source=scaling_source, not_scaled=not_scaled, path=where)

    # -- node scaling -------------------------------------------------------------------------

    def scale_factor(self, node_nm: float) -> float:
        """Energy factor from this table's node to node_nm: exact at listed nodes, log-log
        interpolated between them (energy falls roughly as a power of feature size)."""
        if isinstance(node_nm, bool) or not isinstance(node_nm, (int, float)) \
                or not node_nm > 0:
            raise InputError(f"node_nm must be a positive number of nm, got {node_nm!r}")
        if float(node_nm) == self.node_nm:
            return 1.0
        if not self.scaling:
            raise InputError(f"energy table {self.path or self.name} is for {self.node_nm:g} nm "
                             f"and has no \"scaling\" section, so node_nm={node_nm:g} cannot be "
                             "used; add one or omit the node")
        return self._factor(float(node_nm)) / self._factor(self.node_nm)

    def _factor(self, node_nm: float) -> float:
        nodes = sorted(self.scaling)
        if node_nm in self.scaling:
            return self.scaling[node_nm]
        if not nodes[0] <= node_nm <= nodes[-1]:
            raise InputError(f"node_nm={node_nm:g} is outside the energy table's scaling range "
                             f"{nodes[0]:g}..{nodes[-1]:g} nm "
                             f"(listed: {', '.join(f'{n:g}' for n in nodes)})")
        hi = min(n for n in nodes if n > node_nm)
        lo = max(n for n in nodes if n < node_nm)
        t = math.log(node_nm / lo) / math.log(hi / lo)
        return math.exp((1 - t) * math.log(self.scaling[lo]) + t * math.log(self.scaling[hi]))

    def at_node(self, node_nm: float | None) -> EnergyTable:
        """A copy with every scaled operation multiplied by scale_factor(node_nm)."""
        if node_nm is None or float(node_nm) == self.node_nm:
            return self
        f = self.scale_factor(node_nm)
        target = float(node_nm)
        ops = {k: v if k in self.not_scaled else v * f for k, v in self.ops.items()}
        # Re-reference the factors to the new node; the new point lies on the old log-log
        # line, so adding it changes no interpolated value.
        ft = self._factor(target)
        scaling = {n: s / ft for n, s in self.scaling.items()} | {target: 1.0}
        return EnergyTable(name=self.name, node_nm=target, ops=ops, source=self.source,
                           op_sources=self.op_sources, scaling=scaling,
                           scaling_source=self.scaling_source, not_scaled=self.not_scaled,
                           path=self.path,
                           base_node_nm=self.base_node_nm or self.node_nm)

    # -- prices -------------------------------------------------------------------------------

    def add_pj(self, bits: int) -> float:
        """An integer add of `bits` width: linear between the 8/16/32-bit points (a ripple or
        prefix adder's energy grows about linearly with width), proportional below 8 bits and
        extrapolated from the 16-32 slope above 32."""
        pts = [(b, self.ops[n]) for n, b in _ADD_POINTS]
        if bits <= pts[0][0]:
            return pts[0][1] * bits / pts[0][0]
        for (b0, e0), (b1, e1) in zip(pts, pts[1:], strict=False):
            if bits <= b1:
                return e0 + (e1 - e0) * (bits - b0) / (b1 - b0)
        (b0, e0), (b1, e1) = pts[-2], pts[-1]
        return e1 + (e1 - e0) * (bits - b1) / (b1 - b0)

    def saturate_pj(self, bits: int) -> float:
        """The clamp a saturating accumulator puts behind one add of `bits` (hdl.pes.accumulate:
        the exact bits+1-bit sum compared with the two range limits, then a multiplexer).
        Neither DESIGN.md nor the Horowitz table prices it, so it is derived from the adder:
        a comparison with a constant is a subtractor's carry chain without its sum XORs, about
        half an adder of bits+1, so the two cost one add_pj(bits + 1). The multiplexer is not
        priced: it switches only when a sum saturates, and otherwise passes the sum whose
        register write is already charged."""
        return self.add_pj(bits + 1)

    def sram_64b_pj(self, capacity_bytes: float) -> float:
        """One 64-bit access of a buffer of this capacity (the 8 KB price for anything smaller:
        Horowitz gives no smaller point, so small buffers are not made cheaper)."""
        pts = [(size, self.ops[n]) for n, size in _SRAM_POINTS if n in self.ops]
        if capacity_bytes <= pts[0][0] or len(pts) == 1:
            return pts[0][1] if capacity_bytes <= pts[0][0] else pts[-1][1]
        for (s0, e0), (s1, e1) in zip(pts, pts[1:], strict=False):
            if capacity_bytes <= s1:
                t = math.log(capacity_bytes / s0) / math.log(s1 / s0)
                return e0 + (e1 - e0) * t
        return pts[-1][1]

    @property
    def dram_byte_pj(self) -> float:
        return self.ops["dram_64b"] / 8

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "node_nm": self.node_nm, "source": self.source,
                             "file": self.path, "operations_pj": dict(self.ops)}
        if self.base_node_nm is not None:
            d["scaled_from_nm"] = self.base_node_nm
            d["scaling_source"] = self.scaling_source
            d["not_scaled"] = sorted(self.not_scaled)
        return d


@dataclass
class EnergyEvents:
    """What the energy model charges for; all counts are totals over the work being priced."""

    pe_adds: int = 0                 # adds/subtracts in PEs, at add_bits
    output_adds: int = 0             # accumulations into the output buffer, at add_bits
    add_bits: int = 32
    saturating_adds: int = 0         # of those adds, the ones clamped (acc_overflow saturate)
    register_write_bits: float = 0.0
    idle_pe_cycles: float = 0.0
    pe_register_bits: int = 0        # flip-flops in one PE (priced per idle PE-cycle)
    sram_weight_bits: float = 0.0    # reads + writes
    sram_act_bits: float = 0.0
    sram_out_bits: float = 0.0
    weight_buffer_bytes: float = 0.0  # capacities, which set the SRAM price
    act_buffer_bytes: float = 0.0
    out_buffer_bytes: float = 0.0
    dram_bytes: float = 0.0


def energy_of(table: EnergyTable, ev: EnergyEvents) -> dict[str, float]:
    """Joules per component (COMPONENTS order)."""
    add = table.add_pj(ev.add_bits)
    return {
        "pe_adds": ev.pe_adds * add * PJ,
        "output_adds": ev.output_adds * add * PJ,
        "registers": ev.register_write_bits * table.ops["register_bit_write"] * PJ,
        "sram_weight": ev.sram_weight_bits / 64 * table.sram_64b_pj(ev.weight_buffer_bytes) * PJ,
        "sram_act": ev.sram_act_bits / 64 * table.sram_64b_pj(ev.act_buffer_bytes) * PJ,
        "sram_out": ev.sram_out_bits / 64 * table.sram_64b_pj(ev.out_buffer_bytes) * PJ,
        "dram": ev.dram_bytes * table.dram_byte_pj * PJ,
        "idle": ev.idle_pe_cycles * ev.pe_register_bits * table.ops["register_bit_idle"] * PJ,
        "saturation": ev.saturating_adds * table.saturate_pj(ev.add_bits) * PJ,
    }


def group(breakdown: dict[str, float]) -> dict[str, float]:
    """Components summed into the report's groups (PE adds, registers, SRAM, DRAM, idle)."""
    return {g: sum(breakdown.get(c, 0.0) for c in members) for g, members in GROUPS.items()}
