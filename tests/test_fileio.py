"""Atomic writes: the new content or the old one, never a partial file or a leftover temporary."""

from __future__ import annotations

from pathlib import Path

import pytest

from lrpt.fileio import atomic_dir, atomic_write, atomic_write_bytes, atomic_write_text


def entries(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


def test_atomic_write_replaces_and_creates_parents(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b.txt"
    atomic_write_text(path, "one")
    assert atomic_write_bytes(path, b"two") == path
    assert path.read_bytes() == b"two"
    assert entries(path.parent) == {"b.txt"}


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "state.bin"
    path.write_bytes(b"old")

    def broken(tmp: Path) -> None:
        tmp.write_bytes(b"par")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, broken)
    assert path.read_bytes() == b"old"
    assert entries(tmp_path) == {"state.bin"}


def test_atomic_dir_renames_into_place(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        (tmp / "x").write_text("1")
        assert not target.exists()
    assert entries(target) == {"x"}
    assert entries(tmp_path) == {"out"}


def test_atomic_dir_replace_swaps_and_removes_the_old_one(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "old").write_text("0")
    with atomic_dir(target, replace=True) as tmp:
        (tmp / "new").write_text("1")
    assert entries(target) == {"new"}
    assert entries(tmp_path) == {"out"}


def test_atomic_dir_without_replace_leaves_a_full_target(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "old").write_text("0")
    with pytest.raises(OSError), atomic_dir(target) as tmp:
        (tmp / "new").write_text("1")
    assert entries(target) == {"old"}
    assert entries(tmp_path) == {"out"}


def test_atomic_dir_error_in_the_block_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"), atomic_dir(tmp_path / "out") as tmp:
        (tmp / "x").write_text("1")
        raise RuntimeError("boom")
    assert entries(tmp_path) == set()
