"""Per-point metrics beyond the estimate and synthesis: accuracy evaluators, registered by name.

Built in: "accuracy", the exact match of an addition model (such as tiny-adder) on 1000
held-out problems under the point's numerics (act_bits, acc_bits, acc_overflow, and the
dataflow and rows that decide where a saturating accumulator clamps), run by
tritium.train.evaluate on the golden backend. More evaluators register in-process with
`register_metric(name, fn)` or from another distribution through the entry-point group
`tritium.sweep_metrics` (each entry point loads to a Metric or to a plain function). A metric
is `fn(model, params) -> float | {column: float}`: `model` is the name or folder the sweep was
given, `params` the point's parameters (only those listed in `params=`, when given).
Declaring `params` lets the sweep evaluate the metric once per distinct value of those
parameters instead of once per point: accuracy usually depends on the numerics alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from importlib.metadata import entry_points
from typing import Any

from ..golden.config import ArrayConfig
from .adapters import SweepError

ENTRY_POINT_GROUP = "tritium.sweep_metrics"

MetricFn = Callable[[str, dict[str, Any]], float | Mapping[str, float]]


@dataclass(frozen=True)
class Metric:
    name: str
    fn: MetricFn
    params: tuple[str, ...] | None = None   # the parameters the value depends on; None: all

    def inputs(self, values: dict[str, Any]) -> dict[str, Any]:
        if self.params is None:
            return dict(values)
        return {k: values[k] for k in self.params}

    def columns(self, value: Any) -> dict[str, Any]:
        """One column `name` for a number, `name_key` per entry of a mapping."""
        if isinstance(value, Mapping):
            return {f"{self.name}_{k}": v for k, v in value.items()}
        return {self.name: value}


_REGISTRY: dict[str, Metric] = {}
_loaded_entry_points = False

# The point parameters "accuracy" reads (weight_packing where ArrayConfig has it).
ACCURACY_PARAMS = tuple(n for n in ("act_bits", "acc_bits", "acc_overflow", "weight_packing",
                                    "dataflow", "rows")
                        if n in {f.name for f in fields(ArrayConfig)})
ACCURACY_PROBLEMS = 1000


def add_accuracy(model: str, values: dict[str, Any]) -> float:
    """Exact match of an addition model on ACCURACY_PROBLEMS held-out problems (seed 0) under
    the point's numerics."""
    from ..train.evaluate import OPTIONS, Numerics
    from ..train.evaluate import add_accuracy as score

    base = ArrayConfig(rows=values["rows"], dataflow=values["dataflow"])
    numerics = Numerics(**{k: values[k] for k in OPTIONS if k in values})
    return float(score(model, numerics, problems=ACCURACY_PROBLEMS, base=base)["accuracy"])


def register_metric(name: str, fn: MetricFn, *, params: Iterable[str] | None = None) -> Metric:
    """Make `fn` available to `tritium sweep --accuracy NAME`. Replaces a metric of that name."""
    if not name or not name.replace("_", "").isalnum():
        raise SweepError(f"metric name must be letters, digits and '_', got {name!r}")
    if not callable(fn):
        raise SweepError(f"metric {name!r}: expected a function, got {type(fn).__name__}")
    m = Metric(name, fn, None if params is None else tuple(params))
    _REGISTRY[name] = m
    return m


def unregister_metric(name: str) -> None:
    _REGISTRY.pop(name, None)


register_metric("accuracy", add_accuracy, params=ACCURACY_PARAMS)


def _load_entry_points() -> None:
    global _loaded_entry_points
    if _loaded_entry_points:
        return
    _loaded_entry_points = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _REGISTRY:
            continue
        obj = ep.load()
        if isinstance(obj, Metric):
            _REGISTRY[ep.name] = obj
        else:
            register_metric(ep.name, obj)


def available() -> dict[str, Metric]:
    _load_entry_points()
    return dict(_REGISTRY)


def select(names: Iterable[str] | None) -> list[Metric]:
    """The registered metrics named (None: every registered one); a clear error if a name is
    unknown or nothing is registered."""
    reg = available()
    if not reg:
        raise SweepError("--accuracy: no accuracy evaluator is registered (register one with "
                         "tritium.explore.register_metric or the 'tritium.sweep_metrics' entry "
                         "point group)")
    if names is None:
        return list(reg.values())
    out = []
    for n in names:
        if n not in reg:
            raise SweepError(f"--accuracy: unknown metric {n!r}; registered: "
                             f"{', '.join(reg)}")
        out.append(reg[n])
    return out
