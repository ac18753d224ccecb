"""The tested guides' helpers: a guide's example code block, and that code loaded as a module."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest


def python_block(guide: Path) -> str:
    """The guide's example: its first ``python`` code block."""
    match = re.search(r"```python\n(.*?)```", guide.read_text(), re.S)
    assert match, f"{guide} has no python code block"
    return match.group(1)


def load_module(path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The file ``path`` imported as module ``name`` (in ``sys.modules`` until the test ends)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def load_example(
    guide: Path, tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> ModuleType:
    """The guide's example written as ``<tmp_path>/<name>.py``, exactly as the guide shows it,
    and imported (as ``lrpt_example_<name>``)."""
    path = tmp_path / f"{name}.py"
    path.write_text(python_block(guide))
    return load_module(path, f"lrpt_example_{name}", monkeypatch)


def forget_after_test(registry: dict, key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the test's end remove ``key`` from ``registry``, where the test registers it."""
    assert key not in registry
    monkeypatch.setitem(registry, key, None)  # records "absent", so teardown deletes the key …
    del registry[key]  # … that the test's register() adds
