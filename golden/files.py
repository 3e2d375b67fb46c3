"""Where tritium writes, and how: the build root and all-or-nothing file writes.

At the bottom of the package graph so every layer (library writers and the CLI) shares one
definition: a reader never sees half a file, and an interrupted or failed write leaves no
temporary behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

BUILD_ENV = "TRITIUM_BUILD"


def build_root() -> Path:
    """The folder generated files go under: $TRITIUM_BUILD, else ./build."""
    return Path(os.environ.get(BUILD_ENV) or "build").resolve()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write data to path through a temporary file in the same folder, fsync it, then rename.

    The parent folder is created if missing. The file gets the permissions open() would give
    (mkstemp's are private, which would break a shared build folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """obj as indented JSON with a trailing newline. Serialises before touching the disk, so
    an object JSON cannot hold raises without creating anything."""
    return atomic_write_text(path, json.dumps(obj, indent=2) + "\n")
