"""The application's shape: commands are thin and never import each other; the run spec and the
data layer sit below the training loop; a built-in task is branched on only in its own module."""

from __future__ import annotations

import ast
from pathlib import Path

from lrpt.app.cli import COMMANDS
from lrpt.app.data.tasks import TASKS

SRC = Path(__file__).parents[2] / "src" / "lrpt"
APP = SRC / "app"
CLI = APP / "cli"


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


def test_the_run_spec_and_the_data_layer_import_nothing_above_them() -> None:
    """Building a spec or a task loads no training, serving, benchmark or command code."""
    above = (
        "lrpt.app.training",
        "lrpt.app.runs",
        "lrpt.app.serve",
        "lrpt.app.bench",
        "lrpt.app.cli",
    )
    below = [APP / "spec.py", APP / "train_config.py", APP / "fields.py"]
    below += sorted((APP / "data").rglob("*.py"))
    assert len(below) == 15
    for path in below:
        up = sorted(name for name in _imports(path) if name.startswith(above))
        assert not up, f"{path.relative_to(SRC)} imports {up}"


def _compared_strings(path: Path) -> set[str]:
    """The string constants ``path`` compares with (``==``, ``!=``, ``in``) or matches on."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            found |= {o.value for o in operands if isinstance(o, ast.Constant)}
        elif isinstance(node, ast.MatchValue) and isinstance(node.value, ast.Constant):
            found.add(node.value.value)
    return {value for value in found if isinstance(value, str)}


def test_no_task_specific_branch_outside_the_tasks_module() -> None:
    """As methods are: a built-in task's name is tested for only in its own module."""
    assert list(TASKS) == ["mr", "tweets", "bbc"]
    for path in sorted(SRC.rglob("*.py")):
        own = path.parent == APP / "data" / "tasks" and path.stem in TASKS
        branches = _compared_strings(path) & set(TASKS) - ({path.stem} if own else set())
        assert not branches, f"{path.relative_to(SRC)} branches on task(s) {sorted(branches)}"


def test_only_the_entry_point_imports_the_commands() -> None:
    """``lrpt.app.cli`` sits on the top floor: nothing but ``python -m lrpt`` imports it."""
    for path in sorted(SRC.rglob("*.py")):
        if path.is_relative_to(CLI) or path == SRC / "__main__.py":
            continue
        up = sorted(name for name in _imports(path) if name.startswith("lrpt.app.cli"))
        assert not up, f"{path.relative_to(SRC)} imports {up}"
    assert "lrpt.app.cli" in _imports(SRC / "__main__.py")


def test_no_application_module_is_long() -> None:
    """One job a module: none of the application's modules exceeds 500 lines."""
    long = {
        str(path.relative_to(SRC)): n
        for path in sorted(APP.rglob("*.py"))
        if (n := len(path.read_text().splitlines())) > 500
    }
    assert not long, long
