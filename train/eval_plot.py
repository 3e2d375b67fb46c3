"""The plot of `tritium eval`: a score against each numerics option that takes several values."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..golden.files import atomic_write_bytes
from .evaluate import OPTIONS


def varied(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The options that take more than one value across rows (OPTIONS order)."""
    return [o for o in OPTIONS if len({r[o] for r in rows}) > 1]


def plot_scores(rows: Sequence[dict[str, Any]], score: str, path: str | Path,
                title: str = "") -> Path:
    """One panel per varied option (or one panel over act_bits when none varies): `score`
    against the option's values, one line per combination of the other varied options.
    Rows with an error have no score and leave a gap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes_opts = varied(rows) or ["act_bits"]
    fig, axes = plt.subplots(1, len(axes_opts), figsize=(4.2 * len(axes_opts), 3.4),
                             squeeze=False)
    for ax, opt in zip(axes[0], axes_opts, strict=True):
        values = list(dict.fromkeys(r[opt] for r in rows))
        others = [o for o in axes_opts if o != opt]
        lines: dict[tuple, dict[Any, float]] = {}
        for r in rows:
            key = tuple(r[o] for o in others)
            if r.get(score) is not None:
                lines.setdefault(key, {})[r[opt]] = r[score]
        for key, pts in lines.items():
            xs = [i for i, v in enumerate(values) if v in pts]
            label = ", ".join(f"{o}={k}" for o, k in zip(others, key, strict=True)) or None
            ax.plot(xs, [pts[values[i]] for i in xs], marker="o", label=label)
        ax.set_xticks(range(len(values)), [str(v) for v in values])
        ax.set_xlabel(opt)
        ax.set_ylabel(score)
        ax.grid(alpha=0.3)
        if len(lines) > 1:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    png = io.BytesIO()      # render first: an interrupted run leaves no half PNG
    fig.savefig(png, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(path, png.getvalue())
