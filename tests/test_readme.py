"""The README tells the truth: its method table is the registry's, its commands exist."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from lrpt.app.cli.methods import table

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()


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


def test_python_examples_run(tmp_path, monkeypatch) -> None:
    """The README's Python blocks run, in order, as one script."""
    monkeypatch.chdir(tmp_path)
    code = "\n".join(re.findall(r"```python\n(.*?)```", README, re.S))
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["pm"].num_trainable() == {"method": 328, "head": 0}
    assert namespace["new"].shape[0] == 2


def test_suite_tables_are_the_committed_summaries() -> None:
    """The README's results tables are the suites' summary.md tables, verbatim."""
    script = ROOT / "scripts" / "readme_tables.py"
    spec = importlib.util.spec_from_file_location("readme_tables", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for suite in module.SUITES:
        table = module.summary_table(suite)
        assert table is not None, f"bench/results/{suite}/summary.md is not committed"
        assert _block(f"{suite}-table") == table, f"{suite}: run python {script.name}"


def test_suite_prose_is_rendered_from_the_committed_results() -> None:
    """Each ``<!-- SUITE-prose -->`` block is its template with every field filled now."""
    script = ROOT / "scripts" / "readme_tables.py"
    spec = importlib.util.spec_from_file_location("readme_tables", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    templates = sorted((ROOT / "bench" / "prose").glob("*.md"))
    assert templates, "bench/prose/ has no templates"
    for template in templates:
        assert _block(f"{template.stem}-prose") == module.suite_prose(template.stem), (
            f"{template.stem}: run python {script.name}"
        )
