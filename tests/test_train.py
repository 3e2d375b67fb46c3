"""tritium train: quantisation-aware training in PyTorch, exported to the packed checkpoint.

The expectations come from tritium's golden model: the golden quantisers
(`tritium.golden.quant`), and `BitNetModel(backend="golden")` on the exported folder, whose
logits the trained torch model (in its quantised inference mode) and transformers'
BitNetForCausalLM must reproduce, and whose greedy answers score the trained adders.

Rounding ties, as in tests/test_host_parity.py: torch sums RMSNorm means (and transformers its
float matmuls) in an order NumPy cannot reproduce, so an int8 activation code can land on the
other side of a rounding tie. `CodeForcing` records the codes the torch model computes at each
BitLinear; wherever golden's differ, the test asserts that they differ by 1 at a tie, and
gives golden the torch code. Any other difference fails at the 1e-5 logit tolerance.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import tritium.cli
from tritium.golden.packing import unpack_hf
from tritium.golden.quant import quantize_activations, quantize_weights
from tritium.host import BitNetModel
from tritium.host.checkpoint import Checkpoint
from tritium.host.zoo import resolve
from tritium.train.config import TrainConfig
from tritium.train.eval_add import all_problems, exact_match, held_out_problems
from tritium.train.loop import train
from tritium.train.quant import act_codes, weight_codes
from tritium.train.tasks import AddTask, is_held_out

from .parity import TieForcing

LOGIT_TOL = 1e-5     # relative to max |logit|


# 1-digit addition: converges to >= 95 % in ~300 steps (~40 s on one core)
ADD1 = TrainConfig(task="add", digits=1, steps=300, batch=64, hidden=64, intermediate=128,
                   layers=2, heads=4, kv_heads=2, lr=1e-2, min_lr=1e-3, warmup=30,
                   checkpoint_every=100, seed=0)
TEXT = ("It was the best of times, it was the worst of times, it was the age of wisdom, it "
        "was the age of foolishness, it was the epoch of belief, it was the epoch of "
        "incredulity, it was the season of Light, it was the season of Darkness.\n") * 4


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # results (and resume equality) are defined for one thread; the machine is shared anyway
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    # transformers wraps its BitNet quantisers in torch.compile; eager computes the same
    from torch._dynamo import config as dynamo_config

    old_disable = dynamo_config.disable
    dynamo_config.disable = True
    yield
    dynamo_config.disable = old_disable
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def adder(tmp_path_factory):
    out = tmp_path_factory.mktemp("add1")
    result = train(ADD1, out, progress=False)
    return out, result.model


@pytest.fixture(scope="module")
def text_model(tmp_path_factory):
    """A briefly trained byte-level text model with grouped-query attention and 3 layers: a
    longer context than the adder's for the parity tests."""
    d = tmp_path_factory.mktemp("text")
    (d / "t.txt").write_text(TEXT)
    cfg = TrainConfig(task="text", text=str(d / "t.txt"), tokenizer="byte", seq_len=48,
                      steps=20, batch=8, hidden=96, intermediate=160, layers=3, heads=6,
                      kv_heads=2, checkpoint_every=20, seed=3)
    result = train(cfg, d / "out", progress=False)
    return d / "out", result.model


def _rel_err(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


# -- quantisers ---------------------------------------------------------------------------------

def test_quantisers_equal_golden_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    for _ in range(100):
        shape = tuple(int(v) for v in rng.integers(1, 200, 2))
        w = (rng.standard_normal(shape) * rng.uniform(1e-7, 5)).astype(np.float32)
        # exact ties of w * s: multiples of 1/2 on a grid whose mean|w| is a power of two
        if rng.random() < 0.3:
            w = np.round(w * 4) / 4
        q, scale = quantize_weights(w)
        tq, tscale = weight_codes(torch.from_numpy(w))
        np.testing.assert_array_equal(tq.numpy(), q)
        assert tscale.dtype == torch.float32 and tscale.item() == np.float32(scale)
        x = (rng.standard_normal((7, shape[1])) * rng.uniform(1e-7, 50)).astype(np.float32)
        x[0] = 0.0                     # an all-zero token: s = 127 / 1e-5
        x[1, 0] = 127.0                # ties at every half-integer code
        x[1, 1:] = np.arange(shape[1] - 1) % 255 - 127 + 0.5
        q, s = quantize_activations(x)
        tq, ts = act_codes(torch.from_numpy(x))
        np.testing.assert_array_equal(tq.numpy(), q)
        np.testing.assert_array_equal(ts.numpy(), s)


def test_straight_through_gradients() -> None:
    from tritium.train.quant import fake_quant_act, fake_quant_weight

    w = torch.randn(8, 16, requires_grad=True)
    x = torch.randn(3, 16, requires_grad=True)
    q, scale = weight_codes(w)
    fw = fake_quant_weight(w)
    torch.testing.assert_close(fw, q * scale, rtol=0, atol=0)
    fw.sum().backward()
    torch.testing.assert_close(w.grad, torch.ones_like(w))
    fx = fake_quant_act(x)
    qa, s = act_codes(x)
    torch.testing.assert_close(fx, qa / s, rtol=0, atol=0)
    (fx * 3).sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 3.0))


# -- the exported checkpoint --------------------------------------------------------------------

def test_export_holds_golden_quantisation(adder) -> None:
    """Packed codes and weight_scales are golden's quantisation of the trained master weights."""
    out, model = adder
    ckpt = Checkpoint(out)
    try:
        for name, lin in model.bitlinears().items():
            w = lin.weight.detach().numpy()
            q, scale = quantize_weights(w)
            packed = ckpt.raw(name + ".weight")
            np.testing.assert_array_equal(unpack_hf(np.array(packed), w.shape[0]), q)
            assert ckpt.raw(name + ".weight_scale")[0] == np.float32(scale)
    finally:
        ckpt.close()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "bitnet"
    assert cfg["quantization_config"] == {"quant_method": "bitnet",
                                          "linear_class": "autobitlinear",
                                          "quantization_mode": "offline"}


@pytest.mark.parametrize("which", ["adder", "text_model"])
def test_torch_quantised_forward_equals_golden(which, request) -> None:
    out, model = request.getfixturevalue(which)
    model = model.eval().quantised()
    golden = BitNetModel.from_pretrained(out, backend="golden")
    rng = np.random.default_rng(1)
    try:
        for length in (1, 5, golden.config.max_position_embeddings // 2):
            ids = rng.integers(0, golden.config.vocab_size, length).tolist()
            forcing = TieForcing(model.bitlinears(), golden)
            try:
                with torch.no_grad():
                    want = model(torch.tensor([ids]))[0].numpy()
                got = golden.logits(ids)
            finally:
                forcing.close()
            assert got.shape == want.shape == (length, golden.config.vocab_size)
            assert _rel_err(got, want) <= LOGIT_TOL
    finally:
        model.quantised(False)
        golden.close()


@pytest.mark.parametrize("which", ["adder", "text_model"])
def test_transformers_loads_export_and_agrees(which, request) -> None:
    from transformers.integrations.bitnet import AutoBitLinear

    from tritium.host.hf_reference import hf_reference

    out, _ = request.getfixturevalue(which)
    hf = hf_reference(out)
    golden = BitNetModel.from_pretrained(out, backend="golden")
    try:
        ids = golden.encode("7+8=") if which == "adder" else golden.encode(TEXT[:40])
        linears = {n: m for n, m in hf.named_modules() if isinstance(m, AutoBitLinear)}
        assert len(linears) == 7 * golden.config.num_hidden_layers
        forcing = TieForcing(linears, golden)
        try:
            with torch.no_grad():
                want = hf(torch.tensor([ids])).logits[0].numpy()
                gen = hf.generate(torch.tensor([ids]), max_new_tokens=6, do_sample=False,
                                  pad_token_id=golden.config.eos_token_ids[0])
            got = golden.logits(ids)
            assert _rel_err(got, want) <= LOGIT_TOL
        finally:
            forcing.close()
        # greedy decoding: transformers stops at EOS as tritium does
        assert golden.generate(ids, max_new_tokens=6) == gen[0, len(ids):].tolist()
    finally:
        golden.close()


# -- training -----------------------------------------------------------------------------------

def test_one_digit_addition_converges(adder) -> None:
    out, _ = adder
    golden = BitNetModel.from_pretrained(out, backend="golden")
    try:
        score = exact_match(golden, all_problems(1))
    finally:
        golden.close()
    assert len(score.results) == 100
    assert score.accuracy >= 0.95, [r for r in score.results if not r.right][:10]
    assert (out / "loss.png").stat().st_size > 1000
    meta = json.loads((out / "train.json").read_text())
    assert meta["step"] == ADD1.steps and meta["final_loss"] < 0.1


def test_addition_batches() -> None:
    task = AddTask(3)
    rng = np.random.default_rng(0)
    x, y = task.batch(rng, 256)
    tok = task.tokenizer
    for row_x, row_y in zip(x, y, strict=True):
        text = tok.decode([int(t) for t in row_x if t != task.pad_id], skip_special_tokens=False)
        prompt, _, rest = text.partition("=")
        a, b = (int(v) for v in prompt.split("+"))
        assert not is_held_out(np.array(a), np.array(b))
        # the loss covers exactly the answer digits and EOS
        targets = [int(t) for t in row_y if t != -100]
        assert tok.decode(targets[:-1]) == str(a + b) and targets[-1] == task.eos_id
    held = held_out_problems(1000, 3)
    assert len(set(held)) == 1000
    assert all(is_held_out(np.array(a), np.array(b)) for a, b in held)


def _weights(out: Path) -> bytes:
    return (out / "model.safetensors").read_bytes()


@pytest.mark.parametrize("tokenizer", ["byte", "bpe"])
def test_resume_equals_uninterrupted_run(tmp_path, tokenizer) -> None:
    (tmp_path / "t.txt").write_text(TEXT)
    cfg = TrainConfig(task="text", text=str(tmp_path / "t.txt"), tokenizer=tokenizer,
                      vocab_size=300, seq_len=16, steps=12, batch=4, hidden=32, intermediate=64,
                      layers=1, heads=2, kv_heads=1, checkpoint_every=5, warmup=3, seed=7)
    whole = train(cfg, tmp_path / "whole", progress=False)

    def interrupt(step: int, _loss: float) -> None:
        if step == 8:                  # after the checkpoint at step 5
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "split", progress=False, on_step=interrupt)
    state = torch.load(tmp_path / "split" / "train_state.pt", weights_only=False)
    assert state["step"] == 5
    resumed = train(cfg, tmp_path / "split", resume=True, progress=False)
    assert resumed.steps == whole.steps == 12
    assert _weights(tmp_path / "split") == _weights(tmp_path / "whole")
    a = json.loads((tmp_path / "whole" / "train.json").read_text())
    b = json.loads((tmp_path / "split" / "train.json").read_text())
    assert a["final_loss"] == b["final_loss"]
    # a different seed trains something else
    other = train(TrainConfig(**{**cfg.__dict__, "seed": 8}), tmp_path / "other",
                  progress=False)
    assert other.final_loss != whole.final_loss
    # the exported tokenizer round-trips through tritium's loader
    m = BitNetModel.from_pretrained(tmp_path / "whole", backend="golden")
    try:
        assert m.decode(m.encode("the age of wisdom")) == "the age of wisdom"
        if tokenizer == "byte":
            assert len(m.encode("wisdom")) == 6
    finally:
        m.close()


# -- the command line ---------------------------------------------------------------------------

def _run(argv: list[str], capsys) -> tuple[int, str]:
    rc = tritium.cli.main(["train", *argv])
    return rc, capsys.readouterr().err


def test_cli_trains_and_resumes(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    small = ["--task", "add", "--digits", "1", "--hidden", "32", "--intermediate", "64",
             "--layers", "1", "--heads", "2", "--kv-heads", "1", "--batch", "8", "-q",
             "--out", str(out), "--checkpoint-every", "2"]
    rc, err = _run([*small, "--steps", "3"], capsys)
    assert rc == 0, err
    rc, err = _run([*small, "--steps", "5", "--resume"], capsys)
    assert rc == 0, err
    meta = json.loads((out / "train.json").read_text())
    assert meta["step"] == 5 and meta["command"].startswith("tritium train")
    m = BitNetModel.from_pretrained(out, backend="golden")
    m.close()


@pytest.mark.parametrize("argv, message", [
    (["--text", "{tmp}/missing.txt"], "missing.txt: no such file"),
    (["--text", "{tmp}"], "is a directory"),
    (["--text", "{tmp}/short.txt"], "fewer than --seq-len"),
    (["--text", "{tmp}/bad.txt"], "not UTF-8"),
    (["--text", "{tmp}/t.txt", "--tokenizer", "bpe", "--vocab-size", "100"],
     "--vocab-size must be at least"),
    (["--task", "add", "--steps", "0"], "--steps must be a positive integer"),
    (["--task", "add", "--digits", "9"], "--digits must be an integer from 1 to 6"),
    (["--task", "add", "--hidden", "30", "--heads", "4"], "must be a multiple of"),
    (["--task", "add", "--heads", "4", "--kv-heads", "3"], "num_key_value_heads=3"),
    (["--task", "add", "--lr", "-1"], "--lr must be a positive number"),
    (["--task", "add", "--resume"], "does not exist; start without --resume"),
    (["--task", "add", "--out", "{tmp}/t.txt"], "exists and is not a directory"),
])
def test_bad_input_is_one_line(tmp_path, capsys, argv, message) -> None:
    (tmp_path / "t.txt").write_text(TEXT)
    (tmp_path / "short.txt").write_text("hi")
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\x00abc")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "run")]
    rc, err = _run([*argv, "--steps" if "--steps" not in argv else "--seed", "1", "-q"],
                   capsys)
    assert rc == 1
    assert err.count("\n") == 1 and err.startswith("tritium train: error: ") and message in err, err


def test_resume_refuses_a_different_run(tmp_path, capsys) -> None:
    base = ["--task", "add", "--digits", "1", "--hidden", "32", "--intermediate", "64",
            "--layers", "1", "--heads", "2", "--kv-heads", "1", "--batch", "4", "-q",
            "--out", str(tmp_path)]
    assert _run([*base, "--steps", "2"], capsys)[0] == 0
    rc, err = _run([*base, "--steps", "2"], capsys)
    assert rc == 1 and "pass --resume" in err
    rc, err = _run([*base, "--steps", "4", "--seed", "1", "--resume"], capsys)
    assert rc == 1 and "seed=0, not 1" in err
    rc, err = _run([*base, "--steps", "1", "--resume"], capsys)
    assert rc == 1 and "beyond --steps 1" in err


# -- the shipped model --------------------------------------------------------------------------

def test_zoo_resolves_names_not_paths(tmp_path, monkeypatch) -> None:
    assert resolve("tiny-adder") is not None
    assert resolve("no-such-model") is None
    assert resolve("./tiny-adder") is None
    # a folder of the same name in the working directory is the user's, not the zoo's
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny-adder").mkdir()
    assert resolve("tiny-adder") is None


def test_tiny_adder_ships_and_adds() -> None:
    folder = resolve("tiny-adder")
    assert folder is not None
    size = sum(p.stat().st_size for p in folder.iterdir())
    assert size < 4_000_000
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["accuracy"] >= 0.95 and meta["problems"] == 1000
    model = BitNetModel.from_pretrained("tiny-adder", backend="golden")
    try:
        # the 1,000 held-out problems the model card reports on (~10 s on the golden backend)
        score = exact_match(model, held_out_problems(1000, 3, seed=meta["eval_seed"]))
    finally:
        model.close()
    assert score.accuracy >= 0.95, [r for r in score.results if not r.right][:10]
    # the card reports what the shipped weights do
    assert score.correct == meta["correct"]


def test_unknown_model_name_is_still_an_error() -> None:
    from tritium.golden.checks import InputError

    with pytest.raises(InputError):
        BitNetModel.from_pretrained("no-such-model", backend="golden")
