"""The one atomic writer and the build root every layer uses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tritium.golden.files import atomic_write, atomic_write_json, build_root


def test_writes_are_readable_by_the_group(tmp_path: Path) -> None:
    """Build folders are shared: a file gets the umask's mode, not mkstemp's 0600."""
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "sub" / "r.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "sub" / "r.json").stat().st_mode & 0o777 == 0o644
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["r.json"]


def test_every_kind_of_data(tmp_path: Path) -> None:
    assert atomic_write(tmp_path / "a", b"\x00\x01").read_bytes() == b"\x00\x01"
    assert atomic_write(tmp_path / "b", "é").read_text(encoding="utf-8") == "é"
    assert atomic_write(tmp_path / "c", iter([b"ab", b"cd"])).read_bytes() == b"abcd"
    # a writer function gets a temporary path with the target's suffix (savefig needs it)
    seen = []

    def writer(tmp: Path) -> None:
        seen.append(tmp.suffix)
        tmp.write_text("x")

    assert atomic_write(tmp_path / "plot.png", writer).read_text() == "x"
    assert seen == [".png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c", "plot.png"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = atomic_write(tmp_path / "r.json", "old")

    def fails(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, fails)
    with pytest.raises(TypeError):
        atomic_write_json(target, {"x": object()})
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_build_root_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    monkeypatch.setenv("TRITIUM_BUILD", str(tmp_path / "b"))
    assert build_root() == tmp_path / "b"
    monkeypatch.delenv("TRITIUM_BUILD")
    monkeypatch.chdir(tmp_path)
    assert build_root() == tmp_path / "build"
