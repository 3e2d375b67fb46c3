"""The safetensors format, read and written without torch or the `safetensors` package.

A safetensors file is an 8-byte little-endian header length, a JSON header naming each tensor's
dtype, shape and byte range, then the raw data. Files are memory-mapped and tensors are NumPy
views into the map, so nothing is copied until a tensor is converted; bf16 (which NumPy lacks)
is kept as its uint16 bit pattern and widened to float32 only where a float is needed.
"""

from __future__ import annotations

import contextlib
import json
import math
import mmap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..golden.checks import InputError
from ..golden.files import atomic_write


class CheckpointError(InputError):
    """A checkpoint file is missing, malformed or does not match its config; names the file."""


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


# NumPy dtype -> safetensors name for writing (BF16 data comes as uint16 and is named by the caller)
_NP_TO_ST = {dt: name for name, dt in SAFETENSORS_DTYPES.items() if name != "BF16"}


def bf16_from_float32(x: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bit patterns (uint16), rounding to nearest even as torch does."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    bias = ((u >> 16) & 1) + np.uint32(0x7FFF)
    return ((u + bias) >> 16).astype(np.uint16)


def write_safetensors(path: str | Path, tensors: Mapping[str, np.ndarray], *,
                      dtypes: Mapping[str, str] | None = None,
                      metadata: Mapping[str, str] | None = None) -> Path:
    """Write tensors in the safetensors format (readable by the `safetensors` package).

    dtypes overrides the stored dtype name per tensor; use "BF16" for uint16 arrays that hold
    bf16 bit patterns (NumPy has no bfloat16).
    """
    dtypes = dict(dtypes or {})
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    arrays = []
    offset = 0
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        st = dtypes.get(name) or _NP_TO_ST.get(arr.dtype.newbyteorder("="))
        if st is None:
            raise InputError(f"tensor {name!r}: dtype {arr.dtype} has no safetensors name")
        if st == "BF16" and arr.dtype != np.uint16:
            raise InputError(f"tensor {name!r}: BF16 data must be given as uint16 bit patterns")
        arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        header[name] = {"dtype": st, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
        arrays.append(arr)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)   # the reference writer pads so data starts 8-aligned
    path = Path(path)
    atomic_write(path, [len(text).to_bytes(8, "little"), text,
                         *(memoryview(a.reshape(-1)).cast("B") for a in arrays if a.size)])
    return path
