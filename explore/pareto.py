"""Objectives, the Pareto front of a set of points, and its plot."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .adapters import SweepError

SENSES = ("max", "min")


@dataclass(frozen=True)
class Objective:
    column: str
    sense: str           # max | min

    def spec(self) -> str:
        return f"{self.column}:{self.sense}"


def parse_objectives(text: str) -> list[Objective]:
    """"decode_tokens_per_s:max,energy_j_per_token:min" -> two Objectives."""
    out = []
    for part in text.split(","):
        part = part.strip()
        column, sep, sense = part.partition(":")
        if not column or not sep or sense not in SENSES:
            raise SweepError(f"--objectives: {part!r} must be COLUMN:max or COLUMN:min")
        out.append(Objective(column, sense))
    return out


def dominates(a: Sequence[float], b: Sequence[float], senses: Sequence[str]) -> bool:
    """a is at least as good as b in every objective and better in one."""
    better = False
    for x, y, s in zip(a, b, senses, strict=True):
        if s == "min":
            x, y = -x, -y
        if x < y:
            return False
        better = better or x > y
    return better


def pareto_front(values: Sequence[Sequence[float]], senses: Sequence[str]) -> list[bool]:
    """For each point, whether no other point dominates it (equal points are all kept)."""
    return [not any(dominates(o, v, senses) for o in values) for v in values]


def plot_pareto(rows: list[dict[str, Any]], objectives: list[Objective], path: Path, *,
                title: str = "") -> None:
    """Scatter of the two objectives: dominated points grey, the front coloured and joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ox, oy = objectives
    pts = [(r[ox.column], r[oy.column], bool(r.get("pareto"))) for r in rows
           if r.get("status") == "ok" and isinstance(r.get(ox.column), (int, float))
           and isinstance(r.get(oy.column), (int, float))]
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    try:
        dom = [(x, y) for x, y, on in pts if not on]
        front = sorted((x, y) for x, y, on in pts if on)
        if dom:
            ax.scatter(*zip(*dom, strict=True), color="0.7", s=18,
                       label=f"dominated ({len(dom)})")
        if front:
            ax.plot(*zip(*front, strict=True), color="C0", marker="o", ms=5,
                    label=f"Pareto front ({len(front)})")
        if not pts:
            ax.text(0.5, 0.5, "no point has both objectives", ha="center", va="center",
                    transform=ax.transAxes)
        ax.set_xlabel(f"{ox.column} ({'higher' if ox.sense == 'max' else 'lower'} is better)")
        ax.set_ylabel(f"{oy.column} ({'higher' if oy.sense == 'max' else 'lower'} is better)")
        if title:
            ax.set_title(title)
        ax.grid(True, alpha=0.3)
        if pts:
            ax.legend(loc="best", fontsize="small")
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=120)
    finally:
        plt.close(fig)
