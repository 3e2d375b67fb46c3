"""Reading Hugging Face BitNet b1.58 checkpoints without torch, transformers or safetensors.

A checkpoint folder holds `config.json` and one or more `*.safetensors` files (sharded ones are
listed in `model.safetensors.index.json`). A safetensors file is an 8-byte little-endian header
length, a JSON header naming each tensor's dtype, shape and byte range, then the raw data. The
files are memory-mapped and tensors are NumPy views into the map, so nothing is copied until a
tensor is converted; bf16 (which NumPy lacks) is kept as its uint16 bit pattern and widened to
float32 only where a float is needed (norm weights, looked-up embedding rows, LM head chunks).

Every BitLinear weight is turned into int8 ternary [K, N] (= [in, out], the layout the
accelerator's weight-stationary array and the GEMM kernels want) and one float scale, from
either the packed offline format (uint8 [ceil(out/4), in] + `weight_scale`) or float master
weights, which are quantised on load exactly as transformers' `WeightQuant` does.
"""

from __future__ import annotations

import contextlib
import json
import math
import mmap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..golden.checks import InputError
from ..golden.packing import unpack_hf
from ..golden.quant import quantize_weights


class CheckpointError(InputError):
    """A checkpoint file is missing, malformed or does not match its config; names the file."""


# ------------------------------------------------------------------------------------------
# safetensors
# ------------------------------------------------------------------------------------------

# BF16 is read as its uint16 bit pattern; see bf16_to_float32.
SAFETENSORS_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "U8": np.dtype("<u1"),
    "I8": np.dtype("<i1"),
    "U16": np.dtype("<u2"),
    "I16": np.dtype("<i2"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "U32": np.dtype("<u4"),
    "I32": np.dtype("<i4"),
    "F32": np.dtype("<f4"),
    "U64": np.dtype("<u8"),
    "I64": np.dtype("<i8"),
    "F64": np.dtype("<f8"),
}
FLOAT_DTYPES = ("BF16", "F16", "F32", "F64")
# The reference implementation refuses headers over 100 MB; a larger length is corruption.
MAX_HEADER_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str            # safetensors spelling: "BF16", "U8", ...
    shape: tuple[int, ...]
    begin: int            # byte offsets into the data section
    end: int


def bf16_to_float32(bits: np.ndarray) -> np.ndarray:
    """Widen bf16 bit patterns (uint16) to float32: bf16 is the top half of a float32."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


class SafetensorsFile:
    """One memory-mapped safetensors file; tensors come back as read-only zero-copy views."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            with self.path.open("rb") as f:
                size = self.path.stat().st_size
                if size < 8:
                    raise CheckpointError(
                        f"{self.path}: truncated safetensors file ({size} bytes; the 8-byte "
                        "header length alone needs 8)")
                n = int.from_bytes(f.read(8), "little")
                if n > size - 8:
                    raise CheckpointError(
                        f"{self.path}: truncated safetensors file: header length {n} runs past "
                        f"the end of the {size}-byte file")
                if n > MAX_HEADER_BYTES:
                    raise CheckpointError(f"{self.path}: safetensors header length {n} exceeds "
                                          f"{MAX_HEADER_BYTES} bytes; not a safetensors file?")
                header_bytes = f.read(n)
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else None
        except OSError as exc:
            raise CheckpointError(f"{self.path}: cannot read: {exc.strerror or exc}") from None
        self._data_start = 8 + n
        self._data_size = size - 8 - n
        self.metadata: dict[str, str] = {}
        self.tensors: dict[str, TensorInfo] = {}
        try:
            self._parse(header_bytes)
        except CheckpointError:
            self.close()
            raise

    def _parse(self, header_bytes: bytes) -> None:
        try:
            header = json.loads(header_bytes.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{self.path}: safetensors header is not valid JSON ({exc})"
                                  ) from None
        if not isinstance(header, dict):
            raise CheckpointError(f"{self.path}: safetensors header must be a JSON object")
        meta = header.pop("__metadata__", None) or {}
        if isinstance(meta, dict):
            self.metadata = {str(k): str(v) for k, v in meta.items()}
        for name, entry in header.items():
            self.tensors[name] = self._check_entry(name, entry)

    def _check_entry(self, name: str, entry: Any) -> TensorInfo:
        where = f"{self.path}: tensor {name!r}"
        if not isinstance(entry, dict):
            raise CheckpointError(f"{where}: header entry must be an object")
        dtype = entry.get("dtype")
        if dtype not in SAFETENSORS_DTYPES:
            raise CheckpointError(f"{where}: unsupported dtype {dtype!r}; tritium reads "
                                  f"{', '.join(SAFETENSORS_DTYPES)}")
        shape = entry.get("shape")
        if not isinstance(shape, list) or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise CheckpointError(f"{where}: shape must be a list of non-negative integers, "
                                  f"got {shape!r}")
        offsets = entry.get("data_offsets")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(
                isinstance(o, int) and not isinstance(o, bool) for o in offsets)
                and 0 <= offsets[0] <= offsets[1]):
            raise CheckpointError(f"{where}: data_offsets must be [begin, end] with "
                                  f"0 <= begin <= end, got {offsets!r}")
        begin, end = offsets
        need = math.prod(shape) * SAFETENSORS_DTYPES[dtype].itemsize
        if end - begin != need:
            raise CheckpointError(f"{where}: data_offsets span {end - begin} bytes but "
                                  f"{dtype} {tuple(shape)} needs {need}")
        if end > self._data_size:
            raise CheckpointError(
                f"{where}: truncated safetensors file: data ends at byte {end} of the data "
                f"section but the file holds only {self._data_size} bytes of data")
        return TensorInfo(name, dtype, tuple(shape), begin, end)

    def raw(self, name: str) -> np.ndarray:
        """The tensor as stored (BF16 as uint16), a read-only view into the mapped file."""
        info = self.tensors[name]
        dtype = SAFETENSORS_DTYPES[info.dtype]
        if self._map is None:
            raise CheckpointError(f"{self.path}: file was closed")
        count = math.prod(info.shape)
        arr = np.frombuffer(self._map, dtype=dtype, count=count,
                            offset=self._data_start + info.begin)
        return arr.reshape(info.shape)

    def release_pages(self) -> None:
        """Drop this process's resident pages of the file (they stay in the page cache and
        fault back in on access): after loading, the packed weights are no longer read."""
        if self._map is not None and hasattr(mmap, "MADV_DONTNEED"):
            with contextlib.suppress(OSError):
                self._map.madvise(mmap.MADV_DONTNEED)

    def close(self) -> None:
        if self._map is not None:
            # views handed out may still be alive; the map then goes when they do
            with contextlib.suppress(BufferError):
                self._map.close()
            self._map = None


# ------------------------------------------------------------------------------------------
# checkpoint folder
# ------------------------------------------------------------------------------------------

INDEX_NAME = "model.safetensors.index.json"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None


class Checkpoint:
    """A checkpoint folder: its config.json and the tensors of all its safetensors shards."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        if not self.dir.is_dir():
            raise CheckpointError(f"model folder {self.dir} does not exist or is not a folder")
        cfg_path = self.dir / "config.json"
        if not cfg_path.is_file():
            raise CheckpointError(f"{cfg_path} not found: a Hugging Face checkpoint folder "
                                  "needs config.json beside its *.safetensors files")
        self.config_path = cfg_path
        self.config: dict[str, Any] = _read_json(cfg_path)
        if not isinstance(self.config, dict):
            raise CheckpointError(f"{cfg_path}: must hold a JSON object")
        self._files: dict[str, SafetensorsFile] = {}
        self._where: dict[str, str] = {}    # tensor name -> file name
        try:
            self._index()
        except CheckpointError:
            self.close()
            raise

    def _open(self, fname: str) -> SafetensorsFile:
        if fname not in self._files:
            path = self.dir / fname
            if not path.is_file():
                raise CheckpointError(f"{path} not found (listed in {self.dir / INDEX_NAME})")
            self._files[fname] = SafetensorsFile(path)
        return self._files[fname]

    def _index(self) -> None:
        index_path = self.dir / INDEX_NAME
        if index_path.is_file():
            index = _read_json(index_path)
            weight_map = index.get("weight_map") if isinstance(index, dict) else None
            if not isinstance(weight_map, dict) or not all(
                    isinstance(v, str) for v in weight_map.values()):
                raise CheckpointError(f"{index_path}: needs a \"weight_map\" object mapping "
                                      "tensor names to shard file names")
            for fname in sorted(set(weight_map.values())):
                shard = self._open(fname)
                for name in shard.tensors:
                    if name in self._where:
                        raise CheckpointError(f"tensor {name!r} is stored twice: in "
                                              f"{self._where[name]} and {fname}")
                    self._where[name] = fname
            for name, fname in weight_map.items():
                if self._where.get(name) != fname:
                    raise CheckpointError(f"{index_path} says tensor {name!r} is in {fname}, "
                                          "but that file does not hold it")
            return
        files = sorted(p.name for p in self.dir.glob("*.safetensors"))
        if not files:
            raise CheckpointError(f"{self.dir} holds no *.safetensors file (nor {INDEX_NAME})")
        for fname in files:
            for name in self._open(fname).tensors:
                if name in self._where:
                    raise CheckpointError(f"tensor {name!r} is stored twice: in "
                                          f"{self._where[name]} and {fname}")
                self._where[name] = fname

    @property
    def files(self) -> list[Path]:
        return [f.path for f in self._files.values()]

    def __contains__(self, name: str) -> bool:
        return name in self._where

    def names(self) -> list[str]:
        return list(self._where)

    def info(self, name: str) -> TensorInfo:
        if name not in self._where:
            files = ", ".join(sorted(self._files))
            raise CheckpointError(f"tensor {name!r} is missing from the checkpoint "
                                  f"{self.dir} (files: {files})")
        return self._files[self._where[name]].tensors[name]

    def file_of(self, name: str) -> Path:
        self.info(name)
        return self._files[self._where[name]].path

    def raw(self, name: str) -> np.ndarray:
        self.info(name)
        return self._files[self._where[name]].raw(name)

    def float32(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """A float tensor of the expected shape, converted to float32 (a copy unless F32)."""
        info = self.expect(name, shape, FLOAT_DTYPES)
        raw = self.raw(name)
        if info.dtype == "BF16":
            return bf16_to_float32(raw)
        return raw.astype(np.float32, copy=False)

    def expect(self, name: str, shape: tuple[int, ...], dtypes: tuple[str, ...]) -> TensorInfo:
        info = self.info(name)
        if info.dtype not in dtypes:
            raise CheckpointError(f"tensor {name!r} in {self.file_of(name)} has dtype "
                                  f"{info.dtype}; expected {' or '.join(dtypes)}")
        if info.shape != tuple(shape):
            raise CheckpointError(f"tensor {name!r} in {self.file_of(name)} has shape "
                                  f"{list(info.shape)} but config.json implies {list(shape)}")
        return info

    def release_pages(self) -> None:
        for f in self._files.values():
            f.release_pages()

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()


# ------------------------------------------------------------------------------------------
# BitNet configuration
# ------------------------------------------------------------------------------------------

# transformers' BitNetConfig defaults (the 2B-4T values), used where config.json is silent,
# so a folder loads the same model here as in transformers.
_DEFAULTS: dict[str, Any] = {
    "vocab_size": 128256, "hidden_size": 2560, "intermediate_size": 6912,
    "num_hidden_layers": 30, "num_attention_heads": 20, "num_key_value_heads": 5,
    "hidden_act": "relu2", "max_position_embeddings": 2048, "rms_norm_eps": 1e-5,
    "bos_token_id": 128000, "eos_token_id": 128001, "tie_word_embeddings": False,
    "attention_bias": False, "rope_theta": 500000.0,
}
LINEAR_CLASSES = ("autobitlinear", "bitlinear")


@dataclass(frozen=True)
class ModelConfig:
    """What the runtime needs from config.json (transformers' BitNetConfig fields)."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    max_position_embeddings: int
    rms_norm_eps: float
    rope_theta: float
    tie_word_embeddings: bool
    bos_token_id: int | None
    eos_token_ids: tuple[int, ...]
    # "autobitlinear" multiplies the int result by weight_scale; the older packed "bitlinear"
    # divides by it (transformers' BitLinear.post_quant_process).
    linear_class: str = "autobitlinear"
    quantization_mode: str | None = None

    @property
    def q_dim(self) -> int:
        return self.num_attention_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_key_value_heads * self.head_dim

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """BitLinear name (under model.layers.N.) -> (out_features, in_features)."""
        h, i = self.hidden_size, self.intermediate_size
        return {
            "self_attn.q_proj": (self.q_dim, h),
            "self_attn.k_proj": (self.kv_dim, h),
            "self_attn.v_proj": (self.kv_dim, h),
            "self_attn.o_proj": (h, self.q_dim),
            "mlp.gate_proj": (i, h),
            "mlp.up_proj": (i, h),
            "mlp.down_proj": (h, i),
        }

    @property
    def max_k(self) -> int:
        return max(k for _, k in self.linear_shapes().values())

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config.json") -> ModelConfig:
        mt = raw.get("model_type")
        if mt != "bitnet":
            raise CheckpointError(f"{source}: unknown model_type {mt!r}; tritium runs BitNet "
                                  "b1.58 checkpoints (model_type \"bitnet\")")
        c = {**_DEFAULTS, **{k: v for k, v in raw.items() if v is not None or k in (
            "bos_token_id", "eos_token_id")}}
        if "num_key_value_heads" in raw and raw["num_key_value_heads"] is None:
            c["num_key_value_heads"] = c["num_attention_heads"]  # as BitNetConfig.__post_init__

        def pos_int(key: str) -> int:
            v = c[key]
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise CheckpointError(f"{source}: {key} must be a positive integer, got {v!r}")
            return v

        def pos_float(key: str, value: Any) -> float:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise CheckpointError(f"{source}: {key} must be a positive number, got {value!r}")
            return float(value)

        sizes = {k: pos_int(k) for k in (
            "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
            "num_attention_heads", "num_key_value_heads", "max_position_embeddings")}
        heads, kv = sizes["num_attention_heads"], sizes["num_key_value_heads"]
        if heads % kv:
            raise CheckpointError(f"{source}: num_attention_heads={heads} must be a multiple of "
                                  f"num_key_value_heads={kv} (grouped-query attention)")
        hidden = sizes["hidden_size"]
        head_dim = hidden // heads
        # transformers' BitNet normalises the attention output (heads x head_dim wide) with an
        # attn_sub_norm over hidden_size, so heads must divide hidden_size evenly
        if head_dim * heads != hidden or c.get("head_dim") not in (None, head_dim):
            raise CheckpointError(
                f"{source}: hidden_size={hidden} must be num_attention_heads={heads} x head_dim"
                + (f" (head_dim={c['head_dim']})" if c.get("head_dim") is not None else "")
                + "; BitNet's attn_sub_norm spans hidden_size")
        if head_dim % 2:
            raise CheckpointError(f"{source}: head_dim={head_dim} must be even for RoPE")
        if c["hidden_act"] != "relu2":
            raise CheckpointError(f"{source}: hidden_act {c['hidden_act']!r} is not supported; "
                                  "BitNet b1.58 uses \"relu2\"")
        if c["attention_bias"]:
            raise CheckpointError(f"{source}: attention_bias=true is not supported (BitNet b1.58 "
                                  "has no biases)")
        rope = c.get("rope_parameters") or c.get("rope_scaling") or {}
        if not isinstance(rope, dict):
            raise CheckpointError(f"{source}: rope_parameters must be an object, got {rope!r}")
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type != "default":
            raise CheckpointError(f"{source}: rope_type {rope_type!r} is not supported; "
                                  "tritium implements the default RoPE")
        theta = pos_float("rope_theta", rope.get("rope_theta", c["rope_theta"]))

        qc = c.get("quantization_config")
        linear_class, mode = "autobitlinear", None
        if qc is not None:
            if not isinstance(qc, dict):
                raise CheckpointError(f"{source}: quantization_config must be an object")
            if qc.get("quant_method") != "bitnet":
                raise CheckpointError(f"{source}: quantization_config.quant_method "
                                      f"{qc.get('quant_method')!r} is not supported; expected "
                                      "\"bitnet\"")
            # transformers' BitNetQuantConfig defaults
            linear_class = qc.get("linear_class", "bitlinear")
            mode = qc.get("quantization_mode", "offline")
            if linear_class not in LINEAR_CLASSES:
                raise CheckpointError(f"{source}: quantization_config.linear_class "
                                      f"{linear_class!r} must be one of {LINEAR_CLASSES}")
            if mode not in ("offline", "online"):
                raise CheckpointError(f"{source}: quantization_config.quantization_mode "
                                      f"{mode!r} must be \"offline\" or \"online\"")
            if qc.get("use_rms_norm"):
                raise CheckpointError(f"{source}: quantization_config.use_rms_norm=true is not "
                                      "supported")

        eos = c.get("eos_token_id")
        eos_ids = tuple(eos) if isinstance(eos, list) else (() if eos is None else (eos,))
        if not all(isinstance(e, int) and not isinstance(e, bool) for e in eos_ids):
            raise CheckpointError(f"{source}: eos_token_id must be an integer or a list of "
                                  f"integers, got {eos!r}")
        bos = c.get("bos_token_id")
        return cls(
            **sizes, head_dim=head_dim,
            rms_norm_eps=pos_float("rms_norm_eps", c["rms_norm_eps"]),
            rope_theta=theta,
            tie_word_embeddings=bool(c["tie_word_embeddings"]),
            bos_token_id=bos if isinstance(bos, int) else None,
            eos_token_ids=eos_ids,
            linear_class=linear_class,
            quantization_mode=mode,
        )


# ------------------------------------------------------------------------------------------
# BitNet weights
# ------------------------------------------------------------------------------------------

LAYER_NORMS = ("input_layernorm", "post_attention_layernorm", "self_attn.attn_sub_norm",
               "mlp.ffn_sub_norm")


@dataclass
class TernaryLinear:
    """A BitLinear as the accelerator sees it: int8 ternary w [K, N] = [in, out] and its scale.

    y = dequantize(a_int8 @ w, act_scale, scale); for linear_class "bitlinear" the checkpoint
    stores the inverse scale, which `divide` records.
    """

    name: str
    w: np.ndarray
    scale: float
    divide: bool = False

    @property
    def k(self) -> int:
        return int(self.w.shape[0])

    @property
    def n(self) -> int:
        return int(self.w.shape[1])


@dataclass
class LayerWeights:
    index: int
    norms: dict[str, np.ndarray]               # LAYER_NORMS -> float32
    linears: dict[str, TernaryLinear] = field(default_factory=dict)  # linear_shapes() keys


def _scale_of(ckpt: Checkpoint, name: str) -> float:
    info = ckpt.info(name)
    if info.dtype not in FLOAT_DTYPES:
        raise CheckpointError(f"tensor {name!r} in {ckpt.file_of(name)} has dtype {info.dtype}; "
                              "expected a float weight_scale")
    if math.prod(info.shape) != 1:
        raise CheckpointError(f"tensor {name!r} in {ckpt.file_of(name)} has shape "
                              f"{list(info.shape)}; expected one element")
    raw = ckpt.raw(name).reshape(1)
    value = float(bf16_to_float32(raw)[0] if info.dtype == "BF16" else np.float32(raw[0]))
    if not (math.isfinite(value) and value > 0):
        raise CheckpointError(f"tensor {name!r} in {ckpt.file_of(name)} is {value}; a "
                              "weight_scale must be finite and > 0")
    return value


def load_linear(ckpt: Checkpoint, cfg: ModelConfig, prefix: str, out_f: int,
                in_f: int) -> TernaryLinear:
    """int8 ternary [in, out] + scale from packed uint8 or float master weights."""
    wname = prefix + ".weight"
    sname = prefix + ".weight_scale"
    info = ckpt.info(wname)
    where = f"tensor {wname!r} in {ckpt.file_of(wname)}"
    if info.dtype == "U8":
        packed_shape = (-(-out_f // 4), in_f)
        if info.shape != packed_shape:
            raise CheckpointError(
                f"{where} has shape {list(info.shape)} but config.json implies packed "
                f"{list(packed_shape)} (uint8 [ceil(out/4), in] for out={out_f}, in={in_f})")
        if sname not in ckpt:
            raise CheckpointError(f"tensor {sname!r} is missing from the checkpoint {ckpt.dir}: "
                                  f"the packed weight {wname!r} needs its scale")
        scale = _scale_of(ckpt, sname)
        w = unpack_hf(ckpt.raw(wname), out_f, name=f"{wname} ({ckpt.file_of(wname).name})")
        divide = cfg.linear_class == "bitlinear"
    elif info.dtype in FLOAT_DTYPES:
        if sname in ckpt:
            raise CheckpointError(
                f"{where} is a float master weight but {sname!r} is also present; a "
                "weight_scale belongs to packed uint8 weights (is the weight unpacked?)")
        w32 = ckpt.float32(wname, (out_f, in_f))
        if not np.all(np.isfinite(w32)):
            raise CheckpointError(f"{where} holds non-finite values")
        w, scale = quantize_weights(w32, name=wname)
        divide = False
    else:
        raise CheckpointError(f"{where} has dtype {info.dtype}; a BitLinear weight is packed "
                              f"U8 [ceil(out/4), in] or a float ({', '.join(FLOAT_DTYPES)}) "
                              "master weight [out, in]")
    # [out, in] -> [in, out] = [K, N], contiguous for the GEMM kernels and the tiler
    return TernaryLinear(prefix, np.ascontiguousarray(w.T), scale, divide)


def load_layer(ckpt: Checkpoint, cfg: ModelConfig, i: int) -> LayerWeights:
    pre = f"model.layers.{i}."
    sizes = {"self_attn.attn_sub_norm": cfg.hidden_size, "mlp.ffn_sub_norm": cfg.intermediate_size}
    norms = {n: ckpt.float32(pre + n + ".weight", (sizes.get(n, cfg.hidden_size),)).copy()
             for n in LAYER_NORMS}
    layer = LayerWeights(i, norms)
    for name, (out_f, in_f) in cfg.linear_shapes().items():
        layer.linears[name] = load_linear(ckpt, cfg, pre + name, out_f, in_f)
    return layer


def check_tensors_present(ckpt: Checkpoint, cfg: ModelConfig) -> None:
    """Name every missing tensor up front, before any work is done."""
    want = ["model.embed_tokens.weight", "model.norm.weight"]
    if not cfg.tie_word_embeddings:
        want.append("lm_head.weight")
    for i in range(cfg.num_hidden_layers):
        pre = f"model.layers.{i}."
        want += [pre + n + ".weight" for n in LAYER_NORMS]
        want += [pre + n + ".weight" for n in cfg.linear_shapes()]
    missing = [n for n in want if n not in ckpt]
    if missing:
        shown = ", ".join(repr(n) for n in missing[:8])
        more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        raise CheckpointError(f"checkpoint {ckpt.dir} is missing {len(missing)} tensor(s) its "
                              f"config.json needs: {shown}{more}")


class FloatMatrix:
    """A [rows, cols] float matrix kept as stored (bf16 bits, f16 or f32) in the mapped file;
    rows are widened to float32 only when read, so the 128k x 2560 embedding never exists as
    float32."""

    def __init__(self, ckpt: Checkpoint, name: str, shape: tuple[int, int]) -> None:
        info = ckpt.expect(name, shape, FLOAT_DTYPES)
        self.name = name
        self.dtype = info.dtype
        self.raw = ckpt.raw(name)
        self.shape = shape

    def rows(self, idx: np.ndarray) -> np.ndarray:
        sel = self.raw[idx]
        return bf16_to_float32(sel) if self.dtype == "BF16" else sel.astype(np.float32)

    def block_into(self, start: int, stop: int, out: np.ndarray, *,
                   low_zeroed: bool = False) -> np.ndarray:
        """Rows start:stop widened to float32 into `out` ([stop - start, cols] float32).

        bf16 rows are written straight into the top half of each float32 word; low_zeroed
        says the bottom halves are already zero (a reused buffer), which saves a pass.
        """
        sel = self.raw[start:stop]
        if self.dtype == "BF16":
            halves = out.view(np.uint16).reshape(out.shape[0], out.shape[1], 2)
            if not low_zeroed:
                halves[..., 0] = 0
            # little-endian float32: the second uint16 of each word is the high half
            halves[..., 1] = sel
        else:
            np.copyto(out, sel, casting="unsafe")
        return out


def iter_layers(ckpt: Checkpoint, cfg: ModelConfig) -> Iterator[LayerWeights]:
    for i in range(cfg.num_hidden_layers):
        yield load_layer(ckpt, cfg, i)


def read_config(directory: str | Path) -> tuple[Checkpoint, ModelConfig]:
    ckpt = Checkpoint(directory)
    try:
        cfg = ModelConfig.from_dict(ckpt.config, str(ckpt.config_path))
        check_tensors_present(ckpt, cfg)
    except CheckpointError:
        ckpt.close()
        raise
    return ckpt, cfg
