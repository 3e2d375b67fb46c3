"""The weights a ternary decoder loads from a checkpoint folder, as the runtime wants them.

Every BitLinear weight is turned into int8 ternary [K, N] (= [in, out], the layout the
accelerator's weight-stationary array and the GEMM kernels want) and one float scale, from
either the packed offline format (uint8 [ceil(out/4), in] + `weight_scale`) or float master
weights, which are quantised on load exactly as transformers' `WeightQuant` does. Which tensors
a layer holds (norms, biases, norms inside BitLinears) comes from its architecture (host/arch).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..golden.packing import unpack_hf
from ..golden.quant import quantize_weights
from .arch import ModelConfig
from .checkpoint import Checkpoint
from .safetensors import FLOAT_DTYPES, CheckpointError, bf16_to_float32

__all__ = ["FloatMatrix", "LayerWeights", "ModelConfig", "TernaryLinear",
           "check_tensors_present", "iter_layers", "load_layer", "load_linear", "read_config"]


@dataclass
class TernaryLinear:
    """A BitLinear as the accelerator sees it: int8 ternary w [K, N] = [in, out] and its scale.

    y = dequantize(a_int8 @ w, act_scale, scale); with `divide` (linear_class "bitlinear",
    packed) the checkpoint stores the inverse scale. bias [out] and norm [in] (the RMSNorm
    before quantisation) are float32 or None.
    """

    name: str
    w: np.ndarray
    scale: float
    divide: bool = False
    bias: np.ndarray | None = None
    norm: np.ndarray | None = None


@dataclass
class LayerWeights:
    index: int
    norms: dict[str, np.ndarray]               # the architecture's layer_norms -> float32
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
        divide = cfg.divide
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
    norms = {n: ckpt.float32(pre + n + ".weight", (w,)).copy()
             for n, w in cfg.layer_norms().items()}
    layer = LayerWeights(i, norms)
    for name, (out_f, in_f) in cfg.linear_shapes().items():
        lin = load_linear(ckpt, cfg, pre + name, out_f, in_f)
        if cfg.has_bias(name):
            lin.bias = ckpt.float32(pre + name + ".bias", (out_f,)).copy()
        if cfg.use_rms_norm:
            lin.norm = ckpt.float32(pre + name + ".rms_norm.weight", (in_f,)).copy()
        layer.linears[name] = lin
    return layer


_LAYER_INDEX = re.compile(r"model\.layers\.(\d+)\.")


def check_tensors_present(ckpt: Checkpoint, cfg: ModelConfig) -> None:
    """Name every missing tensor up front, before any work is done.

    The layer count is checked against the layers the files hold before any name is built, so
    an absurd num_hidden_layers fails at once instead of listing a billion names.
    """
    held = {int(m.group(1)) for n in ckpt.names() if (m := _LAYER_INDEX.match(n))}
    n_layers = cfg.num_hidden_layers
    if n_layers > len(held):
        first = min(set(range(len(held) + 1)) - held)
        raise CheckpointError(
            f"{ckpt.config_path} says num_hidden_layers={n_layers} but the checkpoint {ckpt.dir} "
            f"holds tensors of {len(held)} layer(s); 'model.layers.{first}.*' is missing")
    want = ["model.embed_tokens.weight", "model.norm.weight"]
    if not cfg.tie_word_embeddings:
        want.append("lm_head.weight")
    for i in range(n_layers):
        want += list(cfg.layer_floats(i))
        want += [f"model.layers.{i}.{n}.weight" for n in cfg.linear_shapes()]
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
