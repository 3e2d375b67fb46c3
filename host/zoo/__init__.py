"""Trained models shipped inside the package, by name (e.g. ``tiny-adder``).

Each model is a folder beside this file holding a Hugging Face BitNet checkpoint (config.json,
model.safetensors, tokenizer.json) and a README.md / metadata.json saying how it was trained.
"""

from __future__ import annotations

from pathlib import Path

ZOO = Path(__file__).resolve().parent


def names() -> list[str]:
    """The names of the shipped models."""
    return sorted(p.name for p in ZOO.iterdir() if (p / "config.json").is_file())


def resolve(name: str | Path) -> Path | None:
    """The folder of the shipped model called name, or None.

    A path that exists (a user's own checkpoint folder) always wins over a shipped name, and
    anything with a path separator is a path, never a name.
    """
    text = str(name)
    if not text or "/" in text or "\\" in text or text in (".", "..") or Path(text).exists():
        return None
    folder = ZOO / text
    return folder if (folder / "config.json").is_file() else None
