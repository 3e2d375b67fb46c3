"""Checkpoint reading: tritium's own safetensors reader and writer, and every bad input the
loader must reject with a clear error naming the file or tensor."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tritium.golden.checks import InputError
from tritium.host import BitNetModel
from tritium.host.checkpoint import (
    Checkpoint,
    CheckpointError,
    ModelConfig,
    SafetensorsFile,
    bf16_to_float32,
)
from tritium.host.synthetic import bf16_from_float32, write_random_checkpoint, write_safetensors

SMALL = dict(hidden=32, intermediate=48, layers=2, heads=4, kv_heads=2, vocab=40)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return write_random_checkpoint(tmp_path_factory.mktemp("small"), **SMALL)


def copy_of(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def rewrite(path: Path, edit) -> None:
    """Load a safetensors file's tensors with tritium's reader, edit the dict, write it back."""
    f = SafetensorsFile(path)
    tensors = {n: np.array(f.raw(n)) for n in f.tensors}
    dtypes = {n: i.dtype for n, i in f.tensors.items()}
    f.close()
    edit(tensors, dtypes)
    write_safetensors(path, tensors, dtypes={n: d for n, d in dtypes.items() if n in tensors})


def edit_config(path: Path, **changes) -> None:
    cfg = json.loads((path / "config.json").read_text())
    for k, v in changes.items():
        if v is ...:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    (path / "config.json").write_text(json.dumps(cfg))


# -- safetensors ------------------------------------------------------------------------------

def test_reader_and_writer_agree_with_the_safetensors_package(tmp_path: Path) -> None:
    import safetensors.numpy as st
    rng = np.random.default_rng(0)
    tensors = {"a": rng.standard_normal((3, 5)).astype(np.float32),
               "b": rng.integers(0, 255, (7,), dtype=np.uint8),
               "c": rng.integers(-5, 5, (2, 2, 2), dtype=np.int64),
               "d": np.zeros((0, 4), np.float16)}
    # theirs -> ours
    st.save_file(tensors, str(tmp_path / "theirs.safetensors"))
    f = SafetensorsFile(tmp_path / "theirs.safetensors")
    for name, arr in tensors.items():
        np.testing.assert_array_equal(f.raw(name), arr)
        assert f.raw(name).dtype == arr.dtype
    f.close()
    # ours -> theirs
    write_safetensors(tmp_path / "ours.safetensors", tensors, metadata={"format": "np"})
    back = st.load_file(str(tmp_path / "ours.safetensors"))
    for name, arr in tensors.items():
        np.testing.assert_array_equal(back[name], arr)


def test_bf16_round_trip_against_torch(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    x = np.random.default_rng(1).standard_normal(1000).astype(np.float32) * 100
    t = torch.from_numpy(x).to(torch.bfloat16)
    # rounding float32 -> bf16 agrees with torch (round to nearest even)
    np.testing.assert_array_equal(bf16_from_float32(x), t.view(torch.int16).numpy().view(np.uint16))
    save_file({"x": t}, str(tmp_path / "t.safetensors"))
    f = SafetensorsFile(tmp_path / "t.safetensors")
    assert f.tensors["x"].dtype == "BF16"
    np.testing.assert_array_equal(bf16_to_float32(f.raw("x")), t.float().numpy())
    f.close()
    write_safetensors(tmp_path / "o.safetensors", {"x": bf16_from_float32(x)}, dtypes={"x": "BF16"})
    assert torch.equal(load_file(str(tmp_path / "o.safetensors"))["x"], t)


def test_tensors_are_views_of_the_mapped_file(small: Path) -> None:
    f = SafetensorsFile(small / "model.safetensors")
    w = f.raw("model.layers.0.mlp.up_proj.weight")
    assert not w.flags.owndata and not w.flags.writeable
    f.close()


@pytest.mark.parametrize(("damage", "message"), [
    (lambda b: b[:5], "truncated safetensors file (5 bytes"),
    (lambda b: (10**6).to_bytes(8, "little") + b[8:], "header length 1000000 runs past the end"),
    (lambda b: b[:-3], "truncated safetensors file: data ends at byte"),
    (lambda b: b[:8] + b"x" + b[9:], "header is not valid JSON"),
])
def test_damaged_safetensors_file(tmp_path: Path, small: Path, damage, message) -> None:
    ck = copy_of(small, tmp_path / "ck")
    path = ck / "model.safetensors"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CheckpointError, match="model.safetensors") as info:
        BitNetModel.from_pretrained(ck)
    assert message in str(info.value)


def test_bad_header_entries(tmp_path: Path) -> None:
    def write(header: dict, data: bytes = b"") -> Path:
        text = json.dumps(header).encode()
        p = tmp_path / "x.safetensors"
        p.write_bytes(len(text).to_bytes(8, "little") + text + data)
        return p

    with pytest.raises(CheckpointError, match="'w': unsupported dtype 'Q4'"):
        SafetensorsFile(write({"w": {"dtype": "Q4", "shape": [1], "data_offsets": [0, 1]}}, b"x"))
    with pytest.raises(CheckpointError, match="'w': data_offsets span 3 bytes but F32"):
        SafetensorsFile(write({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 3]}},
                              b"xxxx"))
    with pytest.raises(CheckpointError, match="shape must be a list of non-negative"):
        SafetensorsFile(write({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}))


# -- checkpoint folders -----------------------------------------------------------------------

def test_missing_folder_and_config(tmp_path: Path, small: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        BitNetModel.from_pretrained(tmp_path / "nope")
    ck = copy_of(small, tmp_path / "ck")
    (ck / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"config.json not found"):
        BitNetModel.from_pretrained(ck)
    (ck / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config.json: not valid JSON"):
        BitNetModel.from_pretrained(ck)


def test_no_safetensors(tmp_path: Path, small: Path) -> None:
    ck = copy_of(small, tmp_path / "ck")
    (ck / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"holds no \*.safetensors file"):
        BitNetModel.from_pretrained(ck)


def test_unknown_model_type(tmp_path: Path, small: Path) -> None:
    ck = copy_of(small, tmp_path / "ck")
    edit_config(ck, model_type="gpt2")
    with pytest.raises(CheckpointError, match="unknown model_type 'gpt2'") as info:
        BitNetModel.from_pretrained(ck)
    # one line, naming the file and every registered architecture
    msg = str(info.value)
    assert "config.json" in msg and "\n" not in msg
    assert "bitnet (" in msg and "llama (" in msg
    edit_config(ck, model_type=...)
    with pytest.raises(CheckpointError, match="unknown model_type None"):
        BitNetModel.from_pretrained(ck)


def test_llama_needs_a_bitnet_quantization_config(tmp_path: Path, small: Path) -> None:
    ck = copy_of(small, tmp_path / "ck")
    edit_config(ck, model_type="llama", hidden_act="silu", quantization_config=...)
    with pytest.raises(CheckpointError, match="'llama' without a quantization_config"):
        BitNetModel.from_pretrained(ck)


@pytest.mark.parametrize(("changes", "message"), [
    ({"num_key_value_heads": 3}, "must be a multiple of num_key_value_heads=3"),
    ({"hidden_size": 30}, "hidden_size=30 must be num_attention_heads=4 x head_dim"),
    ({"hidden_act": "silu"}, "hidden_act 'silu' is not supported"),
    ({"vocab_size": 0}, "vocab_size must be a positive integer"),
    ({"rope_scaling": {"rope_type": "yarn", "factor": 2.0}}, "rope_type 'yarn'"),
    ({"quantization_config": {"quant_method": "gptq"}}, "quant_method 'gptq'"),
    ({"attention_bias": True}, "attention_bias=true is not supported"),
    ({"model_type": "llama", "quantization_config": {"quant_method": "bitnet"}},
     "hidden_act 'relu2' is not supported; llama uses 'silu'"),
    ({"model_type": "llama", "hidden_act": "silu", "mlp_bias": True},
     "attention_bias/mlp_bias with linear_class \"autobitlinear\" is not supported"),
    ({"quantization_config": {"quant_method": "bitnet", "modules_to_not_convert": [
        "lm_head", "model.layers.0.mlp.up_proj"]}}, "modules_to_not_convert .* is not supported"),
    ({"num_hidden_layers": 10**9}, "num_hidden_layers=1000000000 is implausible"),
    ({"num_hidden_layers": 5}, r"num_hidden_layers=5 but the checkpoint .* holds tensors of 2 "
                               r"layer\(s\); 'model.layers.2.\*' is missing"),
    # shapes the config implies against the tensors' own
    ({"num_key_value_heads": 4},
     r"'model.layers.0.self_attn.k_proj.weight' in .*model.safetensors has shape \[4, 32\] but "
     r"config.json implies packed \[8, 32\]"),
    ({"intermediate_size": 52},
     r"'model.layers.0.mlp.ffn_sub_norm.weight' in .*model.safetensors has shape \[48\] but "
     r"config.json implies \[52\]"),
    ({"vocab_size": 41},
     r"'model.embed_tokens.weight' in .*model.safetensors has shape \[40, 32\] but config.json "
     r"implies \[41, 32\]"),
])
def test_bad_config_values(tmp_path: Path, small: Path, changes, message) -> None:
    ck = copy_of(small, tmp_path / "ck")
    edit_config(ck, **changes)
    with pytest.raises(CheckpointError, match=message):
        BitNetModel.from_pretrained(ck)


def test_missing_tensors_are_named(tmp_path: Path, small: Path) -> None:
    ck = copy_of(small, tmp_path / "ck")
    rewrite(ck / "model.safetensors", lambda t, d: [t.pop("model.layers.1.mlp.up_proj.weight"),
                                                     t.pop("model.norm.weight")])
    with pytest.raises(CheckpointError, match="missing 2 tensor") as info:
        BitNetModel.from_pretrained(ck)
    assert "'model.layers.1.mlp.up_proj.weight'" in str(info.value)
    assert "'model.norm.weight'" in str(info.value)


def test_llama_bias_and_linear_norm_tensors_are_named(tmp_path: Path) -> None:
    ck = write_random_checkpoint(tmp_path / "l", model_type="llama", bias=True,
                                 use_rms_norm=True, **SMALL)
    with BitNetModel.from_pretrained(ck) as m:
        lin = m._layers[1].linears["up_proj"]
        assert lin.divide and lin.bias.shape == (48,) and lin.norm.shape == (32,)
    rewrite(ck / "model.safetensors", lambda t, d: [t.pop("model.layers.1.mlp.up_proj.bias"),
                                                    t.pop("model.layers.0.self_attn.o_proj"
                                                          ".rms_norm.weight")])
    with pytest.raises(CheckpointError, match="missing 2 tensor") as info:
        BitNetModel.from_pretrained(ck)
    assert "'model.layers.1.mlp.up_proj.bias'" in str(info.value)
    assert "'model.layers.0.self_attn.o_proj.rms_norm.weight'" in str(info.value)


def test_untied_checkpoint_needs_lm_head(tmp_path: Path, small: Path) -> None:
    ck = copy_of(small, tmp_path / "ck")
    edit_config(ck, tie_word_embeddings=False)
    with pytest.raises(CheckpointError, match="'lm_head.weight'"):
        BitNetModel.from_pretrained(ck)


def test_missing_weight_scale(tmp_path: Path, small: Path) -> None:
    ck = copy_of(small, tmp_path / "ck")
    rewrite(ck / "model.safetensors",
            lambda t, d: t.pop("model.layers.0.self_attn.k_proj.weight_scale"))
    with pytest.raises(CheckpointError,
                       match="'model.layers.0.self_attn.k_proj.weight_scale' is missing"):
        BitNetModel.from_pretrained(ck)


def test_packed_code_3_is_rejected(tmp_path: Path, small: Path) -> None:
    ck = copy_of(small, tmp_path / "ck")

    def poison(t, d):
        t["model.layers.1.self_attn.o_proj.weight"][2, 5] |= 0b11 << 4

    rewrite(ck / "model.safetensors", poison)
    with pytest.raises(InputError, match="invalid 2-bit code 3") as info:
        BitNetModel.from_pretrained(ck)
    assert "model.layers.1.self_attn.o_proj.weight" in str(info.value)
    assert "model.safetensors" in str(info.value)


@pytest.mark.parametrize(("name", "dtype", "message"), [
    ("model.layers.0.mlp.down_proj.weight", np.int32,
     "'model.layers.0.mlp.down_proj.weight' in .* has dtype I32; a BitLinear weight is packed U8"),
    ("model.embed_tokens.weight", np.int16, "'model.embed_tokens.weight' in .* has dtype I16; "
     "expected BF16 or F16 or F32 or F64"),
    ("model.layers.1.mlp.up_proj.weight_scale", np.int8, "expected a float weight_scale"),
])
def test_wrong_dtypes(tmp_path: Path, small: Path, name, dtype, message) -> None:
    ck = copy_of(small, tmp_path / "ck")

    def change(t, d):
        t[name] = t[name].astype(dtype)
        d.pop(name)

    rewrite(ck / "model.safetensors", change)
    with pytest.raises(CheckpointError, match=message):
        BitNetModel.from_pretrained(ck)


def test_bad_weight_scale_value(tmp_path: Path, small: Path) -> None:
    ck = copy_of(small, tmp_path / "ck")
    rewrite(ck / "model.safetensors", lambda t, d: t.__setitem__(
        "model.layers.0.mlp.up_proj.weight_scale", bf16_from_float32(np.array([-1.0]))))
    with pytest.raises(CheckpointError, match="weight_scale must be finite and > 0"):
        BitNetModel.from_pretrained(ck)


def test_float_weight_with_weight_scale_is_ambiguous(tmp_path: Path) -> None:
    ck = write_random_checkpoint(tmp_path / "m", packed=False, **SMALL)
    rewrite(ck / "model.safetensors", lambda t, d: t.__setitem__(
        "model.layers.0.mlp.up_proj.weight_scale", np.ones(1, np.float32)))
    with pytest.raises(CheckpointError, match="float master weight but .*weight_scale"):
        BitNetModel.from_pretrained(ck)


def test_sharded_index_problems(tmp_path: Path) -> None:
    ck = write_random_checkpoint(tmp_path / "m", shards=2, **SMALL)
    index = json.loads((ck / "model.safetensors.index.json").read_text())
    shard = sorted(set(index["weight_map"].values()))[1]
    (ck / shard).rename(ck / "gone.bin")
    with pytest.raises(CheckpointError, match=f"{shard} not found"):
        BitNetModel.from_pretrained(ck)
    (ck / "gone.bin").rename(ck / shard)
    index["weight_map"]["model.norm.weight"] = sorted(set(index["weight_map"].values()))[0] \
        if index["weight_map"]["model.norm.weight"] == shard else shard
    (ck / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="says tensor 'model.norm.weight' is in"):
        BitNetModel.from_pretrained(ck)


def test_sharded_equals_single_file(tmp_path: Path) -> None:
    one = write_random_checkpoint(tmp_path / "one", seed=7, **SMALL)
    three = write_random_checkpoint(tmp_path / "three", seed=7, shards=3, **SMALL)
    assert len(list(three.glob("*.safetensors"))) == 3
    with BitNetModel.from_pretrained(one) as a, BitNetModel.from_pretrained(three) as b:
        np.testing.assert_array_equal(a.logits([1, 2, 3]), b.logits([1, 2, 3]))


def test_master_weights_quantise_like_packed(tmp_path: Path) -> None:
    """A bf16 master checkpoint and the packed checkpoint of its quantised weights give the
    same model (same codes, same scales up to the bf16 rounding of weight_scale)."""
    ck = write_random_checkpoint(tmp_path / "m", packed=False, seed=3, **SMALL)
    c = Checkpoint(ck)
    cfg = ModelConfig.from_dict(c.config)
    assert cfg.quantization_mode == "online"
    with BitNetModel.from_pretrained(ck) as m:
        lin = m._layers[0].linears["q_proj"]
        assert lin.prepared.w.dtype == np.int8
        assert set(np.unique(lin.prepared.w)) <= {-1, 0, 1}
    c.close()


@pytest.mark.parametrize("model_type", ["bitnet", "llama"])
def test_config_defaults_follow_transformers(model_type) -> None:
    """Where config.json is silent, tritium reads transformers' own default for that model_type
    (BitNetConfig, LlamaConfig), and the estimator's shape record agrees."""
    import transformers
    raw = {"model_type": model_type, "quantization_config": {"quant_method": "bitnet"}}
    cfg = ModelConfig.from_dict(raw)
    ref = transformers.AutoConfig.for_model(model_type)
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "vocab_size", "max_position_embeddings", "rms_norm_eps",
                "tie_word_embeddings", "bos_token_id", "hidden_act", "attention_bias"):
        assert getattr(cfg, key) == getattr(ref, key), key
    assert cfg.head_dim == getattr(ref, "head_dim", ref.hidden_size // ref.num_attention_heads)
    assert cfg.rope_theta == ref.rope_parameters["rope_theta"]
    assert cfg.eos_token_ids == (ref.eos_token_id,)
    assert cfg.linear_class == "bitlinear"   # BitNetQuantConfig's default
    shape = cfg.shape("defaults")
    assert (shape.tie_word_embeddings, shape.max_position_embeddings) == \
        (ref.tie_word_embeddings, ref.max_position_embeddings)


def test_config_keys_override_defaults() -> None:
    cfg = ModelConfig.from_dict({"model_type": "bitnet", "num_key_value_heads": None,
                                 "rope_parameters": {"rope_type": "default", "rope_theta": 1e4},
                                 "eos_token_id": [1, 2]})
    assert cfg.num_key_value_heads == 20 and cfg.rope_theta == 1e4
    assert cfg.eos_token_ids == (1, 2)
