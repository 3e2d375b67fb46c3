"""PNG plots of a `tritium estimate` result: per-layer cycles, a roofline, the energy split.

matplotlib is imported here only (with the Agg backend, no display needed), so the estimator
itself stays fast to import.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ..golden.checks import InputError
from ..golden.energy import COMPONENTS
from ..golden.files import atomic_write_bytes

PLOT_FILES = ("layer_cycles.png", "roofline.png", "energy_breakdown.png")


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise InputError("plots need matplotlib: pip install matplotlib") from None

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def write_plots(result: dict[str, Any], directory: str | Path) -> list[Path]:
    """Write the three PNGs into directory (created if missing); returns their paths."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    plt = _pyplot()
    paths = [plot_layer_cycles(plt, result, out / PLOT_FILES[0]),
             plot_roofline(plt, result, out / PLOT_FILES[1]),
             plot_energy(plt, result, out / PLOT_FILES[2])]
    return paths


def _save(fig: Any, path: Path) -> None:
    """Render first, then write atomically: an interrupted run leaves no half PNG."""
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    atomic_write_bytes(path, png.getvalue())


def _title(result: dict[str, Any]) -> str:
    a, mem = result["config"]["array"], result["config"]["memory"]
    return (f"{result['model']['name']}: {a['rows']}x{a['cols']} @ {a['clock_mhz']:g} MHz, "
            f"{mem['dram_gbps']:g} GB/s, dataflow {result['config']['dataflow']}")


def plot_layer_cycles(plt, result: dict[str, Any], path: Path) -> Path:
    """Stacked cycles per layer by projection, prefill (whole prompt) and decode (per token)."""
    layers = result["layers"]
    x = [lay["layer"] for lay in layers]
    fig, axes = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for ax, phase, label in ((axes[0], "prefill", f"prefill, {result['prefill']['tokens']} "
                              "tokens"), (axes[1], "decode", "decode, per token")):
        bottom = [0.0] * len(layers)
        # the projections as the model's architecture named them, in the order a layer runs them
        for proj in layers[0]["matmuls"]:
            vals = [lay["matmuls"][proj][phase]["cycles"] for lay in layers]
            dfs = {lay["matmuls"][proj][phase]["dataflow"] for lay in layers}
            ax.bar(x, vals, bottom=bottom, label=f"{proj} ({'/'.join(sorted(dfs))})")
            bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
        ax.set_ylabel("cycles")
        ax.set_title(label)
        ax.set_ylim(top=max(bottom) * 1.3 if max(bottom) > 0 else 1)   # room for the legend
        ax.legend(fontsize=7, ncol=4, loc="upper right")
    axes[1].set_xlabel("layer")
    fig.suptitle(_title(result), fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def plot_roofline(plt, result: dict[str, Any], path: Path) -> Path:
    """Ternary ops/s against operational intensity (ops per DRAM byte), with the PE roof
    (every PE adding every cycle), the DRAM roof, and the prefill and decode design points.
    One op is one (activation, weight) pair, the adder-only PE's unit of work."""
    a = result["config"]["array"]
    mem = result["config"]["memory"]
    f = a["clock_mhz"] * 1e6
    peak = a["rows"] * a["cols"] * f
    bw = mem["dram_gbps"] * 1e9
    points = {}
    for phase in ("prefill", "decode"):
        ph = result[phase]
        seconds = ph.get("seconds", ph.get("seconds_per_token"))
        ops = ph["ops"]
        points[phase] = (ops / ph["dram_bytes"], ops / seconds)
    lo = min(p[0] for p in points.values()) / 10
    hi = max(max(p[0] for p in points.values()) * 10, peak / bw * 10)
    xs = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    ax.loglog(xs, [min(peak, x * bw) for x in xs], "k-", label="roofline")
    ax.axhline(peak, color="grey", ls=":", lw=0.8)
    ax.axvline(peak / bw, color="grey", ls=":", lw=0.8)
    for phase, (ix, iy) in points.items():
        ax.loglog([ix], [iy], "o", ms=8, label=f"{phase}: {iy / 1e9:.3g} Gop/s at "
                  f"{ix:.3g} op/B")
    ax.set_xlabel("operational intensity (ternary ops per DRAM byte)")
    ax.set_ylabel("ternary ops/s (one op = one activation x weight add)")
    dec = result["decode"]
    ax.set_title(f"{_title(result)}\ndecode {dec['tokens_per_s']:.2f} tok/s = "
                 f"{dec['roofline_fraction']:.1%} of the DRAM roofline "
                 f"{dec['roofline_tokens_per_s']:.2f} tok/s", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def plot_energy(plt, result: dict[str, Any], path: Path) -> Path:
    """Energy per token by component, prefill and decode: stacked (linear, the totals) and
    side by side on a log axis (DRAM dwarfs the rest, which a linear axis hides)."""
    e = result["energy"]
    phases = (("prefill", e["prefill_breakdown_j_per_token"]),
              ("decode", e["decode_breakdown_j_per_token"]))
    fig, (ax, lax) = plt.subplots(1, 2, figsize=(12, 5.5),
                                  gridspec_kw={"width_ratios": [1, 1.4]})
    bottom = [0.0, 0.0]
    for comp in COMPONENTS:
        vals = [bd.get(comp, 0.0) * 1e3 for _, bd in phases]
        ax.bar([p for p, _ in phases], vals, bottom=bottom, label=comp)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    for i, total in enumerate(bottom):
        ax.annotate(f"{total:.3g} mJ", (i, total), ha="center", va="bottom", fontsize=9)
    ax.set_ylabel("mJ per token")
    ax.set_ylim(top=max(bottom) * 1.12 if max(bottom) > 0 else 1)
    ax.legend(fontsize=8)
    ys = range(len(COMPONENTS))
    height = 0.4
    for j, (name, bd) in enumerate(phases):
        vals = [bd.get(c, 0.0) * 1e3 for c in COMPONENTS]
        lax.barh([y + (j - 0.5) * height for y in ys], vals, height=height, label=name)
    lax.set_yticks(list(ys), COMPONENTS)
    lax.invert_yaxis()
    positive = [bd[c] for _, bd in phases for c in COMPONENTS if bd.get(c, 0.0) > 0]
    if positive:
        lax.set_xscale("log")
    lax.set_xlabel("mJ per token (log)")
    lax.legend(fontsize=8)
    lax.grid(True, axis="x", which="both", alpha=0.3)
    t = e["table"]
    fig.suptitle(f"{_title(result)}\nenergy table {t['name']} at {t['node_nm']:g} nm "
                 "(CPU-side ops and LM head excluded)", fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path
