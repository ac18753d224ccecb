"""Copy each suite's results table from ``bench/results/SUITE/summary.md`` into the README.

The README's ``<!-- SUITE-table -->`` blocks hold the table rows of that suite's summary verbatim,
with its run count and machine line; ``tests/test_readme.py`` checks they are equal, so the
README cannot show numbers the committed results do not. Run from the repository root after a
suite run: ``python scripts/readme_tables.py``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

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


def main() -> int:
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    for suite in SUITES:
        table = summary_table(suite)
        block = re.compile(rf"(<!-- {suite}-table -->\n)(.*?)(<!-- /{suite}-table -->)", re.S)
        if table is None or not block.search(text):
            print(f"{suite}: no summary or no README block, left as it is", file=sys.stderr)
            continue
        text = block.sub(lambda m, t=table: f"{m.group(1)}{t}\n{m.group(3)}", text)
    atomic_write_text(readme, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
