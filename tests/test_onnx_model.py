"""OnnxModel on graphs built with onnx.helper (tests/onnx_graphs.py): a ternary MLP on
MatMulInteger and a ternary CNN on ConvInteger, MaxPool and Flatten, against onnxruntime
running the whole graph. The int32 outputs of the accelerated nodes are graph outputs, so
they are compared bit for bit; the float outputs are computed by onnxruntime from those exact
sums and must agree to 1e-6 of max|y| (onnxruntime may fuse the rescale ops differently
when it sees the whole graph). Statistics come from golden's event model; the RTL test runs
the same graphs on the Verilator-compiled 4x4 array."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from tests.onnx_graphs import Builder, cnn, f32, mlp
from tritium.cli import main
from tritium.golden import ArrayConfig, gemm_cycles, gemm_events
from tritium.host import OnnxModel
from tritium.host.onnx.graph import MIN_OPSET, OnnxError, max_opset

ARRAY = ArrayConfig(rows=4, cols=4)
FLOAT_TOL = 1e-6   # of max|y|


@pytest.fixture(scope="module")
def graphs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("onnx")
    return {"mlp": mlp(d / "mlp.onnx"), "cnn": cnn(d / "cnn.onnx")}


def feeds_for(name: str, seed: int = 0) -> dict[str, np.ndarray]:
    shape = (3, 24) if name == "mlp" else (2, 2, 9, 9)
    return {"x": np.random.default_rng(seed).normal(size=shape).astype(np.float32)}


def reference(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


def assert_matches(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape
        if np.issubdtype(w.dtype, np.integer):
            np.testing.assert_array_equal(g, w)
        else:
            np.testing.assert_allclose(g, w, rtol=0, atol=FLOAT_TOL * np.abs(w).max())


def weight(path: Path, name: str) -> np.ndarray:
    return next(numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer
                if t.name == name)


def expected_events(w: np.ndarray, m: int) -> tuple[int, int, int, int]:
    ev = gemm_events(ARRAY, w, m)
    return ev.tiles, ev.cycles, ev.macs, ev.zero_skips


def test_mlp_on_golden(graphs) -> None:
    p = graphs["mlp"]
    feeds = feeds_for("mlp")
    with OnnxModel(p, backend="golden", array=ARRAY) as m:
        assert m.partition["accelerator"] == ["mm1", "mm2"]
        assert "mm1" not in m.partition["cpu"] and "relu_21" in m.partition["cpu"]
        assert m.partition["reasons"] == {}
        # quantise | mm1 | rescale, ReLU, QuantizeLinear | mm2 | rescale: three CPU runs
        assert m.partition["onnxruntime_sessions"] == 3
        got = m.run(None, feeds)
        assert_matches(got, reference(p, feeds))
        # one output by name, as onnxruntime takes them
        np.testing.assert_array_equal(m.run(["mm2_out"], feeds)[0], got[2])
        m.stats.reset()
        m.run(None, feeds)
        for node, w in (("mm1", "w1_13"), ("mm2", "w2_25")):
            s = m.stats.nodes[node]
            assert s.calls == 1
            assert (s.tiles, s.cycles, s.macs, s.zero_skips) == expected_events(weight(p, w), 3)
        assert m.stats.total.macs == sum(s.macs for s in m.stats.nodes.values())


def test_cnn_on_golden(graphs) -> None:
    p = graphs["cnn"]
    feeds = feeds_for("cnn", seed=3)
    with OnnxModel(p, array=ARRAY) as m:
        assert m.partition["accelerator"] == ["conv1", "conv2", "fc"]
        assert {"maxpool_20", "flatten_39"} <= set(m.partition["cpu"])
        assert m.partition["onnxruntime_sessions"] == 4
        got = m.run(None, feeds)
        assert_matches(got, reference(p, feeds))
        # conv2: 2 groups, each a [n*4*2, 2*2*2] x [8, 3] GEMM on the array
        k2 = weight(p, "k2_33").astype(np.int8)
        want = [expected_events(k2[g * 3:(g + 1) * 3].reshape(3, -1).T, 2 * 4 * 2)
                for g in range(2)]
        s = m.stats.nodes["conv2"]
        assert s.calls == 2
        assert (s.tiles, s.cycles, s.macs, s.zero_skips) == tuple(map(sum, zip(*want,
                                                                                strict=True)))
        # conv1: one GEMM of M = 2 * 9 * 9 output pixels, K = 2 * 3 * 3
        k1 = weight(p, "k1_13")
        s1 = m.stats.nodes["conv1"]
        assert (s1.tiles, s1.cycles, s1.macs, s1.zero_skips) == \
            expected_events(k1.reshape(4, -1).T, 2 * 81)


@pytest.mark.parametrize("bad, node, reason", [
    ("weight", "mm1", "is not ternary: it holds 2"),
    ("weight_zp", "mm1", "weight zero point is not zero"),
    ("uint8_zp0", "mm2", "uint8 activations with zero point 0 span 0..255, wider than the "
                         "array's signed act_bits=8"),
])
def test_nodes_the_array_cannot_take_stay_on_the_cpu(tmp_path, bad, node, reason) -> None:
    p = mlp(tmp_path / f"{bad}.onnx", bad=bad)
    feeds = feeds_for("mlp", seed=1)
    with OnnxModel(p, array=ARRAY) as m:
        assert node in m.partition["cpu"] and node not in m.partition["accelerator"]
        assert reason in m.partition["reasons"][node]
        other = {"mm1", "mm2"} - {node}
        assert m.partition["accelerator"] == sorted(other)
        assert node not in m.stats.nodes
        assert_matches(m.run(None, feeds), reference(p, feeds))


def test_reduction_longer_than_max_k_stays_on_the_cpu(graphs) -> None:
    with OnnxModel(graphs["mlp"], array=ArrayConfig(rows=4, cols=4, max_k=16)) as m:
        assert m.partition["accelerator"] == ["mm2"]      # K = 16 fits, K = 24 does not
        assert "K=24 exceeds the array's max_k=16" in m.partition["reasons"]["mm1"]
        feeds = feeds_for("mlp")
        assert_matches(m.run(None, feeds), reference(graphs["mlp"], feeds))


def test_cpu_nodes_gather_into_few_sessions(tmp_path) -> None:
    """The file lists quantise, mm, a CPU side branch, then mm_b (reading the same codes as
    mm): cutting that order into runs would take three onnxruntime sessions; the side branch
    joins the first and both matmuls run back to back, so two. The branch's float MatMul is
    reported."""
    b = Builder(5)
    q, inv = b.absmax_int8("x")
    acc = b.node("MatMulInteger", [q, b.const(b.ternary((24, 16)), "w")], name="mm")
    side = b.node("MatMul", [b.node("Relu", ["x"], name="side_relu"),
                             b.const(b.rng.normal(size=(24, 16)).astype(np.float32))],
                  name="side_mm")
    acc_b = b.node("MatMulInteger", [q, b.const(b.ternary((24, 16)), "wb")], name="mm_b")
    y = b.node("Add", [b.rescale(acc, inv, 0.5), side])
    y = b.node("Add", [y, b.rescale(acc_b, inv, 0.25)], name="y")
    p = b.save(tmp_path / "branch.onnx", [f32("x", ["batch", 24])], [f32(y, ["batch", 16])])
    with OnnxModel(p, array=ARRAY) as m:
        assert m.partition["accelerator"] == ["mm", "mm_b"]
        assert m.partition["onnxruntime_sessions"] == 2
        assert "is a float constant, not the output of a QONNX Quant" in \
            m.partition["reasons"]["side_mm"]
        feeds = feeds_for("mlp", seed=2)
        assert_matches(m.run(None, feeds), reference(p, feeds))


def test_large_constants_are_fed_not_serialised(graphs, monkeypatch) -> None:
    """Constants above BIG_CONST reach onnxruntime as inputs (a model past protobuf's 2 GB
    still runs); with the threshold at 0 every constant takes that path."""
    import tritium.host.onnx.graph as graph_mod
    import tritium.host.onnx.model as model_mod

    monkeypatch.setattr(graph_mod, "BIG_CONST", 0)
    monkeypatch.setattr(model_mod, "BIG_CONST", 0)
    feeds = feeds_for("cnn", seed=6)
    with OnnxModel(graphs["cnn"], array=ARRAY) as m:
        assert m.partition["accelerator"] == ["conv1", "conv2", "fc"]
        assert_matches(m.run(None, feeds), reference(graphs["cnn"], feeds))
        assert all(not s.consts for s in m._sessions.values())


def test_bad_inputs_are_one_line(graphs, tmp_path) -> None:
    def error(path, feeds=None) -> str:
        with pytest.raises(OnnxError) as info, OnnxModel(path) as m:
            m.run(None, feeds)
        text = str(info.value)
        assert "\n" not in text
        return text

    assert "no such file" in error(tmp_path / "missing.onnx")
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model\n")
    assert f"{text} is not an ONNX model" in error(text)
    old = onnx.load(str(graphs["mlp"]))
    old.opset_import[0].version = 5
    onnx.save(old, str(tmp_path / "old.onnx"))
    assert f"uses ONNX opset 5; tritium runs opsets {MIN_OPSET} to {max_opset()}" in \
        error(tmp_path / "old.onnx")
    p = graphs["mlp"]
    x = feeds_for("mlp")["x"]
    assert "feed 'y' is not an input of" in error(p, {"x": x, "y": x})
    assert "input 'x' of" in error(p, {}) and "is not fed" in error(p, {})
    assert "feed 'x' has dtype float64 but input 'x'" in error(p, {"x": x.astype(np.float64)})
    assert "(axis 1 must be 24)" in error(p, {"x": x[:, :20]})
    assert "has 2 dimensions" in error(p, {"x": x[0]})
    with OnnxModel(p) as m, pytest.raises(OnnxError, match="'nope' is not an output of"):
        m.run(["nope"], {"x": x})


def test_unknown_custom_op_is_named(tmp_path) -> None:
    g = helper.make_graph([helper.make_node("Frobnicate", ["x"], ["y"], name="f",
                                            domain="acme")], "g",
                          [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17),
                                            helper.make_opsetid("acme", 1)])
    onnx.save(m, str(tmp_path / "acme.onnx"))
    with pytest.raises(OnnxError, match="node 'f' is op Frobnicate of domain 'acme'"):
        OnnxModel(tmp_path / "acme.onnx")


def test_cli_run_and_estimate(graphs, tmp_path, capsys) -> None:
    feeds = feeds_for("cnn", seed=4)
    np.savez(tmp_path / "in.npz", **feeds)
    out = tmp_path / "out" / "y.npz"
    assert main(["run", "--onnx", str(graphs["cnn"]), "--inputs", str(tmp_path / "in.npz"),
                 "-o", str(out), "--rows", "4", "--cols", "4", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["partition"]["accelerator"] == ["conv1", "conv2", "fc"]
    assert set(info["stats"]["nodes"]) == {"conv1", "conv2", "fc"}
    assert info["outputs"]["conv1_out"] == {"shape": [2, 4, 9, 9], "dtype": "int32"}
    with np.load(out) as data:
        assert_matches([data[n] for n in ("logits_out", "conv1_out", "conv2_out", "fc_out")],
                       reference(graphs["cnn"], feeds))
    assert not list(out.parent.glob(".*tmp*"))     # written through a temporary, renamed

    # estimate: shapes from --shape; the weight-stationary compute cycles are golden's
    assert main(["estimate", "--onnx", str(graphs["cnn"]), "--shape", "x=1,2,9,9",
                 "--rows", "4", "--cols", "4", "--dataflow", "ws", "--json"]) == 0
    est = json.loads(capsys.readouterr().out)
    nodes = {n["node"]: n for n in est["nodes"]}
    assert list(nodes) == ["conv1", "conv2", "fc"]
    cfg = ArrayConfig(rows=4, cols=4, clock_mhz=250.0)
    assert nodes["conv1"]["compute_cycles"] == gemm_cycles(cfg, 81, 18, 4)
    assert nodes["conv2"]["compute_cycles"] == 2 * gemm_cycles(cfg, 8, 8, 3)
    assert nodes["fc"]["compute_cycles"] == gemm_cycles(cfg, 1, 48, 5)
    k1 = weight(graphs["cnn"], "k1_13")
    assert nodes["conv1"]["macs"] == 81 * int(np.count_nonzero(k1))
    assert all(n["energy_j"] > 0 for n in nodes.values())

    # a dynamic batch without --shape is one line naming the tensor and the way out
    assert main(["estimate", "--onnx", str(graphs["cnn"])]) == 1
    err = capsys.readouterr().err
    assert "is [?, 2, 9, 9] before running" in err and "--shape" in err
    assert err.count("\n") == 1


def test_cli_errors(graphs, tmp_path, capsys) -> None:
    np.savez(tmp_path / "in.npz", x=np.zeros((2, 24), np.float64))
    cases = [
        (["--onnx", str(tmp_path / "none.onnx"), "--inputs", str(tmp_path / "in.npz")],
         "none.onnx: no such file"),
        (["--onnx", str(graphs["mlp"]), "--inputs", str(tmp_path / "none.npz")],
         "--inputs: " + str(tmp_path / "none.npz") + " does not exist"),
        (["--onnx", str(graphs["mlp"]), "--inputs", str(tmp_path / "in.npz")],
         "feed 'x' has dtype float64 but input 'x'"),
        (["--onnx", str(graphs["mlp"])], "--onnx needs --inputs FILE.npz"),
    ]
    for argv, text in cases:
        assert main(["run", *argv]) == 1
        err = capsys.readouterr().err
        assert text in err and err.count("\n") == 1, err


def test_rtl_runs_both_graphs_like_golden(graphs) -> None:
    """The Verilator-compiled 4x4 array: the same outputs as golden bit for bit (int32 and
    float alike), and its performance counters equal golden's event model per node."""
    for name in ("mlp", "cnn"):
        feeds = feeds_for(name, seed=7)
        with OnnxModel(graphs[name], backend="golden", array=ARRAY) as gold, \
                OnnxModel(graphs[name], backend="rtl", array=ARRAY) as rtl:
            want = gold.run(None, feeds)
            got = rtl.run(None, feeds)
            for g, w in zip(got, want, strict=True):
                np.testing.assert_array_equal(g, w)
            assert_matches(got, reference(graphs[name], feeds))
            for node, s in rtl.stats.nodes.items():
                gs = gold.stats.nodes[node]
                assert (s.calls, s.tiles, s.cycles, s.macs, s.zero_skips) == \
                    (gs.calls, gs.tiles, gs.cycles, gs.macs, gs.zero_skips), node
