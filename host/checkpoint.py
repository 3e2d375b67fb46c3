"""A checkpoint folder: config.json beside one or more safetensors files, sharded ones listed in
`model.safetensors.index.json` (as transformers' save_pretrained writes them). Tensors are
looked up by name across the shards; each is checked to live in exactly one file.

What the tensors mean (which weights a layer holds, how BitLinears are loaded) is in
host/weights.py and host/arch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .safetensors import (
    FLOAT_DTYPES,
    CheckpointError,
    SafetensorsFile,
    TensorInfo,
    bf16_to_float32,
)

__all__ = ["INDEX_NAME", "Checkpoint", "CheckpointError", "SafetensorsFile", "TensorInfo",
           "bf16_to_float32", "read_json"]

INDEX_NAME = "model.safetensors.index.json"


def read_json(path: Path) -> Any:
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
        self.config: dict[str, Any] = read_json(cfg_path)
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
            index = read_json(index_path)
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


# Names that lived here before the weights moved to host/weights.py and the config to host/arch;
# imported lazily, as host/weights.py imports this module.
_MOVED = {"FloatMatrix", "LayerWeights", "TernaryLinear", "check_tensors_present",
          "iter_layers", "load_layer", "load_linear", "read_config", "ModelConfig"}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        from . import weights

        return getattr(weights, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
