"""OnnxModel on a network tritium did not write: a small ternary CNN trained with Brevitas
(2-bit narrow weights, one scale per channel for the conv and per tensor for the linear;
signed 8-bit activation quantisers), exported to QONNX and cleaned with qonnx's cleanup, as a
user would (onnxoptimizer's fuse and elimination passes, then qonnx's cleanup). The
reference is qonnx's own executor (qonnx.core.onnx_exec.execute_onnx).

The integer-valued tensors, every QONNX Quant output, are compared bit for bit; the outputs of
the accelerated Conv and Gemm agree to 1e-5 of their max|y| (the array sums exact integers
and rescales once; onnxruntime's float GEMM rounds as it accumulates)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxoptimizer
import pytest
from onnx import helper, numpy_helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.custom_op.general.bipolar_quant import binary_quant
from qonnx.custom_op.general.intquant import int_quant
from qonnx.custom_op.general.trunc import trunc_v1, trunc_v2
from qonnx.util.cleanup import cleanup_model

from tritium.golden import ArrayConfig, gemm_events
from tritium.host import OnnxModel
from tritium.host.onnx import qonnx as tq

ARRAY = ArrayConfig(rows=4, cols=4)
FLOAT_TOL = 1e-5    # of max|y|


def test_quantisers_are_bit_exact_with_qonnx() -> None:
    rng = np.random.default_rng(0)
    for trial in range(200):
        shape = (3, 4, 5)
        x = (rng.normal(size=shape) * rng.choice([0.1, 1.0, 30.0])).astype(np.float32)
        # ties: values exactly between two codes
        x[0, 0] = np.float32(2.5) * np.float32(0.25)
        per = rng.choice(["tensor", "channel", "last"])
        sshape = {"tensor": (), "channel": (1, 4, 1), "last": (5,)}[per]
        scale = rng.uniform(0.01, 0.5, size=sshape).astype(np.float32)
        zp = np.asarray(rng.choice([0.0, 0.0, 1.0, -3.0]), np.float32)
        bits = np.asarray(rng.integers(1, 9), np.float32)
        signed, narrow = bool(rng.integers(2)), bool(rng.integers(2))
        mode = str(rng.choice(list(tq.ROUNDING)))
        want = int_quant(x, scale, zp, bits, signed, narrow, mode).astype(np.float32)
        got = tq.quant(x, scale, zp, bits, signed, narrow, mode)
        np.testing.assert_array_equal(got, want, err_msg=f"trial {trial}")
    x = rng.normal(size=(4, 6)).astype(np.float32)
    x[0, 0] = 0.0
    s = np.float32(0.3)
    np.testing.assert_array_equal(tq.bipolar_quant(x, s), binary_quant(x, s))
    for trial in range(50):
        scale = np.float32(2.0 ** -rng.integers(2, 6))
        x = (rng.integers(-2000, 2000, size=(5, 7)) * scale).astype(np.float32)
        zp = np.float32(rng.choice([0.0, 2.0]))
        ib, ob = np.float32(rng.integers(9, 13)), np.float32(rng.integers(2, 8))
        mode = str(rng.choice(["FLOOR", "ROUND", "CEIL", "HALF_UP"]))
        np.testing.assert_array_equal(tq.trunc_v1(x, scale, zp, ib, ob, mode),
                                      trunc_v1(x, scale, zp, ib, ob, mode), f"v1 {trial}")
        out_scale = np.float32(scale * 2.0 ** rng.integers(0, 5))
        signed, narrow = bool(rng.integers(2)), bool(rng.integers(2))
        np.testing.assert_array_equal(
            tq.trunc_v2(x, scale, zp, ib, narrow, signed, out_scale, ob, mode),
            trunc_v2(x, scale, zp, ib, narrow, signed, out_scale, ob, mode), f"v2 {trial}")


def _train_and_export(path: Path) -> Path:
    import brevitas.nn as qnn
    import torch
    from brevitas.export import export_qonnx
    from brevitas.quant import (
        Int8ActPerTensorFloat,
        Int8WeightPerChannelFloat,
        Int8WeightPerTensorFloat,
    )
    from torch import nn

    class TernaryPerChannel(Int8WeightPerChannelFloat):
        bit_width = 2
        narrow_range = True

    class TernaryPerTensor(Int8WeightPerTensorFloat):
        bit_width = 2
        narrow_range = True

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q0 = qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat)
            self.conv = qnn.QuantConv2d(2, 4, 3, padding=1, stride=1,
                                        weight_quant=TernaryPerChannel, bias=True)
            self.pool = nn.MaxPool2d(2)
            self.q1 = qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat)
            self.fc = qnn.QuantLinear(4 * 4 * 4, 5, weight_quant=TernaryPerTensor, bias=True)

        def forward(self, x):
            x = self.pool(torch.relu(self.conv(self.q0(x))))
            return self.fc(torch.flatten(self.q1(x), 1))

    torch.manual_seed(0)
    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x = torch.randn(64, 2, 8, 8)
    y = (x.mean(dim=(1, 2, 3)) * 10).long().clamp(-2, 2) + 2     # a learnable toy target
    for _ in range(8):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    net.eval()
    raw = path.with_suffix(".raw.onnx")
    export_qonnx(net, torch.randn(3, 2, 8, 8), export_path=str(raw))
    optimized = onnxoptimizer.optimize(onnx.load(str(raw)),
                                       onnxoptimizer.get_fuse_and_elimination_passes())
    cleaned = cleanup_model(ModelWrapper(optimized))
    cleaned.save(str(path))
    return path


@pytest.fixture(scope="module")
def brevitas_onnx(tmp_path_factory) -> Path:
    return _train_and_export(tmp_path_factory.mktemp("brevitas") / "net.onnx")


def _nodes(path: Path) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = {}
    for n in onnx.load(str(path)).graph.node:
        out.setdefault(n.op_type, []).append(n)
    return out


def _with_outputs(path: Path, tensors: list[str], dest: Path) -> Path:
    """The model with extra graph outputs, so OnnxModel returns intermediate tensors."""
    m = onnx.load(str(path))
    have = {o.name for o in m.graph.output}
    infos = {vi.name: vi for vi in m.graph.value_info}
    for t in tensors:
        if t not in have:
            m.graph.output.append(infos.get(t) or helper.make_tensor_value_info(
                t, onnx.TensorProto.FLOAT, None))
    keep = [vi for vi in m.graph.value_info if vi.name not in tensors]
    del m.graph.value_info[:]
    m.graph.value_info.extend(keep)
    onnx.save(m, str(dest))
    return dest


def _reference(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return execute_onnx(ModelWrapper(str(path)), feeds, return_full_exec_context=True)


def _input(path: Path, seed: int) -> dict[str, np.ndarray]:
    name = onnx.load(str(path)).graph.input[0].name
    return {name: np.random.default_rng(seed).normal(size=(3, 2, 8, 8)).astype(np.float32)}


def _check(model: OnnxModel, path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Every Quant output bit-exact and every other output within FLOAT_TOL of qonnx's."""
    ref = _reference(path, feeds)
    names = model.output_names
    got = model.run(None, feeds)
    quant_outs = {n.output[0] for n in _nodes(path)["Quant"]}
    for name, g in zip(names, got, strict=True):
        w = ref[name]
        assert g.shape == w.shape and g.dtype == w.dtype, name
        if name in quant_outs:
            np.testing.assert_array_equal(g, w, err_msg=name)
        else:
            np.testing.assert_allclose(g, w, rtol=0, atol=FLOAT_TOL * np.abs(w).max(),
                                       err_msg=name)
    return got


def test_brevitas_cnn_on_golden(brevitas_onnx, tmp_path) -> None:
    nodes = _nodes(brevitas_onnx)
    conv, gemm = nodes["Conv"][0], nodes["Gemm"][0]
    quants = [n.output[0] for n in nodes["Quant"]]
    path = _with_outputs(brevitas_onnx, [*quants, conv.output[0], gemm.output[0]],
                         tmp_path / "full.onnx")
    feeds = _input(path, seed=1)
    with OnnxModel(path, backend="golden", array=ARRAY) as m:
        part = m.partition
        assert part["accelerator"] == [conv.name, gemm.name]
        assert part["reasons"] == {}
        assert set(part["qonnx_in_tritium"]) == {n.name for n in nodes["Quant"]}
        assert {n.name for n in nodes["MaxPool"]} <= set(part["cpu"])
        assert part["onnxruntime_sessions"] == 2     # ReLU + MaxPool, then the Reshape
        _check(m, path, feeds)
        # the Gemm's activation is the flattened [3, 64] output of the second Quant; its
        # events are golden's for the ternary weight the Quant gives the [5, 64] weights
        wq = next(n for n in nodes["Quant"] if n.output[0] == gemm.input[1])
        init = {t.name: numpy_helper.to_array(t)
                for t in onnx.load(str(path)).graph.initializer}
        a = tq.attrs(wq)
        codes = tq.quant_codes(*(init[x] for x in wq.input), a["signed"], a["narrow"],
                               a["rounding_mode"])
        assert set(np.unique(codes)) <= {-1.0, 0.0, 1.0}
        ev = gemm_events(ARRAY, codes.T.astype(np.int8), 3)
        s = m.stats.nodes[gemm.name]
        assert (s.calls, s.tiles, s.cycles, s.macs, s.zero_skips) == \
            (1, ev.tiles, ev.cycles, ev.macs, ev.zero_skips)


def _edit(path: Path, dest: Path, values: dict[str, Any]) -> Path:
    """The model with initializers replaced: values[name] is the new value, or a function of
    the old one."""
    m = onnx.load(str(path))
    for i, t in enumerate(m.graph.initializer):
        if t.name in values:
            v = values[t.name]
            new = v(numpy_helper.to_array(t)) if callable(v) else v
            m.graph.initializer[i].CopyFrom(numpy_helper.from_array(np.asarray(new), t.name))
    onnx.save(m, str(dest))
    return dest


def test_layers_the_array_cannot_take_exactly_stay_on_the_cpu(brevitas_onnx, tmp_path) -> None:
    """The exported graph edited the ways a user's model differs: activations quantised to
    16 bits, an activation zero point, weights quantised to 4 bits at a quarter of the
    ternary scale (codes up to +-4, not ternary). The node
    stays on the CPU with the reason, and the results still match qonnx."""
    nodes = _nodes(brevitas_onnx)
    conv, gemm = nodes["Conv"][0], nodes["Gemm"][0]
    by_out = {n.output[0]: n for n in nodes["Quant"]}
    act_q = by_out[conv.input[0]]
    w_q = by_out[gemm.input[1]]
    cases = [
        ({act_q.input[3]: np.float32(16)}, conv.name, "activations are signed 16-bit"),
        ({act_q.input[2]: np.float32(1)}, conv.name, "has a non-zero zero point"),
        ({w_q.input[3]: np.float32(4), w_q.input[1]: lambda s: s / 4}, gemm.name,
         "is not ternary"),
    ]
    for i, (values, node, reason) in enumerate(cases):
        path = _edit(brevitas_onnx, tmp_path / f"bad{i}.onnx", values)
        with OnnxModel(path, array=ARRAY) as m:
            assert node in m.partition["cpu"], reason
            assert reason in m.partition["reasons"][node]
            other = ({conv.name, gemm.name} - {node}).pop()
            assert m.partition["accelerator"] == [other]
            _check(m, path, _input(path, seed=2))


def test_brevitas_cnn_on_rtl_equals_golden(brevitas_onnx) -> None:
    feeds = _input(brevitas_onnx, seed=5)
    with OnnxModel(brevitas_onnx, backend="golden", array=ARRAY) as gold, \
            OnnxModel(brevitas_onnx, backend="rtl", array=ARRAY) as rtl:
        want = gold.run(None, feeds)
        got = _check(rtl, brevitas_onnx, feeds)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)
        assert rtl.stats.as_dict()["nodes"] == {
            n: {**s, "seconds": rtl.stats.nodes[n].as_dict()["seconds"]}
            for n, s in gold.stats.as_dict()["nodes"].items()}
