"""Where tritium writes, and how: the build root and all-or-nothing file writes.

At the bottom of the package graph so every layer (library writers and the CLI) shares one
definition: a reader never sees half a file, and an interrupted or failed write leaves no
temporary behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

# What atomic_write takes: bytes, text (UTF-8), chunks of bytes (a large file streamed without
# joining it in memory), or a function that writes the temporary path itself (savefig,
# torch.save).
Data = bytes | str | Iterable[bytes] | Callable[[Path], object]

BUILD_ENV = "TRITIUM_BUILD"


def build_root() -> Path:
    """The folder generated files go under: $TRITIUM_BUILD, else ./build."""
    return Path(os.environ.get(BUILD_ENV) or "build").resolve()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike[str], data: Data) -> Path:
    """Write data to path through a temporary file in the same folder, fsync it, then rename.

    The parent folder is created if missing. The file gets the permissions open() would give
    (mkstemp's are private, which would break a shared build folder). The temporary keeps
    path's suffix, so a writer that picks its format from the name (savefig) picks the same."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                suffix=f".tmp{path.suffix}")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(data, str):
                f.write(data.encode("utf-8"))
            elif isinstance(data, bytes | bytearray | memoryview):
                f.write(data)
            elif not callable(data):
                for chunk in data:
                    f.write(chunk)
        if callable(data):
            data(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    return atomic_write(path, data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write(path, text)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """obj as indented JSON with a trailing newline. Serialises before touching the disk, so
    an object JSON cannot hold raises without creating anything."""
    return atomic_write_text(path, json.dumps(obj, indent=2) + "\n")
