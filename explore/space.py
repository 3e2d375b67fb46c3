"""A design space: named axes of values, walked as a full grid or as a seeded random sample.

Any parameter the catalogue (adapters.params) knows may be an axis: every ArrayConfig field,
the estimator's options, and the synthesis target. A point is the catalogue's defaults
overlaid with one value per axis; its key hashes those values, the tritium version, the model
and what is measured, so a cached result is reused only for exactly the same question.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
from dataclasses import dataclass, field
from typing import Any

from .adapters import VERSION, Param, SweepError, params


def _parse_one(name: str, text: str, param: Param) -> Any:
    text = text.strip()
    opt = "--" + name.replace("_", "-")
    if param.type is bool:
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise SweepError(f"{opt}: {text!r} is not a boolean (true/false)")
    if param.type is int:
        try:
            return int(text)
        except ValueError:
            raise SweepError(f"{opt}: {text!r} is not an integer") from None
    if param.type is float:
        try:
            value = float(text)
        except ValueError:
            raise SweepError(f"{opt}: {text!r} is not a number") from None
        if not math.isfinite(value):
            raise SweepError(f"{opt}: {text!r} is not a finite number")
        return value
    if not text:
        raise SweepError(f"{opt}: empty value")
    return text


def parse_values(name: str, text: str, catalogue: dict[str, Param] | None = None
                 ) -> tuple[Any, ...]:
    """"8,16,32" -> (8, 16, 32), typed by the parameter; duplicates dropped, order kept."""
    catalogue = catalogue or params()
    if name not in catalogue:
        raise SweepError(f"unknown sweep parameter {name!r}; expected one of "
                         f"{', '.join(catalogue)}")
    parts = str(text).split(",")
    if not any(p.strip() for p in parts):
        raise SweepError(f"--{name.replace('_', '-')}: no values in {text!r}")
    values = [_parse_one(name, p, catalogue[name]) for p in parts]
    return tuple(dict.fromkeys(values))


@dataclass(frozen=True)
class Point:
    """One design point: every catalogue parameter's value, and the point's cache key."""

    values: dict[str, Any]
    key: str


@dataclass
class Space:
    """Axes (name -> values) over the catalogue's defaults; an axis with one value is a fixed
    setting."""

    axes: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.catalogue = params()
        for name, values in self.axes.items():
            if name not in self.catalogue:
                raise SweepError(f"unknown sweep parameter {name!r}; expected one of "
                                 f"{', '.join(self.catalogue)}")
            if not values:
                raise SweepError(f"sweep parameter {name!r} has no values")

    @classmethod
    def from_strings(cls, options: dict[str, str]) -> Space:
        catalogue = params()
        return cls({n: parse_values(n, t, catalogue) for n, t in options.items()})

    @property
    def size(self) -> int:
        return math.prod(len(v) for v in self.axes.values())

    def _values(self, combo: tuple[Any, ...]) -> dict[str, Any]:
        values = {n: p.default for n, p in self.catalogue.items()}
        values.update(zip(self.axes, combo, strict=True))
        return values

    def grid(self) -> list[dict[str, Any]]:
        """Every combination, the last axis varying fastest."""
        return [self._values(c) for c in itertools.product(*self.axes.values())]

    def sample(self, n: int, seed: int) -> list[dict[str, Any]]:
        """n distinct grid points drawn uniformly with a seeded generator (all of them if the
        grid is smaller), in grid order."""
        if n < 1:
            raise SweepError(f"--random: the sample size must be >= 1, got {n}")
        total = self.size
        # sampling indices never builds the grid, which may be huge
        picks = sorted(random.Random(seed).sample(range(total), min(n, total)))
        lists = list(self.axes.values())
        out = []
        for index in picks:
            combo = []
            for values in reversed(lists):
                index, digit = divmod(index, len(values))
                combo.append(values[digit])
            out.append(self._values(tuple(reversed(combo))))
        return out


def point_key(values: dict[str, Any], measures: dict[str, Any], model: str) -> str:
    """Stable across runs and machines: a hash of the parameters that matter to what is
    measured, the model's fingerprint and the tritium version."""
    cat = params()
    groups = {"array", "estimate"} | ({"synth"} if measures.get("synth") else set())
    used = {k: v for k, v in values.items() if cat[k].group in groups}
    text = json.dumps({"params": used, "measures": measures, "model": model,
                       "tritium": VERSION}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def make_points(rows: list[dict[str, Any]], measures: dict[str, Any], model: str
                ) -> list[Point]:
    return [Point(v, point_key(v, measures, model)) for v in rows]
