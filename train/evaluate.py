"""Accuracy of a trained model under the numerics an accelerator would use, on tritium's golden
backend (NumPy; no torch), for `tritium eval` and the sweep's "accuracy" metric.

A numerics point (`Numerics`) is:
- act_bits: every BitLinear input quantised per token (absmax) to that many bits
  (golden.quant.quantize_activations, as the host model does for ArrayConfig.act_bits);
- acc_bits and acc_overflow: the accumulator width and what an overflow does ("safe": the
  width must hold the model's longest sum; "wrap" / "saturate": bit-exact RTL behaviour,
  golden.gemm.array_gemm, which depends on the dataflow and the array's rows);
- weight_packing: how the ternary weights travel ("2bit": the HF layout, 4 per byte;
  "base3": 5 per byte). Every weight is packed and unpacked on its way to the backend, so the
  reported accuracy is that of the weights the accelerator decodes (packing is lossless, and
  eval shows it).

Tasks: exact match on the addition task (train/eval_add.py's seeded held-out problems) or the
perplexity of a text file under the model's own tokenizer.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..golden.base3 import pack_base3, unpack_base3
from ..golden.checks import InputError
from ..golden.config import ACC_OVERFLOW, BUS_BITS, ArrayConfig
from ..golden.packing import pack_hf, unpack_hf
from ..host import BitNetModel
from ..host.arch import resolve_model
from ..host.backends import DEFAULT_ARRAY, GoldenBackend, Prepared
from .eval_add import exact_match, held_out_problems

PACKINGS = {"2bit": 2.0, "base3": 1.6}     # bits per weight
# The options a numerics point varies, in the order tables and plots list them.
OPTIONS = ("act_bits", "acc_bits", "acc_overflow", "weight_packing")
TASKS = ("add", "text")
# A text file is scored in windows of at most the model's context; more tokens than this are
# not read unless asked, so a large file does not run for hours by accident.
DEFAULT_MAX_TOKENS = 4096


@dataclass(frozen=True)
class Numerics:
    act_bits: int = 8
    acc_bits: int = 32
    acc_overflow: str = "safe"
    weight_packing: str = "2bit"

    def __post_init__(self) -> None:
        # a width no array takes is bad input; a width the model's sums outgrow is a result
        for name, lo, hi in (("act_bits", 2, 8), ("acc_bits", 3, BUS_BITS)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise InputError(f"{name} must be an integer in {lo}..{hi}, got {v!r}")
        if self.weight_packing not in PACKINGS:
            raise InputError(f"weight_packing must be one of {', '.join(PACKINGS)}, got "
                             f"{self.weight_packing!r}")
        if self.acc_overflow not in ACC_OVERFLOW:
            raise InputError(f"acc_overflow must be one of {', '.join(ACC_OVERFLOW)}, got "
                             f"{self.acc_overflow!r}")

    def array(self, base: ArrayConfig, max_k: int) -> ArrayConfig:
        """base with these numerics, accumulating up to the model's longest K (so "safe" means
        safe for this model). Raises ConfigError naming the field when they do not fit."""
        values: dict[str, Any] = {"act_bits": self.act_bits, "acc_bits": self.acc_bits,
                                  "acc_overflow": self.acc_overflow, "max_k": max_k}
        # ArrayConfig.weight_packing (the RTL's packing option) is set where it exists
        if "weight_packing" in {f.name for f in fields(ArrayConfig)}:
            values["weight_packing"] = self.weight_packing
        return replace(base, **values)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def grid(options: Mapping[str, Sequence[Any]]) -> list[Numerics]:
    """Every combination of the values given per option (OPTIONS order, the last varying
    fastest); options not given keep Numerics' defaults."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise InputError(f"unknown numerics option(s) {', '.join(unknown)}; expected some of "
                         f"{', '.join(OPTIONS)}")
    names = [n for n in OPTIONS if n in options]
    for n in names:
        if not options[n]:
            raise InputError(f"{n}: give at least one value")
    return [Numerics(**dict(zip(names, combo, strict=True)))
            for combo in itertools.product(*(options[n] for n in names))]


class PackedGoldenBackend(GoldenBackend):
    """The golden backend, fed every weight after a round trip through the packing the
    accelerator would store it in."""

    def __init__(self, array: ArrayConfig, packing: str = "2bit") -> None:
        super().__init__(array)
        self.packing = packing

    def prepare(self, w: np.ndarray, name: str = "weight") -> Prepared:
        w = np.asarray(w)
        if self.packing == "base3":
            back = unpack_base3(pack_base3(w, name=name), w.shape, name=name)
        else:
            # the HF layout packs [out, in]; the backend holds [K, N] = [in, out]
            back = unpack_hf(pack_hf(w.T, name=name), w.shape[1], name=name).T
        if not np.array_equal(back, w):
            raise InputError(f"{name}: the {self.packing} packing did not round-trip")
        return super().prepare(np.ascontiguousarray(back, dtype=np.int8), name)


def load(model: str | Path, numerics: Numerics, base: ArrayConfig | None = None
         ) -> BitNetModel:
    """The model on the golden backend with these numerics (base: the array whose dataflow and
    rows decide where a saturating accumulator clamps; default the host's 4x4 ws)."""
    shape = resolve_model(model)
    array = numerics.array(base or DEFAULT_ARRAY, shape.max_k)
    return BitNetModel.from_pretrained(model, backend=PackedGoldenBackend(
        array, numerics.weight_packing))


def add_accuracy(model: str | Path, numerics: Numerics = Numerics(), *, problems: int = 1000,
                 seed: int = 0, digits: int = 3, base: ArrayConfig | None = None,
                 on_problem: Callable[[], None] | None = None) -> dict[str, Any]:
    """Exact match on `problems` held-out addition problems (seeded)."""
    todo = held_out_problems(problems, digits, seed)
    t0 = time.perf_counter()
    with load(model, numerics, base) as m:
        probe = "12+34="
        if m.tokenizer is None or m.decode(m.encode(probe)) != probe:
            raise InputError(f"model {model}: its tokenizer does not write {probe!r} back as "
                             "it read it; the addition task needs a model trained on it "
                             "(e.g. tiny-adder)")
        score = exact_match(m, todo, on_result=(lambda _r: on_problem()) if on_problem else None)
    return {**score.as_dict(), "seconds": time.perf_counter() - t0}


def text_tokens(m: BitNetModel, path: str | Path, max_tokens: int) -> list[int]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    ids = m.encode(text)[:max_tokens]
    if len(ids) < 2:
        raise InputError(f"{p}: needs at least 2 tokens to score a next-token prediction, "
                         f"got {len(ids)}")
    return ids


def perplexity(model: str | Path, text: str | Path, numerics: Numerics = Numerics(), *,
               max_tokens: int = DEFAULT_MAX_TOKENS, base: ArrayConfig | None = None,
               on_window: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """exp(mean negative log-likelihood) of each next token of the file, in windows of the
    model's context (each window starts fresh). on_window(done, total) after each window."""
    if max_tokens < 2:
        raise InputError(f"max_tokens must be >= 2, got {max_tokens}")
    t0 = time.perf_counter()
    with load(model, numerics, base) as m:
        ids = text_tokens(m, text, max_tokens)
        window = m.config.max_position_embeddings
        starts = list(range(0, len(ids) - 1, window))
        nll, count = 0.0, 0
        for i, s in enumerate(starts):
            chunk = ids[s: s + window + 1]
            logits = m.logits(chunk[:-1]).astype(np.float64)
            top = logits.max(axis=-1, keepdims=True)
            logz = top[:, 0] + np.log(np.exp(logits - top).sum(axis=-1))
            target = np.asarray(chunk[1:])
            nll += float((logz - logits[np.arange(target.size), target]).sum())
            count += target.size
            if on_window:
                on_window(i + 1, len(starts))
    return {"tokens": count, "nll": nll / count, "perplexity": math.exp(nll / count),
            "seconds": time.perf_counter() - t0}


def evaluate(model: str | Path, points: Iterable[Numerics], *, task: str = "add",
             text: str | Path | None = None, problems: int = 1000, seed: int = 0,
             digits: int = 3, max_tokens: int = DEFAULT_MAX_TOKENS,
             base: ArrayConfig | None = None,
             on_step: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """One row per numerics point: the point's options, then the task's scores. A point whose
    numerics the array cannot take (e.g. a "safe" accumulator too narrow for the model) is a
    row with an `error` and no score, and the others still run."""
    from ..golden.config import ConfigError

    if task not in TASKS:
        raise InputError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    if task == "text" and text is None:
        raise InputError("the text task needs a text file")
    rows = []
    for nm in points:
        row: dict[str, Any] = {**nm.as_dict(), "weight_bits": PACKINGS[nm.weight_packing]}
        try:
            if task == "add":
                row.update(add_accuracy(model, nm, problems=problems, seed=seed, digits=digits,
                                        base=base, on_problem=on_step))
            else:
                row.update(perplexity(model, text, nm, max_tokens=max_tokens, base=base,
                                      on_window=(lambda _d, _t: on_step()) if on_step
                                      else None))
        except ConfigError as exc:
            row["error"] = str(exc)
        rows.append(row)
    return rows
