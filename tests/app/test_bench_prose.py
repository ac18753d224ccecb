"""Prose templates filled from a suite's results: every field kind pinned against the committed
`paper` suite (complete, so its numbers no longer move), a run not finished reads ``(pending)``,
one seed of three says so, and a field naming something the suite lacks is an error with its
line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from results_prose import render  # scripts/ (on the tests' path: pyproject.toml)

from lrpt.app.bench.suite import load_suite

ROOT = Path(__file__).parents[2]
SUITES = ROOT / "bench" / "suites"
RESULTS = ROOT / "bench" / "results"


def paper(template: str, root: Path = RESULTS / "paper") -> str:
    return render(template, load_suite(SUITES / "paper.toml"), root, SUITES)


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("{{mr/ulpt-n100-r2}}", "0.782 ± 0.040"),
        ("{{mr/ulpt-n100-r2 mean}}", "0.782"),
        ("{{mr/ulpt-n100-r2 seeds}}", "0.737, 0.811 and 0.798 on seeds 0, 1 and 2"),
        ("{{mr/ulpt-n100-r2 rates}}", "lr 0.1"),
        ("{{mr/ulpt-n100-r2 params}}", "1,352"),
        ("{{mr/ulpt-n100-r2 zero_shot}}", "0.732"),
        ("{{mr/ulpt-n100-r2 vs pt-n100}}", "behind on every seed (3)"),
        ("{{mr/lopt1-n20-r5 vs pt-n100}}", "ahead on seed 0, behind on seeds 1 and 2"),
        ("{{mr/lopt1-n20-r5 ratio pt-n100}}", "0.994"),
        ("{{mr/ulpt-n100-r2 / pt-n100}}", "**does not hold** (0.950, need ≥ 0.97)"),
        ("{{mr/ulpt-n100-r2 / pt-n100 trainable_params}}", "**holds** (0.023, need ≤ 0.03)"),
        ("{{bbc/ulpt-n100-r2 / pt-n100}}", "**holds** (0.978, need ≥ 0.97)"),
        ("{{mr/ulpt-n100-r2\n  / pt-n100}}", "**does not hold** (0.950, need ≥ 0.97)"),
    ],
)
def test_fields_pinned_on_the_paper_suite(field: str, text: str) -> None:
    assert paper(f"a {field} b") == f"a {text} b"


def test_another_suites_fields_and_a_grid() -> None:
    fair = load_suite(SUITES / "fair.toml")
    out = render("{{paper:mr/ulpt-n100-r2 rates}} | {{mr/pt-n100 grid}}", fair,
                 RESULTS / "fair", SUITES)  # fmt: skip
    assert out == "lr 0.1 | lr 0.1: 0.870; lr 0.03: 0.860; lr 0.01: 0.885 (chosen)"


def test_unfinished_runs_read_pending_and_missing_seeds_are_named(tmp_path: Path) -> None:
    root = tmp_path / "paper"
    root.mkdir()
    rows = json.loads((RESULTS / "paper" / "summary.json").read_text())
    kept = []
    for row in rows:
        if (row["task"], row["config"]) == ("mr", "ulpt-n100-r2"):
            row |= {"n_seeds": 1, "seeds": [0], "values": [0.737], "mean": 0.737, "std": None}
        if (row["task"], row["config"]) != ("mr", "dpt-n100-b10"):
            kept.append(row)
    (root / "summary.json").write_text(json.dumps(kept))
    assert paper("{{mr/ulpt-n100-r2}}", root) == "0.737 (1 of 3 seeds)"
    assert paper("{{mr/ulpt-n100-r2 / pt-n100}}", root) == (
        "**does not hold** (0.907, need ≥ 0.97; 1 of 3 seeds)"
    )
    for field in ("{{mr/dpt-n100-b10}}", "{{mr/dpt-n100-b10 / pt-n100}}",
                  "{{mr/dpt-n100-b10 vs pt-n100}}", "{{mr/pt-n100 rates}}"):  # fmt: skip
        assert paper(field, root) == "(pending)", field
    shutil.rmtree(root)
    assert paper("{{mr/pt-n100}} {{mr/pt-n100 params}}", root) == "(pending) (pending)"


@pytest.mark.parametrize(
    ("field", "error"),
    [
        ("{{mr/nope}}", "line 2: {{mr/nope}}: suite 'paper' has no configuration 'nope'"),
        ("{{sst2/pt-n100}}", "does not run 'pt-n100' on task 'sst2'"),
        ("{{mr/pt-n100 median}}", "expected TASK/CONFIG [mean | seeds | rates | grid"),
        ("{{mr/pt-n100 / ulpt-n100-r2}}", "has no claim pt-n100 / ulpt-n100-r2 on mean"),
        ("{{mr/pt-n100 grid}}", "has no grid on that task"),
        ("{{pt-n100}}", "expected TASK/CONFIG first"),
        ("{{nosuch:mr/pt-n100}}", "nosuch.toml does not exist"),
    ],
)
def test_a_field_naming_what_the_suite_lacks_is_an_error(field: str, error: str) -> None:
    with pytest.raises(ValueError, match=r"^line 2: ") as caught:
        paper(f"first line\nsecond {field}")
    assert error in str(caught.value)


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("{{mr/ulpt-n100-r2 seed0}}", "0.737"),
        ("{{mr/ulpt-n100-r2 ratio pt-n100 seed1}}", "0.979"),
        ("{{mr/ulpt-n100-r2 seed0 curve}}", "0.695, 0.755 and 0.770 at steps 50, 100 and 150"),
        ("{{mr/ulpt-n100-r2 seed0 loss}}", "0.60 → 0.50"),
        ("{{mr/ept-s61-r27 seed0 loss}}", "0.74 → 0.69"),
        ("{{quick:mr/ulpt-n100-r2}}", "0.738"),
    ],
)
def test_one_seeds_fields_pinned_on_the_paper_suite(field: str, text: str) -> None:
    assert paper(field) == text


@pytest.mark.parametrize(
    ("field", "error"),
    [
        ("{{mr/ulpt-n100-r2 seed5}}", "does not run 'ulpt-n100-r2' with seed 5"),
        ("{{mr/ulpt-n100-r2 seed0 grid}}", "expected TASK/CONFIG seedN"),
        ("{{mr/ulpt-n100-r2 seed0 seed1}}", "expected TASK/CONFIG seedN"),
        ("{{mr/ulpt-n100-r2 ratio nope seed0}}", "has no configuration 'nope'"),
    ],
)
def test_bad_seed_fields_name_the_field(field: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        paper(f"x\n{field}")


def test_a_seed_not_finished_reads_pending(tmp_path: Path) -> None:
    root = tmp_path / "paper"
    shutil.copytree(RESULTS / "paper" / "mr" / "pt-n100", root / "mr" / "pt-n100")
    shutil.rmtree(root / "mr" / "pt-n100" / "seed1")
    assert paper("{{mr/pt-n100 seed1 curve}}", root) == "(pending)"
    assert paper("{{mr/pt-n100 seed0 loss}}", root) == "0.46 → 0.36"
