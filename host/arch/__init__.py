"""Model architectures as table entries, keyed by config.json's model_type and the BitLinear
flavour its quantization_config names (linear_class).

Each architecture is one module (bitnet.py, llama_bitnet.py) holding its config defaults, its
tensor names and its forward pass (the names Architecture.of reads); adding one means a new
module and its name in ARCHITECTURES.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...golden.models import ModelShape
from ..safetensors import CheckpointError
from . import bitnet, llama_bitnet
from .config import (
    LINEARS,
    PROJECTIONS,
    Architecture,
    LayerRun,
    ModelConfig,
    QuantSettings,
    build_config,
    read_quantization,
)

__all__ = ["LINEARS", "PROJECTIONS", "Architecture", "LayerRun", "ModelConfig",
           "QuantSettings", "REGISTRY", "known_models", "lookup", "read_config_dict",
           "read_config_json", "resolve_model", "supported"]

ARCHITECTURES: tuple[Architecture, ...] = tuple(map(Architecture.of, (bitnet, llama_bitnet)))
REGISTRY: dict[tuple[str, str], Architecture] = {
    (a.model_type, lc): a for a in ARCHITECTURES for lc in a.linear_classes}


def supported() -> str:
    """The registered architectures, for error messages."""
    return "; ".join(f"{a.model_type} ({a.description})" for a in ARCHITECTURES)


def lookup(model_type: Any, linear_class: str) -> Architecture:
    arch = REGISTRY.get((model_type, linear_class))
    if arch is None:
        raise CheckpointError(f"no architecture for model_type {model_type!r} with linear_class "
                              f"{linear_class!r}; tritium runs: {supported()}")
    return arch


def read_config_dict(raw: Any, source: str = "config.json") -> ModelConfig:
    """The runtime config of config.json's object, through its architecture's table entry."""
    if not isinstance(raw, dict):
        raise CheckpointError(f"{source}: must hold a JSON object")
    mt = raw.get("model_type")
    archs = {a.model_type: a for a in ARCHITECTURES}
    if mt not in archs:
        raise CheckpointError(f"{source}: unknown model_type {mt!r}; tritium runs: "
                              f"{supported()}")
    quant = read_quantization(raw.get("quantization_config"), source)
    if quant is None and archs[mt].needs_quantization_config:
        raise CheckpointError(f"{source}: model_type {mt!r} without a quantization_config "
                              "(quant_method \"bitnet\") is a float model, not a ternary one; "
                              f"tritium runs: {supported()}")
    arch = lookup(mt, quant.linear_class if quant else "autobitlinear")
    return build_config(arch, raw, quant, source)


# ------------------------------------------------------------------------------------------
# shapes for the estimator: named presets and checkpoint folders
# ------------------------------------------------------------------------------------------

def _presets() -> dict[str, ModelShape]:
    out = {}
    for arch in ARCHITECTURES:
        for name, (raw, source) in arch.presets.items():
            out[name] = read_config_dict({"model_type": arch.model_type, **raw}, source
                                         ).shape(name, source)
    return out


MODELS: dict[str, ModelShape] = _presets()


def known_models() -> list[str]:
    return sorted(MODELS)


def read_config_json(path: str | Path) -> ModelShape:
    """The shape of the model a checkpoint folder (or a config.json file) describes."""
    from ..checkpoint import read_json

    p = Path(path)
    cfg_path = p / "config.json" if p.is_dir() else p
    name = p.name if p.is_dir() else p.parent.name or p.stem
    return read_config_dict(read_json(cfg_path), str(cfg_path)).shape(name, str(cfg_path))


def resolve_model(name_or_dir: str | Path) -> ModelShape:
    """A named model (case-insensitive; a Hugging Face "owner/" prefix is ignored), a model
    shipped with tritium (host/zoo, e.g. "tiny-adder"), or the config.json of a checkpoint
    folder."""
    from .. import zoo

    text = str(name_or_dir)
    p = zoo.resolve(text) or Path(text)
    if p.is_dir() or (p.is_file() and p.suffix == ".json"):
        return read_config_json(p)
    lower = {k.lower(): v for k, v in MODELS.items()}
    key = text.lower()
    for cand in (key, key.rsplit("/", 1)[-1]):
        if cand in lower:
            return lower[cand]
    raise CheckpointError(f"unknown model {text!r}: known models are "
                          f"{', '.join(known_models())}, shipped models "
                          f"{', '.join(zoo.names())}; or give a checkpoint folder holding a "
                          "config.json")


def config_json(model_type: str, **keys: Any) -> dict[str, Any]:
    """A config.json object for model_type: its architecture's defaults overridden by keys
    (what the synthetic-checkpoint writer saves)."""
    archs = {a.model_type: a for a in ARCHITECTURES}
    if model_type not in archs:
        raise CheckpointError(f"unknown model_type {model_type!r}; tritium runs: {supported()}")
    return {"model_type": model_type, **archs[model_type].defaults, **keys}
