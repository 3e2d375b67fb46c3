"""The PE seam: the ports every weight-stationary processing element has, and the registry that
ArrayConfig.pe names a PE in.

A PE is one `PESpec`: an Amaranth component built from (act_bits, acc_bits) whose signature is
`pe_signature(act_bits, acc_bits, weight_bits)`, and its golden update rule, written beside
the RTL in the same module in plain Python on golden helpers. The generator, the systolic
array, the cocotb benches, the Verilator device and synthesis all look the PE up here, so a
new PE is one module that calls `register_pe` and nothing else.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from amaranth.hdl import Module, Mux, Value, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..golden.config import ArrayConfig, ConfigError
from ..golden.gemm import PEUpdate

# The accelerator tops store, and the host packs, one 2-bit ternary code per weight
# (bit 0 "non-zero", bit 1 "negate"): only PEs taking that code fit inside a top.
TERNARY_CODE_BITS = 2


def pe_signature(act_bits: int, acc_bits: int,
                 weight_bits: int = TERNARY_CODE_BITS) -> wiring.Signature:
    """Ports of a weight-stationary PE.

    w_load latches the raw weight code on w_in at the next clock edge (after reset a PE acts
    as if code 0 were latched). `sum` is combinational, psum_in updated by the latched weight
    and act_in, so the array's last row can write it straight into the output buffer;
    `act_out` and `psum_out` are act_in and `sum` registered for the next PE along the row and
    down the column.
    """
    return wiring.Signature({
        "w_load": In(1),
        "w_in": In(weight_bits),
        "act_in": In(signed(act_bits)),
        "psum_in": In(signed(acc_bits)),
        "sum": Out(signed(acc_bits)),
        "act_out": Out(signed(act_bits)),
        "psum_out": Out(signed(acc_bits)),
    })


def accumulate(total: Value, acc_bits: int, overflow: str) -> Value:
    """total (an exact, wider sum) as an acc_bits accumulator takes it: clamped to the signed
    range for overflow "saturate"; otherwise unchanged, so assigning it to an acc_bits signal
    drops the carry and wraps ("wrap", and "safe", where it cannot overflow).

    Two comparators and a multiplexer per add, no multiplier: golden.gemm.array_gemm models
    where the RTL calls this (every PE add, every K-tile add into an output buffer).
    """
    if overflow != "saturate":
        return total
    hi, lo = (1 << (acc_bits - 1)) - 1, -(1 << (acc_bits - 1))
    return Mux(total > hi, hi, Mux(total < lo, lo, total))


class SystolicPE(wiring.Component):
    """Optional base for a PE: pe_signature with the class's weight_bits, and the registered
    act_out/psum_out every weight-stationary PE has. Subclasses write `compute`, which latches
    the weight and drives `sum` (through `accumulate` with self.overflow, if they saturate)."""

    weight_bits = TERNARY_CODE_BITS

    def __init__(self, act_bits: int, acc_bits: int, overflow: str = "wrap") -> None:
        self.act_bits = act_bits
        self.acc_bits = acc_bits
        self.overflow = overflow
        super().__init__(pe_signature(act_bits, acc_bits, self.weight_bits))

    def compute(self, m: Module) -> None:
        raise NotImplementedError

    def elaborate(self, platform) -> Module:
        m = Module()
        self.compute(m)
        m.d.sync += [self.act_out.eq(self.act_in), self.psum_out.eq(self.sum)]
        return m


@dataclass(frozen=True)
class PESpec:
    """One registered PE.

    component(act_bits, acc_bits) builds it; update(psum_in, act, code, acc_bits) is its golden
    rule: the signed value `sum` takes for a latched raw code. weight_bits is the width of
    w_in; a PE with TERNARY_CODE_BITS takes the accelerator's 2-bit codes and can be built into
    a top, any other width exists as a bare PE or array only (e.g. an int8 baseline).
    saturates: the PE also implements ArrayConfig.acc_overflow "saturate": component and
    update then take the keyword overflow="saturate" (clamping `sum` to acc_bits). Every PE
    wraps, which is what "safe" and "wrap" build.
    """

    name: str
    component: Callable[[int, int], wiring.Component]
    update: PEUpdate
    weight_bits: int = TERNARY_CODE_BITS
    description: str = ""
    saturates: bool = False

    @property
    def fits_accelerator(self) -> bool:
        return self.weight_bits == TERNARY_CODE_BITS

    @property
    def module(self) -> str:
        """The module that defines (and registers) the PE: a process that only has the name,
        such as a cocotb simulator, imports it to find the PE."""
        return self.component.__module__

    def _check_overflow(self, overflow: str) -> bool:
        """True when the overflow mode needs the PE's saturating variant."""
        if overflow != "saturate":
            return False
        if not self.saturates:
            raise ConfigError(f"PE {self.name!r} ({self.module}) does not implement "
                              f"acc_overflow='saturate'; use 'wrap' or a PE that saturates")
        return True

    def golden(self, overflow: str = "wrap") -> PEUpdate:
        """The golden update rule for an ArrayConfig.acc_overflow mode."""
        if not self._check_overflow(overflow):
            return self.update
        update = self.update

        def saturating(psum_in: int, act: int, code: int, acc_bits: int) -> int:
            return update(psum_in, act, code, acc_bits, overflow="saturate")  # type: ignore[call-arg]

        return saturating

    def build(self, act_bits: int, acc_bits: int, overflow: str = "wrap") -> wiring.Component:
        """An instance, checked against pe_signature so a PE with a wrong port fails here, by
        name, instead of deep inside the array."""
        if self._check_overflow(overflow):
            pe = self.component(act_bits, acc_bits, overflow="saturate")  # type: ignore[call-arg]
        else:
            pe = self.component(act_bits, acc_bits)
        want = pe_signature(act_bits, acc_bits, self.weight_bits)
        if pe.signature != want:
            raise ConfigError(f"PE {self.name!r} ({self.module}) has signature "
                              f"{pe.signature!r}; expected pe_signature({act_bits}, {acc_bits}, "
                              f"{self.weight_bits}) = {want!r}")
        return pe


_REGISTRY: dict[str, PESpec] = {}


def _same_definition(a: PESpec, b: PESpec) -> bool:
    # A module imported again (importlib.reload, a test collected twice) re-registers new
    # objects for the same definition; that is not a clash.
    def where(f: Callable) -> tuple[str, str]:
        return f.__module__, f.__qualname__

    return (where(a.component), where(a.update), a.weight_bits) == \
        (where(b.component), where(b.update), b.weight_bits)


def register_pe(spec: PESpec) -> PESpec:
    """Add a PE to this process's registry; returns it, so a module can keep `SPEC = ...`."""
    if not spec.name.isidentifier():
        raise ConfigError(f"a PE name must be an identifier (it is ArrayConfig.pe), "
                          f"got {spec.name!r}")
    if spec.weight_bits < 1:
        raise ConfigError(f"PE {spec.name!r}: weight_bits must be >= 1, got {spec.weight_bits}")
    old = _REGISTRY.get(spec.name)
    if old is not None and not _same_definition(old, spec):
        raise ConfigError(f"PE {spec.name!r} is already registered by {old.module}; "
                          f"choose another name")
    _REGISTRY[spec.name] = spec
    return spec


# Modules holding the built-in PEs, in the order they are listed: each registers on import.
BUILTIN_MODULES = ("pe", "mac_pe")


def _load_builtins() -> None:
    for name in BUILTIN_MODULES:
        importlib.import_module(f".{name}", __package__)


def pe_names() -> list[str]:
    """Registered PE names: the built-ins in BUILTIN_MODULES order, then the others in the
    order they were registered (whichever module happened to be imported first)."""
    _load_builtins()
    builtin = [f"{__package__}.{name}" for name in BUILTIN_MODULES]

    def rank(spec: PESpec) -> int:
        return builtin.index(spec.module) if spec.module in builtin else len(builtin)

    return [spec.name for spec in sorted(_REGISTRY.values(), key=rank)]


def get_pe(name: str) -> PESpec:
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown PE {name!r}; registered PEs: "
                          f"{', '.join(pe_names())}") from None


def config_pe(cfg: ArrayConfig) -> PESpec:
    """The PE cfg names, resolved against the registry."""
    try:
        return get_pe(cfg.pe)
    except ConfigError as exc:
        raise ConfigError(f"ArrayConfig.pe: {exc}") from None
