"""The README and docs/ tell the truth: the methods table is the registry's, the commands exist,
the Python examples run, every generated block is what the committed results give now, the
quick start's figure is the committed run of the README's own command at today's defaults, the
default learning rates are the fair suite's grid choices, and every relative link resolves."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path
from types import ModuleType

import pytest

from lrpt.app.cli.methods import table
from lrpt.methods import METHODS, method_class

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_LINES = 250


def _text(page: str) -> str:
    return (ROOT / page).read_text(encoding="utf-8")


def _block(name: str, page: str = "README.md") -> str:
    match = re.search(rf"<!-- {name} -->\n(.*?)<!-- /{name} -->", _text(page), re.S)
    assert match, f"{page} has no {name} block"
    return match.group(1).strip()


@pytest.fixture(scope="module")
def tables() -> ModuleType:
    """``scripts/readme_tables.py``, which fills every generated block."""
    script = ROOT / "scripts" / "readme_tables.py"
    spec = importlib.util.spec_from_file_location("readme_tables", script)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_method_table_is_generated_from_the_registry() -> None:
    assert _block("methods-table") == table()


def test_two_commands() -> None:
    main, tests = _block("main-command"), _block("test-command")
    assert "lrpt train" in main and "pip install" in main
    assert "pytest" in tests and "pip install" in tests


def test_readme_is_a_landing_page() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_LINES, f"README.md has {lines} lines; move detail to docs/"


@pytest.mark.parametrize(("page", "bank_rows"), [("README.md", None), ("docs/training.md", 2)])
def test_python_examples_run(page: str, bank_rows: int | None, tmp_path, monkeypatch) -> None:
    """A page's Python blocks run, in order, as one script."""
    monkeypatch.chdir(tmp_path)
    code = "\n".join(re.findall(r"```python\n(.*?)```", _text(page), re.S))
    namespace: dict = {}
    exec(compile(code, page, "exec"), namespace)
    assert namespace["pm"].num_trainable() == {"method": 328, "head": 0}
    if bank_rows is not None:
        assert namespace["new"].shape[0] == bank_rows


def test_generated_blocks_are_current(tables: ModuleType) -> None:
    """Every block ``scripts/readme_tables.py`` fills holds what it gives from the committed
    results now: suite tables and prose, headline figures, quick start, default rates."""
    pages = tables.pages()
    assert set(pages["docs/results.md"]) == {
        "quick-table", "paper-table", "fair-table", "paper-prose", "fair-prose"
    }  # fmt: skip
    for page, blocks in pages.items():
        for name, content in blocks.items():
            assert content is not None, f"{page} {name}: its results are not committed"
            assert _block(name, page) == content.strip(), f"{page} {name}: run {tables.__file__}"


def test_quick_start_figure_is_the_committed_run_of_the_readme_command(
    tables: ModuleType,
) -> None:
    """bench/results/quickstart/ is the README's ``lrpt train`` command, run as written, at the
    learning rate ULPT declares today; the README states its test and zero-shot accuracy."""
    results, record = tables.quickstart_record()
    main = _block("main-command").strip("`\n")
    command = main[main.index("lrpt train") :]
    assert command == record["command"]
    argv = shlex.split(command)
    flags = dict(zip(argv[2::2], argv[3::2], strict=True))
    assert flags["--method"] == results["method"] == "ulpt"
    assert flags["--model"] == results["model"]["name"] == "smollm2-135m"
    assert flags["--task"] == results["task"]["name"] == "mr"
    assert int(flags["--rank"]) == results["config"]["rank"]
    assert int(flags["--num-tokens"]) == results["config"]["num_tokens"]
    assert int(flags["--steps"]) == results["steps"] == results["training"]["steps"]
    assert results["training"]["lr"] == method_class("ulpt").training_defaults.lr
    assert record["machine"]["cpu"] and record["wall_seconds"] > 0
    sentence = _block("quickstart-result")
    for value in (results["test"]["accuracy"], results["zero_shot_test"]["accuracy"]):
        assert f"**{100 * value:.1f} %**" in sentence


def test_default_learning_rates_are_the_fair_grid_choices(tables: ModuleType) -> None:
    """Each built-in method declares the rate(s) the fair suite's grids chose (the rule in
    docs/training.md: best mean validation over MR and BBC at its first configuration)."""
    choices = tables.grid_choices()
    builtin = {k for k, cls in METHODS.items() if cls.__module__.startswith("lrpt.methods.")}
    assert set(choices) == builtin
    for method, choice in choices.items():
        assert tables.declared_rates(method) == choice["chosen"], method
    assert choices["ulpt"]["chosen"] == {"lr": 0.03}  # 0.1, the earlier default, scored lowest
    assert choices["dept"]["chosen"] == {"lr": 0.01, "lowrank_lr": 0.0005}


def _links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return re.findall(r"\]\(([^)\s]+)\)", text)


def test_every_relative_link_points_at_a_file() -> None:
    missing = []
    for page in PAGES:
        for link in _links(page):
            if re.match(r"[a-z]+:", link) or link.startswith("#"):
                continue
            target = (page.parent / link.split("#")[0]).resolve()
            target.relative_to(ROOT.resolve())  # ValueError: a link outside the repository
            if not target.exists():
                missing.append(f"{page.relative_to(ROOT)}: {link}")
    assert not missing, missing
    assert sum(len(_links(page)) for page in PAGES) > 40  # the pages do link
