"""The README tells the truth: its method table is the registry's, its commands exist."""

from __future__ import annotations

import re
from pathlib import Path

from lrpt.app.cmd_methods import table

README = (Path(__file__).parents[1] / "README.md").read_text()


def _block(name: str) -> str:
    match = re.search(rf"<!-- {name} -->\n(.*?)<!-- /{name} -->", README, re.S)
    assert match, f"README has no {name} block"
    return match.group(1).strip()


def test_method_table_is_generated_from_the_registry() -> None:
    assert _block("methods-table") == table()


def test_two_commands() -> None:
    main, tests = _block("main-command"), _block("test-command")
    assert "lrpt train" in main and "pip install" in main
    assert "pytest" in tests and "pip install" in tests
