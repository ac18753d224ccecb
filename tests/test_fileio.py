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


def old_target(tmp_path: Path) -> Path:
    """``<tmp>/out`` holding one file, ``old``."""
    target = tmp_path / "out"
    target.mkdir()
    (target / "old").write_text("0")
    return target


@pytest.mark.parametrize("existing", [False, True], ids=["new", "replace"])
def test_atomic_dir_puts_the_new_content_in_place(tmp_path: Path, existing: bool) -> None:
    """The target appears (or its old content is swapped out) only when the block ends."""
    target = old_target(tmp_path) if existing else tmp_path / "out"
    with atomic_dir(target, replace=existing) as tmp:
        (tmp / "new").write_text("1")
        if existing:
            assert entries(target) == {"old"}
        else:
            assert not target.exists()
    assert entries(target) == {"new"}
    assert entries(tmp_path) == {"out"}


def test_atomic_dir_without_replace_leaves_a_full_target(tmp_path: Path) -> None:
    target = old_target(tmp_path)
    with pytest.raises(OSError), atomic_dir(target) as tmp:
        (tmp / "new").write_text("1")
    assert entries(target) == {"old"}
    assert entries(tmp_path) == {"out"}


def test_atomic_dir_error_in_the_block_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"), atomic_dir(tmp_path / "out") as tmp:
        (tmp / "x").write_text("1")
        raise RuntimeError("boom")
    assert entries(tmp_path) == set()
