"""Evaluate every point of a design space, cache each finished point, write the results.

A point needs up to three kinds of job: the estimate (milliseconds), synthesis (a minute or
more) and accuracy metrics (as slow as their evaluator). Synthesis and metric jobs are
deduplicated across points (points differing only in, say, DRAM bandwidth share one synthesis;
a metric declaring its parameters runs once per distinct value of them) and each goes to the
executor as a task of its own, submitted first; the estimates travel in a few large batches,
because shipping one 3 ms job per task would cost more than computing it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..golden.files import atomic_write
from . import adapters
from .adapters import (
    ESTIMATE_COLUMNS,
    INVALID_ERRORS,
    SYNTH_COLUMNS,
    SYNTH_MODES,
    VERSION,
    Model,
    PointConfig,
    SweepError,
)
from .executors import SerialExecutor
from .metrics import Metric
from .pareto import Objective, pareto_front, plot_pareto
from .space import Point, Space, make_points

# --- jobs (what workers run) ---------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    kind: str            # estimate | synth | metric
    key: str
    args: tuple


def _one_line(exc: BaseException) -> str:
    # Ray wraps a task's exception; its own first line is only the task's name
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException) and cause is not exc:
        return _one_line(cause)
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    if isinstance(exc, INVALID_ERRORS):
        return first or type(exc).__name__
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def run_job(job: Job) -> dict[str, Any]:
    try:
        if job.kind == "estimate":
            model, pc = job.args
            values = adapters.run_estimate(model, pc)
        elif job.kind == "synth":
            values = adapters.run_synth(*job.args)
        else:
            metric, spec, inputs = job.args
            values = metric.columns(metric.fn(spec, inputs))
        return {"values": values}
    except Exception as exc:   # one point's failure must not end the sweep
        return {"error": _one_line(exc), "invalid": isinstance(exc, INVALID_ERRORS)}


def run_task(jobs: list[Job]) -> list[tuple[str, dict[str, Any]]]:
    """The unit an executor ships: a batch of jobs, each caught on its own."""
    return [(j.key, run_job(j)) for j in jobs]


# --- the sweep -----------------------------------------------------------------------------------


@dataclass
class SweepSpec:
    model: str
    space: Space
    random: int | None = None         # sample this many points instead of the whole grid
    seed: int = 0
    synth: str | None = None          # None | "full" | "fit"
    metrics: list[Metric] = field(default_factory=list)
    objectives: list[Objective] = field(default_factory=lambda: [
        Objective("decode_tokens_per_s", "max"), Objective("energy_j_per_token", "min")])
    build_root: str | None = None     # synthesis build folder (default: $TRITIUM_BUILD or build)

    def __post_init__(self) -> None:
        if self.synth is not None and self.synth not in SYNTH_MODES:
            raise SweepError(f"--synth must be one of {', '.join(SYNTH_MODES)}, got "
                             f"{self.synth!r}")
        cat = self.space.catalogue
        if self.synth is None:
            extra = [n for n in self.space.axes if cat[n].group == "synth"]
            if extra:
                raise SweepError(f"--{extra[0]} chooses the synthesis target: add --synth")
        for device in self.space.axes.get("device", ()):
            adapters.device_of(device)        # a typo is the user's error, not a bad point
        if "dram_gbps" in self.space.axes and "dram_bytes_per_cycle" in self.space.axes:
            raise SweepError("give the DRAM bandwidth as --dram-gbps or as "
                             "--dram-bytes-per-cycle, not both")
        for m in self.metrics:
            for p in m.params or ():
                if p not in cat:
                    raise SweepError(f"metric {m.name!r} depends on unknown parameter {p!r}")
        if len(self.objectives) != 2:
            raise SweepError(f"--objectives: give two objectives, got {len(self.objectives)}")
        known = set(self.result_columns()) | set(self.param_names())
        for o in self.objectives:
            if o.column not in known and not any(o.column == m.name or
                                                 o.column.startswith(m.name + "_")
                                                 for m in self.metrics):
                raise SweepError(f"--objectives: unknown column {o.column!r}; expected one of "
                                 f"{', '.join(self.result_columns())}, a parameter or a "
                                 f"metric's column")

    @property
    def measures(self) -> dict[str, Any]:
        return {"estimate": True, "synth": self.synth,
                "metrics": {m.name: m.params for m in self.metrics}}

    def param_names(self) -> list[str]:
        groups = {"array", "estimate"} | ({"synth"} if self.synth else set())
        return [n for n, p in self.space.catalogue.items() if p.group in groups]

    def result_columns(self) -> list[str]:
        return list(ESTIMATE_COLUMNS) + (list(SYNTH_COLUMNS) if self.synth else [])


@dataclass
class SweepResult:
    records: list[dict[str, Any]]
    columns: list[str]
    evaluated: int                    # points computed by this run
    cached: int                       # points taken from DIR/points
    jobs: dict[str, int]              # jobs run, per kind
    out_dir: Path

    def rows(self) -> list[dict[str, Any]]:
        return [flat_row(r, self.columns) for r in self.records]


def flat_row(record: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    merged = {"key": record["key"], "status": record["status"], "error": record["error"],
              **record["params"], **record["results"], "pareto": record.get("pareto", False)}
    return {c: merged.get(c) for c in columns}


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()
                          ).hexdigest()[:16]


class _Plan:
    """Jobs for the points still to compute, deduplicated, and which points wait on which."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.needs: dict[str, list[str]] = {}        # point key -> job keys
        self.waiting: dict[str, list[str]] = {}      # job key -> point keys

    def add(self, point: str, job: Job) -> None:
        self.jobs.setdefault(job.key, job)
        self.needs.setdefault(point, []).append(job.key)
        self.waiting.setdefault(job.key, []).append(point)

    def tasks(self, workers: int) -> list[list[Job]]:
        heavy = [[j] for j in self.jobs.values() if j.kind != "estimate"]
        light = [j for j in self.jobs.values() if j.kind == "estimate"]
        if not light:
            return heavy
        # a few batches per worker: big enough to hide the shipping cost, small enough to
        # spread over the workers and move the progress bar
        size = max(1, math.ceil(len(light) / (4 * max(1, workers))))
        return heavy + [light[i:i + size] for i in range(0, len(light), size)]


def _load_cached(path: Path) -> dict[str, Any] | None:
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    # a point that failed for a reason outside the design (a tool, a worker) is tried again
    return rec if isinstance(rec, dict) and rec.get("status") in ("ok", "invalid") else None


@contextmanager
def _progress(total: int, initial: int, enabled: bool) -> Iterator[Any]:
    from tqdm import tqdm

    bar = tqdm(total=total, initial=initial, desc="sweep", unit="pt", disable=not enabled,
               dynamic_ncols=True)
    try:
        yield bar
    finally:
        bar.close()


def sweep(spec: SweepSpec, out_dir: str | Path, executor: Any = None, *,
          progress: bool = True) -> SweepResult:
    """Evaluate spec's points on `executor` (default: in this process), writing each finished
    point to DIR/points/<key>.json and then DIR/results.{csv,json} and DIR/pareto.png."""
    out = Path(out_dir)
    executor = executor or SerialExecutor()
    rows = (spec.space.sample(spec.random, spec.seed) if spec.random
            else spec.space.grid())
    count_zeros = any(v.get("zero_fraction") is None for v in rows)
    model = adapters.load_model(spec.model, count_zeros)
    points = list({p.key: p for p in make_points(rows, spec.measures, model.fingerprint)}
                  .values())
    build_root = spec.build_root or adapters.default_build_root()
    point_dir = out / "points"

    records: dict[str, dict[str, Any]] = {}
    plan = _Plan()
    configs: dict[str, PointConfig] = {}
    n_cached = 0
    for p in points:
        cached = _load_cached(point_dir / f"{p.key}.json")
        if cached is not None:
            records[p.key] = cached
            n_cached += 1
            continue
        try:
            pc = adapters.point_config(_given(p, spec), spec.space.catalogue)
        except INVALID_ERRORS as exc:
            rec = _record(spec, model, p, None, {}, [("config", _one_line(exc), True)])
            records[p.key] = rec
            atomic_write(point_dir / f"{p.key}.json", json.dumps(rec, indent=2) + "\n")
            continue
        configs[p.key] = pc
        _plan_point(plan, spec, model, p, pc, build_root)

    outcomes: dict[str, dict[str, Any]] = {}
    jobs_run: dict[str, int] = {}
    tasks = plan.tasks(getattr(executor, "workers", 1))
    by_key = {p.key: p for p in points}
    with _progress(len(points), len(records), progress) as bar:
        for i, result in executor.run(run_task, tasks):
            if isinstance(result, BaseException):     # the worker itself died
                result = [(j.key, {"error": _one_line(result), "invalid": False})
                          for j in tasks[i]]
            for job_key, outcome in result:
                outcomes[job_key] = outcome
                kind = plan.jobs[job_key].kind
                jobs_run[kind] = jobs_run.get(kind, 0) + 1
                for pk in plan.waiting[job_key]:
                    if pk in records or not all(j in outcomes for j in plan.needs[pk]):
                        continue
                    rec = _assemble(spec, model, by_key[pk], configs[pk],
                                    [(plan.jobs[j].kind, outcomes[j]) for j in plan.needs[pk]])
                    records[pk] = rec
                    atomic_write(point_dir / f"{pk}.json", json.dumps(rec, indent=2) + "\n")
                    bar.update(1)

    ordered = [records[p.key] for p in points]
    columns = _columns(spec, ordered)
    _mark_pareto(ordered, spec.objectives)
    result = SweepResult(ordered, columns, len(points) - n_cached, n_cached, jobs_run, out)
    write_outputs(result, spec, model)
    return result


def _given(p: Point, spec: SweepSpec) -> dict[str, Any]:
    names = spec.param_names()
    return {k: v for k, v in p.values.items() if k in names}


def _plan_point(plan: _Plan, spec: SweepSpec, model: Model, p: Point, pc: PointConfig,
                build_root: str) -> None:
    plan.add(p.key, Job("estimate", f"estimate:{p.key}", (model, pc)))
    if spec.synth:
        array = pc.array.to_dict()
        args = (array, *adapters.synth_target(pc), spec.synth, build_root)
        plan.add(p.key, Job("synth", "synth:" + _hash(args[:4]), args))
    values = pc.flat()
    for m in spec.metrics:
        inputs = m.inputs(values)
        key = "metric:" + _hash([m.name, inputs, model.fingerprint])
        plan.add(p.key, Job("metric", key, (m, model.spec, inputs)))


def _assemble(spec: SweepSpec, model: Model, p: Point, pc: PointConfig,
              outcomes: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """A point's record from its jobs' outcomes: the values of those that worked, the errors
    of those that did not."""
    values: dict[str, Any] = {}
    errors = []
    for kind, o in outcomes:
        if "error" in o:
            errors.append((kind, o["error"], o["invalid"]))
        else:
            values.update(o["values"])
    return _record(spec, model, p, pc, values, errors)


def _record(spec: SweepSpec, model: Model, p: Point, pc: PointConfig | None,
            values: dict[str, Any], errors: list[tuple[str, str, bool]]) -> dict[str, Any]:
    if not errors:
        status = "ok"
    elif any(invalid for _, _, invalid in errors):
        status = "invalid"
    else:
        status = "failed"
    names = spec.param_names()
    params = {n: v for n, v in (pc.flat() if pc else p.values).items() if n in names}
    return {
        "key": p.key, "status": status,
        "error": "; ".join(f"{kind}: {msg}" for kind, msg, _ in errors) or None,
        "params": params, "results": values,
        "model": model.spec, "measures": spec.measures, "tritium": VERSION,
    }


def _columns(spec: SweepSpec, records: list[dict[str, Any]]) -> list[str]:
    known = spec.result_columns()
    extra: dict[str, None] = {}
    for r in records:
        for c in r["results"]:
            if c not in known:
                extra[c] = None
    return ["key", "status", "error", *spec.param_names(), *known, *extra, "pareto"]


def _mark_pareto(records: list[dict[str, Any]], objectives: list[Objective]) -> None:
    candidates = []
    for r in records:
        r["pareto"] = False
        vals = [r["results"].get(o.column, r["params"].get(o.column)) for o in objectives]
        if r["status"] == "ok" and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                       and math.isfinite(v) for v in vals):
            candidates.append((r, vals))
    front = pareto_front([v for _, v in candidates], [o.sense for o in objectives])
    for (r, _), on in zip(candidates, front, strict=True):
        r["pareto"] = on


def write_outputs(result: SweepResult, spec: SweepSpec, model: Model) -> None:
    import csv
    import io

    rows = result.rows()
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=result.columns, lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: "" if v is None else v for k, v in row.items()})
    atomic_write(result.out_dir / "results.csv", buf.getvalue())
    doc = {
        "tool": "tritium sweep", "tritium": VERSION, "model": model.spec,
        "axes": {k: list(v) for k, v in spec.space.axes.items()},
        "sample": {"random": spec.random, "seed": spec.seed} if spec.random else None,
        "measures": spec.measures,
        "objectives": [o.spec() for o in spec.objectives],
        "columns": result.columns,
        "points": rows,
    }
    atomic_write(result.out_dir / "results.json", json.dumps(doc, indent=2) + "\n")
    atomic_write(result.out_dir / "pareto.png",
                 lambda tmp: plot_pareto(rows, spec.objectives, tmp,
                                         title=f"tritium sweep: {model.spec}"))
