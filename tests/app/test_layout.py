"""The application's shape: commands are thin and never import each other."""

from __future__ import annotations

import ast
from pathlib import Path

from lrpt.app.cli import COMMANDS

CLI = Path(__file__).parents[2] / "src" / "lrpt" / "app" / "cli"


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; ``from X import Y`` gives X and X.Y)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_no_command_imports_another() -> None:
    commands = {module for module, _ in COMMANDS.values()}
    assert len(commands) == len(COMMANDS) >= 9
    for module in sorted(commands):
        path = CLI / f"{module.rsplit('.', 1)[1]}.py"
        others = (_imports(path) & commands) - {module}
        assert not others, f"{module} imports {sorted(others)}"


def test_commands_are_short() -> None:
    """A command parses, calls the application's API and prints: none is long."""
    for module, _ in COMMANDS.values():
        path = CLI / f"{module.rsplit('.', 1)[1]}.py"
        assert len(path.read_text().splitlines()) <= 150, path.name
