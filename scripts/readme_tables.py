"""Copy each suite's results table from ``bench/results/SUITE/summary.md`` into the README,
and render each suite's prose template ``bench/prose/SUITE.md`` (:mod:`lrpt.app.bench.prose`).

The README's ``<!-- SUITE-table -->`` blocks hold the table rows of that suite's summary verbatim,
with its run count and machine line; its ``<!-- SUITE-prose -->`` blocks hold the rendered
template, every number filled from the committed results. ``tests/test_readme.py`` checks both,
so the README cannot show numbers the committed results do not. Run from the repository root
after a suite run: ``python scripts/readme_tables.py``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import results_prose as prose

from lrpt.app.bench.suite import load_suite
from lrpt.fileio import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
SUITES = ("quick", "paper", "fair")
GRIDS = "Learning-rate selection:"  # the grid table, which stays in summary.md alone


def summary_table(suite: str, root: Path = ROOT) -> str | None:
    """The summary's lines from its run count on (run count, machine, table, claims, the
    comparison with another suite), up to its learning-rate grids; None if absent."""
    path = root / "bench" / "results" / suite / "summary.md"
    if not path.exists():
        return None
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next((i for i, line in enumerate(lines) if " runs finished " in line), None)
    if start is None:
        raise ValueError(f"{path}: no 'N of M runs finished' line; rerun lrpt bench --summarize")
    end = next((i for i, line in enumerate(lines) if line.startswith(GRIDS)), len(lines))
    return "\n".join(lines[start:end]).strip()


def suite_prose(suite: str, root: Path = ROOT) -> str | None:
    """``bench/prose/SUITE.md`` with its fields filled from the suite's committed results; None
    if the suite has no prose template."""
    template = root / "bench" / "prose" / f"{suite}.md"
    if not template.exists():
        return None
    suites = root / "bench" / "suites"
    loaded = load_suite(suites / f"{suite}.toml")
    results = root / "bench" / "results" / suite
    return prose.render(template.read_text(encoding="utf-8"), loaded, results, suites).strip()


def _fill(text: str, name: str, content: str | None) -> str:
    block = re.compile(rf"(<!-- {name} -->\n)(.*?)(<!-- /{name} -->)", re.S)
    if content is None or not block.search(text):
        print(f"{name}: nothing to fill or no README block, left as it is", file=sys.stderr)
        return text
    return block.sub(lambda m: f"{m.group(1)}{content}\n{m.group(3)}", text)


def main() -> int:
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    for suite in SUITES:
        text = _fill(text, f"{suite}-table", summary_table(suite))
        if (ROOT / "bench" / "prose" / f"{suite}.md").exists():
            text = _fill(text, f"{suite}-prose", suite_prose(suite))
    atomic_write_text(readme, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
