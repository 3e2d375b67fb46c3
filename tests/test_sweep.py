"""tritium.explore (`tritium sweep`): design spaces, the pool and Ray executors, the per-point
cache, failed and invalid points, the output files, the Pareto front and a synthesis point."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

import tritium.cli
from tritium.explore import (
    Objective,
    PoolExecutor,
    RayExecutor,
    Space,
    SweepError,
    SweepSpec,
    adapters,
    pareto_front,
    parse_objectives,
    register_metric,
    sweep,
    unregister_metric,
)
from tritium.explore.pareto import dominates
from tritium.golden import ArrayConfig
from tritium.host.arch import resolve_model
from tritium.host.estimate import EstimateConfig, estimate

B2 = "bitnet-b1.58-2B-4T"
COUNT_FILE = "TRITIUM_TEST_SWEEP_COUNT"


def small_space() -> Space:
    return Space.from_strings({"rows": "4,8", "dataflow": "ws,os", "clock_mhz": "100,250",
                               "dram_gbps": "8"})


def quiet(spec: SweepSpec, out: Path, executor: Any = None):
    return sweep(spec, out, executor, progress=False)


# --- metrics used by the tests (module level, so spawned workers can import them) ----------------


def probe_metric(model: str, params: dict[str, Any]) -> float:
    """Counts its calls in a file (workers are other processes) and returns a value known
    without the code under test."""
    with open(os.environ[COUNT_FILE], "a") as f:
        f.write(f"{params['act_bits']}\n")
    return params["act_bits"] * 10.0


def broken_metric(model: str, params: dict[str, Any]) -> float:
    if params["rows"] == 8:
        raise RuntimeError("evaluator crashed\nsecond line of a long traceback")
    return 1.0


RAY_ARGS = {"num_cpus": 2, "include_dashboard": False, "log_to_driver": False,
            "logging_level": "ERROR"}


@contextlib.contextmanager
def outside_the_checkout(tmp: Path):
    """Ray workers put the driver's working directory first on sys.path; in a source checkout
    the bare tritium/ folder there would shadow the installed package's subpackages."""
    old = os.getcwd()
    os.chdir(tmp)
    try:
        yield
    finally:
        os.chdir(old)


@pytest.fixture(scope="module")
def ray_module(tmp_path_factory: pytest.TempPathFactory):
    import ray
    yield ray, tmp_path_factory.mktemp("ray_cwd")
    ray.shutdown()


@pytest.fixture
def ray_local(ray_module: tuple[Any, Path]) -> Any:
    """A local Ray instance kept for the rest of the module: its start-up costs ~10 s."""
    ray, cwd = ray_module
    if not ray.is_initialized():
        with outside_the_checkout(cwd):
            ray.init(**RAY_ARGS)
    return ray


# --- the space ------------------------------------------------------------------------------------


def test_every_arrayconfig_field_is_a_sweep_parameter() -> None:
    cat = adapters.params()
    for f in dataclasses.fields(ArrayConfig):
        assert cat[f.name].group == "array"
    for name in ("dram_gbps", "prompt_len", "gen_len", "weight_bits", "zero_fraction"):
        assert cat[name].group == "estimate"
    assert cat["device"].group == "synth"


def test_grid_and_random_sample() -> None:
    space = Space.from_strings({"rows": "4,8,16", "cols": "8,16", "clock_mhz": "100,250"})
    assert space.size == 12
    grid = space.grid()
    combos = [(p["rows"], p["cols"], p["clock_mhz"]) for p in grid]
    assert combos == [(r, c, k) for r in (4, 8, 16) for c in (8, 16) for k in (100.0, 250.0)]
    assert all(p["act_bits"] == ArrayConfig.act_bits for p in grid)   # defaults elsewhere
    sample = space.sample(5, seed=3)
    assert sample == space.sample(5, seed=3)
    assert len({json.dumps(p, sort_keys=True) for p in sample}) == 5
    assert all(p in grid for p in sample)
    assert sorted(sample, key=grid.index) == sample
    assert space.sample(100, seed=0) == grid


@pytest.mark.parametrize(("options", "message"), [
    ({"rows": "8,x"}, "--rows: 'x' is not an integer"),
    ({"clock_mhz": "100,fast"}, "--clock-mhz: 'fast' is not a number"),
    ({"rows": ","}, "--rows: no values"),
    ({"bogus": "1"}, "unknown sweep parameter 'bogus'"),
])
def test_bad_values_name_the_option(options: dict[str, str], message: str) -> None:
    with pytest.raises(SweepError, match=message):
        Space.from_strings(options)


def test_point_keys_change_with_what_is_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    from tritium.explore import space as space_mod

    values = Space.from_strings({"rows": "4"}).grid()[0]
    est = {"estimate": True, "synth": None, "metrics": {}}
    key = space_mod.point_key(values, est, "model-a")
    assert key == space_mod.point_key(dict(values), dict(est), "model-a")
    assert key != space_mod.point_key({**values, "rows": 8}, est, "model-a")
    assert key != space_mod.point_key(values, {**est, "synth": "fit"}, "model-a")
    assert key != space_mod.point_key(values, est, "model-b")
    # the synthesis target matters only when synthesising
    assert key == space_mod.point_key({**values, "device": "ecp5-85k"}, est, "model-a")
    monkeypatch.setattr(space_mod, "VERSION", "99.0")
    assert key != space_mod.point_key(values, est, "model-a")


# --- the Pareto front -----------------------------------------------------------------------------


def test_pareto_front_of_a_hand_made_set() -> None:
    # (tokens/s: max, J/token: min). By hand: C is beaten by B (faster and cheaper), D by A;
    # B and E are equal, so neither dominates the other; F is the fastest.
    pts = [(10, 1.0), (20, 2.0), (15, 2.5), (5, 1.5), (20, 2.0), (30, 5.0)]
    assert pareto_front(pts, ["max", "min"]) == [True, True, False, False, True, True]
    # both minimised: (1, 1) beats everything but itself
    assert pareto_front([(1, 1), (1, 2), (2, 1), (0, 3)], ["min", "min"]) == [
        True, False, False, True]
    assert dominates((2, 1), (1, 1), ["max", "max"])
    assert not dominates((1, 1), (1, 1), ["max", "max"])


def test_objectives_are_parsed_and_checked() -> None:
    assert parse_objectives("luts:min,fmax_mhz:max") == [Objective("luts", "min"),
                                                          Objective("fmax_mhz", "max")]
    with pytest.raises(SweepError, match="--objectives: 'luts:least'"):
        parse_objectives("luts:least")
    with pytest.raises(SweepError, match="unknown column 'luts'"):   # luts needs --synth
        SweepSpec(B2, small_space(), objectives=parse_objectives("luts:min,decode_w:min"))


# --- pool and Ray ---------------------------------------------------------------------------------


def test_ray_executor_starts_and_stops_its_own_instance(
        tmp_path: Path, ray_module: tuple[Any, Path]) -> None:
    ray, cwd = ray_module
    ray.shutdown()
    with outside_the_checkout(cwd):
        ex = RayExecutor("local", num_cpus=1)
        assert ray.is_initialized()
        res = quiet(SweepSpec(B2, Space.from_strings({"rows": "4,8"})), tmp_path, ex)
        ex.close()
    assert not ray.is_initialized()
    assert [r["status"] for r in res.rows()] == ["ok", "ok"]


def test_pool_and_ray_give_identical_results(tmp_path: Path, ray_local: Any) -> None:
    spec = SweepSpec(B2, small_space())
    on_pool = quiet(spec, tmp_path / "pool", PoolExecutor(2))
    ray_exec = RayExecutor("local")          # joins the module's instance
    on_ray = quiet(spec, tmp_path / "ray", ray_exec)
    ray_exec.close()
    assert ray_local.is_initialized()        # an instance it did not start stays up
    serial = quiet(spec, tmp_path / "serial")
    assert on_pool.evaluated == on_ray.evaluated == 8
    assert on_pool.rows() == on_ray.rows() == serial.rows()
    assert [r["status"] for r in on_pool.rows()] == ["ok"] * 8
    # the numbers are the estimator's for that design
    row = on_pool.rows()[5]                  # rows 8, ws, 250 MHz
    assert (row["rows"], row["dataflow"], row["clock_mhz"]) == (8, "ws", 250.0)
    cfg = ArrayConfig(rows=8, dataflow="ws", clock_mhz=250.0,
                      dram_bytes_per_cycle=row["dram_bytes_per_cycle"])
    ref = estimate(resolve_model(B2), EstimateConfig(cfg, 8.0, dataflow="ws"))
    assert row["decode_tokens_per_s"] == ref["decode"]["tokens_per_s"]
    assert row["energy_j_per_token"] == ref["energy"]["decode_j_per_token"]
    assert row["prefill_tokens_per_s"] == ref["prefill"]["tokens_per_s"]
    assert row["dram_bytes_per_cycle"] == 8e9 / 250e6       # 8 GB/s at 250 MHz


def test_ray_missing_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)      # import ray -> ImportError
    with pytest.raises(SweepError, match=r"--ray needs Ray: pip install 'tritium\[ray\]'"):
        RayExecutor("local")


# --- caching, failures ----------------------------------------------------------------------------


def test_second_run_evaluates_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = adapters.run_estimate
    monkeypatch.setattr(adapters, "run_estimate",
                        lambda model, pc: calls.append(pc) or real(model, pc))
    spec = SweepSpec(B2, small_space())
    first = quiet(spec, tmp_path)
    assert len(calls) == 8 and first.evaluated == 8 and first.cached == 0
    assert len(list((tmp_path / "points").glob("*.json"))) == 8
    second = quiet(spec, tmp_path)
    assert len(calls) == 8
    assert second.evaluated == 0 and second.cached == 8
    assert second.rows() == first.rows()
    # a different question (another estimator option) is a different point
    third = quiet(SweepSpec(B2, Space({**small_space().axes, "prompt_len": (64,)})), tmp_path)
    assert third.evaluated == 8 and len(calls) == 16


def test_metric_is_evaluated_once_per_distinct_input_on_the_pool(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    count = tmp_path / "count.txt"
    monkeypatch.setenv(COUNT_FILE, str(count))
    metric = register_metric("probe", probe_metric, params=("act_bits",))
    try:
        space = Space.from_strings({"rows": "4,8", "act_bits": "4,8"})
        spec = SweepSpec(B2, space, metrics=[metric])
        res = quiet(spec, tmp_path / "out", PoolExecutor(2))
        assert sorted(count.read_text().split()) == ["4", "8"]     # not once per point
        assert res.jobs == {"estimate": 4, "metric": 2}
        assert [(r["act_bits"], r["probe"]) for r in res.rows()] == [
            (4, 40.0), (8, 80.0), (4, 40.0), (8, 80.0)]
        again = quiet(spec, tmp_path / "out", PoolExecutor(2))
        assert sorted(count.read_text().split()) == ["4", "8"]
        assert again.evaluated == 0 and again.jobs == {}
    finally:
        unregister_metric("probe")


def test_an_invalid_point_is_reported_and_the_others_kept(tmp_path: Path) -> None:
    # acc_bits 16 cannot hold K = 8192 sums of 8-bit activations: ConfigError for that point;
    # max_k 4096 is too short for 2B-4T's K = 6912 reduction: the estimator rejects it.
    space = Space.from_strings({"acc_bits": "16,32", "max_k": "8192,4096"})
    res = quiet(SweepSpec(B2, space), tmp_path, PoolExecutor(2))
    assert res.evaluated == 4 and res.cached == 0
    rows = {(r["acc_bits"], r["max_k"]): r for r in res.rows()}
    assert rows[(32, 8192)]["status"] == "ok"
    assert rows[(32, 8192)]["decode_tokens_per_s"] > 0
    for bad in ((16, 8192), (16, 4096)):
        assert rows[bad]["status"] == "invalid"
        assert "max_k" in rows[bad]["error"] and "acc_bits=16" in rows[bad]["error"]
        assert "\n" not in rows[bad]["error"]
        assert rows[bad]["decode_tokens_per_s"] is None
    assert rows[(32, 4096)]["status"] == "invalid"
    assert "K=6912" in rows[(32, 4096)]["error"]
    # invalid points are answers: a second run does not try them again
    assert quiet(SweepSpec(B2, space), tmp_path).evaluated == 0


def test_a_failing_evaluator_fails_its_points_and_is_retried(tmp_path: Path) -> None:
    metric = register_metric("broken", broken_metric)
    try:
        spec = SweepSpec(B2, Space.from_strings({"rows": "4,8"}), metrics=[metric])
        res = quiet(spec, tmp_path)
        ok, failed = res.rows()
        assert ok["status"] == "ok" and ok["broken"] == 1.0
        assert failed["status"] == "failed"
        assert failed["error"] == "metric: RuntimeError: evaluator crashed"
        assert failed["decode_tokens_per_s"] > 0        # what did work is kept
        again = quiet(spec, tmp_path)
        assert again.evaluated == 1 and again.cached == 1
    finally:
        unregister_metric("broken")


def test_accuracy_without_an_evaluator_is_a_clear_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tritium.explore import metrics

    monkeypatch.setattr(metrics, "_REGISTRY", {})
    with pytest.raises(SweepError, match="no accuracy evaluator is registered"):
        metrics.select(None)


# --- outputs --------------------------------------------------------------------------------------


def test_csv_json_and_png_are_written(tmp_path: Path) -> None:
    res = quiet(SweepSpec(B2, small_space()), tmp_path)
    with open(tmp_path / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    doc = json.loads((tmp_path / "results.json").read_text())
    assert len(table) == len(doc["points"]) == 8
    assert list(table[0]) == doc["columns"] == res.columns
    for line, point in zip(table, doc["points"], strict=True):
        assert line["key"] == point["key"]
        assert float(line["decode_tokens_per_s"]) == point["decode_tokens_per_s"]
        assert line["pareto"] == str(point["pareto"])
    # the front marked in the files is the front of the hand-checked function
    ok = [p for p in doc["points"] if p["status"] == "ok"]
    front = pareto_front([(p["decode_tokens_per_s"], p["energy_j_per_token"]) for p in ok],
                         ["max", "min"])
    assert [p["pareto"] for p in ok] == front and any(front) and not all(front)
    assert (tmp_path / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*.tmp"))


# --- synthesis ------------------------------------------------------------------------------------


def test_synthesis_point_on_the_pool(tmp_path: Path) -> None:
    """A 2x2 top on the iCE40UP5K (Yosys' fit check): one synthesis for two points that differ
    only in an estimator option."""
    from tritium.hdl import synth

    build = tmp_path / "build"
    space = Space.from_strings({"rows": "2", "cols": "2", "prompt_len": "64,128"})
    spec = SweepSpec(B2, space, synth="fit", build_root=str(build),
                     objectives=parse_objectives("decode_tokens_per_s:max,luts:min"))
    res = quiet(spec, tmp_path / "out", PoolExecutor(2))
    assert res.jobs == {"synth": 1, "estimate": 2}
    a, b = res.rows()
    assert a["status"] == b["status"] == "ok", a["error"]
    ref = synth.estimate(ArrayConfig(rows=2, cols=2), "ice40-up5k", build_root=build)
    for row in (a, b):
        assert row["device"] == "ice40-up5k" and row["fits"] is True
        assert row["luts"] == ref["resources"]["lut"]["synth"] > 0
        assert row["ffs"] == ref["resources"]["ff"]["synth"] > 0
        assert row["fmax_mhz"] is None          # the fit check does not place
    assert a["prefill_tokens_per_s"] != b["prefill_tokens_per_s"]


@pytest.mark.slow
def test_full_synthesis_point(tmp_path: Path) -> None:
    """Place and route through the sweep: Fmax and timing come from nextpnr's report."""
    from tritium.hdl import synth

    build = tmp_path / "build"
    spec = SweepSpec(B2, Space.from_strings({"rows": "2", "cols": "2", "clock_mhz": "12"}),
                     synth="full", build_root=str(build),
                     objectives=parse_objectives("fmax_mhz:max,luts:min"))
    (row,) = quiet(spec, tmp_path / "out", PoolExecutor(2)).rows()
    assert row["status"] == "ok", row["error"]
    ref = synth.synth_report(ArrayConfig(rows=2, cols=2, clock_mhz=12.0), "ice40-up5k",
                             build_root=build)       # the sweep's run, from the cache
    assert row["fmax_mhz"] == ref["fmax_mhz"] > 12
    assert row["timing_met"] is True and row["fits"] is True
    assert (row["luts"], row["ffs"], row["bram"]) == (ref["luts"], ref["ffs"], ref["bram"])
    assert row["pareto"] is True


# --- the command line -----------------------------------------------------------------------------


def run_cli(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = tritium.cli.main(argv)
    return rc, out.getvalue(), err.getvalue()


def test_cli_sweep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rc, out, err = run_cli(["sweep", "--model", B2, "--rows", "4,8", "--cols", "8",
                            "--acc-bits", "16,32", "--jobs", "1", "-o", str(tmp_path),
                            "--json"], monkeypatch)
    assert rc == 0, err
    doc = json.loads(out)
    assert [(p["rows"], p["acc_bits"], p["status"]) for p in doc["points"]] == [
        (4, 16, "invalid"), (4, 32, "ok"), (8, 16, "invalid"), (8, 32, "ok")]
    rc, out, err = run_cli(["sweep", "--model", B2, "--rows", "4,8", "--cols", "8",
                            "--acc-bits", "16,32", "--jobs", "1", "-o", str(tmp_path)],
                           monkeypatch)
    assert rc == 0 and "0 evaluated, 4 cached" in out
    rc, out, err = run_cli(["sweep", "--model", B2, "--rows", "4,8,16", "--cols", "8,16",
                            "--random", "3", "--seed", "7", "--jobs", "1", "-o",
                            str(tmp_path / "random"), "--json"], monkeypatch)
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["sample"] == {"random": 3, "seed": 7} and len(doc["points"]) == 3
    picked = [(p["rows"], p["cols"]) for p in doc["points"]]
    grid = [(r, c) for r in (4, 8, 16) for c in (8, 16)]
    assert len(set(picked)) == 3 and picked == sorted(picked, key=grid.index)


@pytest.mark.parametrize(("argv", "message"), [
    (["--rows", "4,eight"], "--rows: 'eight' is not an integer"),
    (["--accuracy", "nope"], "--accuracy: unknown metric 'nope'; registered: accuracy"),
    (["--device", "ice40-up5k"], "--device chooses the synthesis target: add --synth"),
    (["--synth", "--device", "nope"], "unknown 'nope'"),
    (["--jobs", "0"], "--jobs must be >= 1, got 0"),
    (["--ray", "127.0.0.1:1"], "--ray 127.0.0.1:1: no Ray head answers there"),
    (["--random", "0"], "--random: the sample size must be >= 1"),
    (["--objectives", "decode_tokens_per_s:max"], "give two objectives, got 1"),
])
def test_cli_bad_input_is_one_line(argv: list[str], message: str, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    rc, out, err = run_cli(["sweep", "--model", B2, "-o", str(tmp_path), *argv], monkeypatch)
    assert rc == 1
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
