"""`tritium export`: every registered architecture as a standard ONNX decoder that plain
onnxruntime runs, checked against golden (BitNetModel on backend golden).

- logits within 1e-4 x max|logit| of golden's, for one token, a prompt, a batch of two prompts,
  and a prompt fed in two chunks through the exported KV cache;
- greedy tokens from an onnxruntime loop that feeds `present.N.*` back as `past_key_values.N.*`
  (the Optimum convention) equal golden's generate();
- the BitLinear pieces bit for bit: the exported quantiser against golden.quant on values that
  sit on rounding ties, and one layer's MatMulInteger against golden's integer GEMM;
- ONNX external data, other opsets, and bad input (one line, nothing half-written).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tritium.cli import main
from tritium.golden.checks import InputError
from tritium.golden.gemm import ternary_gemm
from tritium.golden.quant import quantize_activations
from tritium.host import BitNetModel
from tritium.host.checkpoint import Checkpoint
from tritium.host.onnx.decoder import input_names, output_names, quantize
from tritium.host.onnx.export import data_file, export_onnx
from tritium.host.onnx.trace import FLOAT, Graph
from tritium.host.synthetic import (
    ModelSpec,
    checkpoint_tensors,
    random_weights,
    write_checkpoint_files,
)
from tritium.host.weights import load_linear

from .onnx_parity import Decoder, close, forcing


def llama(**kw) -> ModelSpec:
    return ModelSpec(model_type="llama", rope_theta=10000.0, rms_norm_eps=1e-6, **kw)


# the variants tests/parity.py runs against transformers: (spec, packed, seed)
CASES = {
    "bitnet_gqa_tied": (ModelSpec(hidden=96, intermediate=200, layers=2, heads=4, kv_heads=2,
                                  vocab=300), True, 0),
    "bitnet_untied_mha_bitlinear": (ModelSpec(hidden=60, intermediate=132, layers=2, heads=3,
                                              kv_heads=3, vocab=251, tied=False,
                                              linear_class="bitlinear"), True, 1),
    "bitnet_f32_master": (ModelSpec(hidden=48, intermediate=100, layers=2, heads=4, kv_heads=1,
                                    vocab=128), False, 4),
    "llama_gqa_tied": (llama(hidden=96, intermediate=200, layers=2, heads=4, kv_heads=2,
                             vocab=300), True, 0),
    "llama_untied_bias": (llama(hidden=60, intermediate=132, layers=2, heads=3, kv_heads=3,
                                vocab=251, tied=False, bias=True), True, 1),
    "llama_bias_rms_norm": (llama(hidden=48, intermediate=100, layers=3, heads=4, kv_heads=1,
                                  vocab=127, tied=False, bias=True, use_rms_norm=True), True, 3),
    "llama_wide_heads_autobitlinear": (llama(hidden=64, intermediate=120, layers=2, heads=4,
                                             kv_heads=2, vocab=150, head_dim=24,
                                             linear_class="autobitlinear"), True, 4),
}


def test_every_registered_architecture_has_a_case() -> None:
    """A newly registered (model_type, linear_class) fails here until CASES exports it."""
    from tritium.host.arch import REGISTRY

    covered = {(spec.model_type, spec.model_config(packed=packed).linear_class)
               for spec, packed, _ in CASES.values()}
    assert set(REGISTRY) <= covered, f"no export case for {sorted(set(REGISTRY) - covered)}"


def write(spec: ModelSpec, path: Path, packed: bool = True, seed: int = 0) -> Path:
    rw = random_weights(spec, packed=packed, seed=seed)
    tensors, dtypes = checkpoint_tensors(rw, master_dtype="F32" if not packed else "BF16")
    return write_checkpoint_files(path, spec.config(packed=packed), tensors, dtypes)


@pytest.fixture(scope="module", params=sorted(CASES) + ["tiny-adder"])
def exported(request, tmp_path_factory):
    """(golden model, onnxruntime decoder, ONNX file) for one variant."""
    tmp = tmp_path_factory.mktemp(request.param)
    if request.param == "tiny-adder":
        source: str | Path = "tiny-adder"     # the shipped model, by name through the zoo
    else:
        spec, packed, seed = CASES[request.param]
        source = write(spec, tmp / "ckpt", packed, seed)
    path = tmp / "model.onnx"
    result = export_onnx(source, path)
    assert result.path == path and result.data_path is None
    with BitNetModel.from_pretrained(source, backend="golden") as golden:
        yield golden, Decoder(path, golden.config, probes=True), path


def prompt(vocab: int, n: int, seed: int) -> list[int]:
    return np.random.default_rng(seed).integers(0, vocab, n).tolist()


@pytest.mark.parametrize("length", [1, 11])
def test_logits_match_golden(exported, length) -> None:
    golden, dec, _ = exported
    ids = prompt(golden.config.vocab_size, length, length)
    logits, _, probes = dec.step(np.array([ids]), dec.empty_past(1))
    assert logits.dtype == np.float32 and logits.shape == (1, length, golden.config.vocab_size)
    with forcing(golden) as ties:
        ties.push(probes)
        close(logits[0], golden.logits(ids))


def test_batch_and_chunked_prefill_match_golden(exported) -> None:
    """Two prompts in one batch; and one prompt fed as 5 + 4 tokens, the second chunk attending
    to the first through past_key_values (past_len 5, seq 4: the causal mask's offset)."""
    golden, dec, _ = exported
    v = golden.config.vocab_size
    a, b = prompt(v, 9, 1), prompt(v, 9, 2)
    logits, past, probes = dec.step(np.array([a, b]), dec.empty_past(2))
    with forcing(golden) as ties:
        ties.push(probes, 0)
        close(logits[0], golden.logits(a))
        ties.push(probes, 1)
        close(logits[1], golden.logits(b))
    assert past["past_key_values.0.key"].shape == (2, golden.config.num_key_value_heads, 9,
                                                   golden.config.head_dim)
    first, past, p1 = dec.step(np.array([a[:5]]), dec.empty_past(1))
    second, _, p2 = dec.step(np.array([a[5:]]), past)
    with forcing(golden) as ties:
        ties.push_joined(p1, p2)
        close(np.concatenate([first[0], second[0]]), golden.logits(a))


def test_left_padded_batch_matches_golden(exported) -> None:
    """Optimum's batching: the shorter prompt left-padded, attention_mask 0 on the pads and
    position_ids counting real tokens only; each row's real positions give golden's logits for
    that prompt alone (the pads' own rows stay finite)."""
    golden, dec, _ = exported
    v, pad = golden.config.vocab_size, 3
    a, b = prompt(v, 9, 3), prompt(v, 6, 4)
    mask = np.array([[1] * 9, [0] * pad + [1] * 6])
    positions = np.clip(mask.cumsum(-1) - 1, 0, None)
    logits, _, probes = dec.step(np.array([a, [0] * pad + b]), dec.empty_past(2), mask,
                                 positions)
    assert np.isfinite(logits).all()
    with forcing(golden) as ties:
        ties.push(probes, 0)
        close(logits[0], golden.logits(a))
        ties.push(probes, 1, start=pad)
        close(logits[1, pad:], golden.logits(b))


def test_greedy_tokens_through_kv_cache_match_golden(exported) -> None:
    golden, dec, _ = exported
    ids = prompt(golden.config.vocab_size, 7, 99)
    with forcing(golden) as ties:
        got = dec.greedy(ids, 8, ties)
        assert golden.generate(ids, max_new_tokens=8, stop_at_eos=False) == got


def test_graph_is_standard_onnx_with_optimum_io(exported) -> None:
    golden, dec, path = exported
    cfg = golden.config
    onnx.checker.check_model(str(path), full_check=True)
    m = onnx.load(str(path))
    assert [(o.domain, o.version) for o in m.opset_import] == [("", 17)]
    assert all(n.domain == "" for n in m.graph.node)
    ins = {i.name: i.type.tensor_type for i in m.graph.input}
    assert list(ins) == input_names(cfg)
    assert [o.name for o in m.graph.output] == output_names(cfg)

    def dims(t):
        return [d.dim_param or d.dim_value for d in t.shape.dim]

    assert ins["input_ids"].elem_type == ins["position_ids"].elem_type == onnx.TensorProto.INT64
    assert dims(ins["attention_mask"]) == ["batch_size", "past_sequence_length + sequence_length"]
    assert dims(ins["past_key_values.0.value"]) == [
        "batch_size", cfg.num_key_value_heads, "past_sequence_length", cfg.head_dim]
    assert ins["past_key_values.0.key"].elem_type == onnx.TensorProto.FLOAT

    # every BitLinear is one MatMulInteger on an int8 ternary initializer; no float weight
    # matmul besides the LM head's Gemm
    inits = {t.name: t for t in m.graph.initializer}
    mmi = [n for n in m.graph.node if n.op_type == "MatMulInteger"]
    assert len(mmi) == 7 * cfg.num_hidden_layers
    for n in mmi:
        w = onnx.numpy_helper.to_array(inits[n.input[1]])
        assert w.dtype == np.int8 and set(np.unique(w)) <= {-1, 0, 1}
    float_mm = [n for n in m.graph.node if n.op_type in ("MatMul", "Gemm")
                and any(i in inits for i in n.input)]
    assert [n.name for n in float_mm] == ["lm_head/Gemm"]


def test_matmul_integer_equals_golden_gemm(tmp_path) -> None:
    """Layer 0's q_proj: the int32 MatMulInteger output is golden's ternary GEMM of its int8
    input, and its weight is the checkpoint's ternary weight as golden loads it."""
    spec, packed, seed = CASES["llama_bias_rms_norm"]
    ck = write(spec, tmp_path / "ckpt", packed, seed)
    export_onnx(ck, tmp_path / "m.onnx")
    m = onnx.load(str(tmp_path / "m.onnx"))
    node = next(n for n in m.graph.node if n.op_type == "MatMulInteger")
    assert node.name.startswith("model.layers.0.self_attn.q_proj/")
    m.graph.output.extend([onnx.helper.make_tensor_value_info(node.input[0], onnx.TensorProto.INT8,
                                                              None),
                           onnx.helper.make_tensor_value_info(node.output[0],
                                                              onnx.TensorProto.INT32, None)])
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    with BitNetModel.from_pretrained(ck) as golden:
        dec = Decoder(tmp_path / "m.onnx", golden.config)
        ids = np.array([prompt(spec.vocab, 6, 5)])
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids),
                 "position_ids": np.arange(6)[None], **dec.empty_past(1)}
        q, acc = sess.run([node.input[0], node.output[0]], feeds)
        cfg = golden.config
    w = onnx.numpy_helper.to_array(next(t for t in m.graph.initializer
                                        if t.name == node.input[1]))
    c = Checkpoint(ck)
    try:
        lin = load_linear(c, cfg, "model.layers.0.self_attn.q_proj", cfg.q_dim,
                          cfg.hidden_size)
    finally:
        c.close()
    np.testing.assert_array_equal(w, lin.w)
    assert acc.dtype == np.int32
    np.testing.assert_array_equal(acc[0], ternary_gemm(q[0], lin.w))
    assert np.abs(q).max() == 127    # the quantiser really produced full-range codes


def test_quantizer_is_golden_bit_for_bit() -> None:
    """The exported activation quantiser against golden.quant.quantize_activations: codes and
    scales identical, on values placed exactly on rounding ties, a zero row and wide ranges."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 96)).astype(np.float32) * rng.uniform(1e-3, 1e3, (64, 1)
                                                                        ).astype(np.float32)
    # rows whose max is 127: x * s = x, so half-integers are exact ties (even and odd)
    x[:8] = np.round(rng.uniform(-127, 127, (8, 96)) * 2).astype(np.float32) / 2
    x[:8, 0] = 127.0
    x[8] = 0.0
    x[9, :3] = [1e-7, -1e-6, 2e-6]      # max below the 1e-5 clamp
    x[9, 3:] = 0.0
    g = Graph("quantizer")
    q, s = quantize(g, g.input("x", FLOAT, ["rows", 96]), 17)
    g.output(g.op("Cast", q, to=onnx.TensorProto.INT32), "q", onnx.TensorProto.INT32,
             ["rows", 96])
    g.output(s, "s", FLOAT, ["rows", 1])
    sess = ort.InferenceSession(g.model(17, "test", "0").SerializeToString(),
                                providers=["CPUExecutionProvider"])
    got_q, got_s = sess.run(["q", "s"], {"x": x})
    want_q, want_s = quantize_activations(x)
    assert (np.abs(x[:8] * want_s[:8] % 1) == 0.5).sum() > 100   # ties were exercised
    np.testing.assert_array_equal(got_s, want_s)
    np.testing.assert_array_equal(got_q, want_q.astype(np.int32))


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_external_data(tmp_path) -> None:
    """With the threshold lowered, the weights go to model.onnx_data (as they do past 2 GB);
    onnxruntime loads the pair and gives golden's logits; nothing else is left behind."""
    ck = write(CASES["bitnet_gqa_tied"][0], tmp_path / "ckpt")
    out = tmp_path / "out" / "model.onnx"
    r = export_onnx(ck, out, external_data_bytes=1000)
    assert r.data_path == data_file(out) == out.parent / "model.onnx_data"
    assert _files(out.parent) == ["model.onnx", "model.onnx_data"]
    assert out.stat().st_size < 100_000 < r.data_path.stat().st_size
    assert r.file_bytes == out.stat().st_size + r.data_path.stat().st_size
    m = onnx.load(str(out), load_external_data=False)
    big = [t for t in m.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert {e.value for t in big for e in t.external_data if e.key == "location"} == {
        "model.onnx_data"}
    onnx.checker.check_model(str(out))
    with BitNetModel.from_pretrained(ck) as golden:
        dec = Decoder(out, golden.config, probes=True)
        ids = prompt(300, 5, 3)
        logits, _, probes = dec.step(np.array([ids]), dec.empty_past(1))
        with forcing(golden) as ties:
            ties.push(probes)
            close(logits[0], golden.logits(ids))


def test_failed_external_write_leaves_nothing(tmp_path, monkeypatch) -> None:
    """A write that fails halfway leaves the previous export as it was and no temporaries."""
    ck = write(CASES["bitnet_gqa_tied"][0], tmp_path / "ckpt")
    out = tmp_path / "out" / "model.onnx"
    out.parent.mkdir()
    out.write_bytes(b"previous")

    def broken(proto, path, **kw):
        Path(path).write_bytes(b"half")
        Path(path).with_name(kw["location"]).write_bytes(b"half")
        raise OSError(28, "No space left on device", path)

    monkeypatch.setattr(onnx, "save_model", broken)
    with pytest.raises(OSError):
        export_onnx(ck, out, external_data_bytes=0)
    assert _files(out.parent) == ["model.onnx"] and out.read_bytes() == b"previous"


@pytest.mark.parametrize("opset", [18, 21])
def test_later_opsets(tmp_path, opset) -> None:
    spec, packed, seed = CASES["llama_bias_rms_norm"]
    ck = write(spec, tmp_path / "ckpt", packed, seed)
    export_onnx(ck, tmp_path / "m.onnx", opset=opset)
    onnx.checker.check_model(str(tmp_path / "m.onnx"), full_check=True)
    with BitNetModel.from_pretrained(ck) as golden:
        dec = Decoder(tmp_path / "m.onnx", golden.config, probes=True)
        ids = prompt(spec.vocab, 7, 99)
        with forcing(golden) as ties:
            got = dec.greedy(ids, 4, ties)
            assert golden.generate(ids, 4, stop_at_eos=False) == got


def test_cli_export_json(tmp_path, capsys) -> None:
    out = tmp_path / "ta.onnx"
    assert main(["export", "--model", "tiny-adder", "-o", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["output"] == str(out) and out.is_file()
    assert info["model_type"] == "bitnet" and info["layers"] == 3
    assert info["matmul_integer"] == 21 and info["external_data"] is None
    assert info["bytes"] == out.stat().st_size


def _unwritable(tmp_path: Path) -> Path:
    """A folder this process cannot create files in (a read-only folder; as root, which
    ignores permissions, a folder under /proc, which nobody can create)."""
    ro = tmp_path / "read_only"
    ro.mkdir()
    ro.chmod(0o500)
    if not os.access(ro, os.W_OK):
        return ro / "model.onnx"
    return Path("/proc/tritium-export-test/model.onnx")


@pytest.mark.parametrize("case,code,text", [
    ("unwritable", 1, "cannot write {out}: cannot create"),
    ("parent_is_file", 2, "is a file, not a folder"),
    ("out_is_folder", 2, "is a folder; give a file path"),
    ("missing_model", 1, "model folder {model} does not exist"),
    ("not_a_model", 1, "config.json not found"),
    ("bad_config", 1, "config.json: must hold a JSON object"),
    ("bad_opset", 1, "opset must be an integer from 17"),
])
def test_bad_input_is_one_line(tmp_path, capsys, case, code, text) -> None:
    model, out, extra = "tiny-adder", tmp_path / "out.onnx", []
    if case == "unwritable":
        out = _unwritable(tmp_path)
    elif case == "parent_is_file":
        (tmp_path / "f").write_text("x")
        out = tmp_path / "f" / "out.onnx"
    elif case == "out_is_folder":
        out = tmp_path
    elif case == "missing_model":
        model = str(tmp_path / "nowhere")
    elif case == "not_a_model":
        model = str(tmp_path)
    elif case == "bad_config":
        (tmp_path / "m").mkdir()
        (tmp_path / "m" / "config.json").write_text("[1, 2]")
        model = str(tmp_path / "m")
    else:
        extra = ["--opset", "13"]
    before = _files(tmp_path)
    with pytest.raises(SystemExit) if code == 2 else contextlib.nullcontext():
        rc = main(["export", "--model", model, "-o", str(out), *extra])
        assert rc == code
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert text.format(out=out, model=model) in err
    assert _files(tmp_path) == before     # nothing written, no temporary left


def _parallel_block(layer, x):
    """A parallel block (GPT-J, Falcon-7B style): attention and a tanh-gated MLP both read one
    normed input, and both add to the residual."""
    h = layer.norm("input_layernorm", x)
    q, k, v = layer.linears(("q_proj", "k_proj", "v_proj"), h)
    g, u = layer.linears(("gate_proj", "up_proj"), h)
    a = layer.linears(("o_proj",), layer.attention(q, k, v))[0]
    return x + a + layer.linears(("down_proj",), np.tanh(g) * u)[0]


def test_a_new_architecture_exports_with_no_exporter_code(tmp_path, monkeypatch) -> None:
    """An architecture defined only in this test (a table entry: defaults, norms, block) runs
    in golden and exports, through the same tracer, to a graph onnxruntime runs to golden's
    logits and tokens."""
    from tritium.host import arch
    from tritium.host.arch import Architecture, llama_bitnet

    parallel = Architecture("parallel_bitnet", "test-only parallel block",
                            {**llama_bitnet.DEFAULTS, "hidden_act": "tanh"}, ("bitlinear",),
                            ("tanh",), lambda cfg: {"input_layernorm": cfg.hidden_size},
                            _parallel_block, llama_bitnet.check)
    monkeypatch.setattr(arch, "ARCHITECTURES", (*arch.ARCHITECTURES, parallel))
    monkeypatch.setitem(arch.REGISTRY, ("parallel_bitnet", "bitlinear"), parallel)
    spec = ModelSpec(model_type="parallel_bitnet", hidden=64, intermediate=96, layers=2,
                     heads=4, kv_heads=2, vocab=120, rope_theta=10000.0)
    ck = write(spec, tmp_path / "ckpt", seed=7)
    r = export_onnx(ck, tmp_path / "m.onnx")
    assert r.model_type == "parallel_bitnet" and r.matmul_integer == 14
    ops = {n.op_type for n in onnx.load(str(tmp_path / "m.onnx")).graph.node}
    assert "Tanh" in ops
    with BitNetModel.from_pretrained(ck) as golden:
        dec = Decoder(tmp_path / "m.onnx", golden.config, probes=True)
        ids = prompt(spec.vocab, 7, 99)
        logits, _, probes = dec.step(np.array([ids]), dec.empty_past(1))
        with forcing(golden) as ties:
            ties.push(probes)
            close(logits[0], golden.logits(ids))
            got = dec.greedy(ids, 6, ties)
            assert golden.generate(ids, 6, stop_at_eos=False) == got


def test_tracer_names_numpy_it_cannot_map() -> None:
    g = Graph("t")
    x = g.input("x", FLOAT, [4])
    y = np.float32(2.0) * np.maximum(x, 0.0) - 1.0     # NumPy scalars on either side
    assert [n.op_type for n in g.proto.node] == ["Max", "Mul", "Sub"] and y.name
    with pytest.raises(InputError, match="cannot trace numpy.log1p; map it in"):
        np.log1p(x)
    with pytest.raises(InputError, match="needs the value of x"):
        np.sort(x)
