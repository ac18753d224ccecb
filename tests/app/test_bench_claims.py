"""Suite claims: parsing, evaluation against summary rows, the markdown table."""

from __future__ import annotations

from pathlib import Path

import pytest

from lrpt.app.bench.suite import load_suite
from lrpt.app.bench.suite.claims import Claim, evaluate, markdown, parse_claims, ratio_text

CONFIGS = {"ulpt", "pt", "pt-n3"}


def row(task: str, config: str, values: list, *, seeds: list | None = None, **extra) -> dict:
    seeds = list(range(len(values))) if seeds is None else seeds
    return {"task": task, "config": config, "seeds": seeds, "values": values,
            "n_seeds": len(seeds), "trainable_params": 1, "sec_per_step": 1.0,
            "peak_rss_mb": None} | extra  # fmt: skip


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"config": "ulpt", "baseline": "pt", "at_least": 1}, "text must be a non-empty string"),
        ({"text": "t", "config": "nope", "baseline": "pt", "at_least": 1}, "config 'nope' is not"),
        ({"text": "t", "config": "ulpt", "baseline": "pt"}, "exactly one of at_least, at_most"),
        ({"text": "t", "config": "ulpt", "baseline": "pt", "at_least": 1, "at_most": 2},
         "exactly one of"),
        ({"text": "t", "config": "ulpt", "baseline": "pt", "at_most": 0}, "at_most must be"),
        ({"text": "t", "config": "ulpt", "baseline": "pt", "at_most": True}, "at_most must be"),
        ({"text": "t", "config": "ulpt", "baseline": "pt", "measure": "acc", "at_most": 1},
         "measure must be one of mean, sec_per_step"),
        ({"text": "t", "config": "ulpt", "baseline": "pt", "at_most": 1, "bound": 2},
         "unknown key\\(s\\) bound"),
    ],
)  # fmt: skip
def test_parse_errors(entry: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_claims("suite 's'", [entry], CONFIGS)


def test_evaluate_ratios_verdicts_and_seeds() -> None:
    claims = [
        Claim("keeps 97 %", "ulpt", "pt", at_least=0.97),
        Claim("beats equal budget", "ulpt", "pt-n3", at_least=1.0),
        Claim("faster", "ulpt", "pt", measure="sec_per_step", at_most=0.86),
    ]
    rows = [
        row("mr", "pt", [0.79, 0.80, 0.81], sec_per_step=2.0),
        row("mr", "ulpt", [0.76, 0.78, 0.80], sec_per_step=1.5),
        row("bbc", "pt", [0.90]),
        row("bbc", "ulpt", [0.72, 0.60]),  # seed 1 has no pt run: left out of the mean
        row("mr", "pt-n3", [0.78, 0.79, 0.80]),
    ]
    results = evaluate(claims, rows, {"ulpt": 3, "pt": 3, "pt-n3": 3})
    got = [(r["text"], r["task"], round(r["ratio"], 4), r["holds"], r["n_seeds"]) for r in results]
    assert got == [
        ("keeps 97 %", "mr", 0.975, True, 3),
        ("keeps 97 %", "bbc", 0.8, False, 1),
        ("beats equal budget", "mr", 0.9873, False, 3),  # bbc has no pt-n3 row: no result
        ("faster", "mr", 0.75, True, 3),
        ("faster", "bbc", 1.0, False, 1),
    ]
    lines = markdown(results)
    assert lines[5] == (
        "| keeps 97 % | mr | ulpt | pt | mean | 0.780 ± 0.020 | 0.800 ± 0.010 "
        "| 0.975 (need ≥ 0.97) | holds |"
    )
    assert lines[6].endswith("| 0.800 (need ≥ 0.97) | fails* (1 seed) |")
    assert lines[8].endswith("| 1.50 | 2.00 | 0.750 (need ≤ 0.86) | holds |")
    assert lines[-1].startswith("s/step ratios compare runs timed in separate processes")
    assert markdown([]) == []
    counted = evaluate(
        [Claim("smaller", "ulpt", "pt", "trainable_params", at_most=1.0)],
        [row("bbc", "pt", [0.9]), row("bbc", "ulpt", [0.7, 0.7, 0.7])],
        {"ulpt": 3, "pt": 3},
    )
    assert markdown(counted)[-1].endswith("| 1 | 1 | 1.000 (need ≤ 1) | holds |")  # no seed mark


def test_evaluate_pairs_seeds_and_refuses_non_positive_baselines() -> None:
    claim = Claim("better", "ulpt", "pt", at_least=1.0)
    rows = [
        row("mr", "pt", [0.5, None, 0.7], seeds=[0, 1, 2]),  # seed 1 has no test value
        row("mr", "ulpt", [0.6, 0.9, 0.6], seeds=[2, 1, 0]),
        row("cola", "pt", [-0.1, 0.0]),  # a Matthews correlation can be ≤ 0
        row("cola", "ulpt", [0.2, 0.3]),
        row("sst2", "pt", [0.8], seeds=[1]),
        row("sst2", "ulpt", [0.8], seeds=[0]),  # no seed in common: no result
    ]
    results = evaluate([claim], rows, {"ulpt": 3, "pt": 3})
    mr, cola = results
    assert (mr["value"], mr["reference"], mr["n_seeds"]) == (0.6, 0.6, 2)
    assert (mr["ratio"], mr["holds"]) == (1.0, True)
    assert (cola["ratio"], cola["holds"], cola["reference"]) == (None, None, -0.05)
    assert markdown(results)[-1].endswith("| — (need ≥ 1) | n/a (baseline ≤ 0)* (2 seeds) |")


def test_paper_suite_claims_name_its_configs() -> None:
    suite = load_suite(Path(__file__).parents[2] / "bench/suites/paper.toml")
    names = {run.config for run in suite.runs}
    assert len(suite.claims) == 17
    assert all({c.config, c.baseline} <= names for c in suite.claims)
    ulpt = next(c for c in suite.claims if c.measure == "trainable_params")
    assert (ulpt.config, ulpt.baseline, ulpt.at_most) == ("ulpt-n100-r2", "pt-n100", 0.03)


def test_a_ratio_that_rounds_onto_its_bound_keeps_the_digits_that_decide() -> None:
    """EPT against DePT on MR: 0.830 and 0.8303 give 0.9996, a fail that 3 decimals read 1.000."""
    claim = Claim("beats", "ept", "dept", at_least=1.0)
    rows = [row("mr", "dept", [0.824, 0.835, 0.832]), row("mr", "ept", [0.838, 0.826, 0.826])]
    (result,) = evaluate([claim], rows, {"ept": 3, "dept": 3})
    assert (ratio_text(result), result["holds"]) == ("0.9996", False)
    assert markdown([result])[-1].endswith("| 0.9996 (need ≥ 1) | fails |")
    assert ratio_text(result | {"ratio": 1.0}) == "1.000"  # exactly on the bound: holds
    assert ratio_text(result | {"ratio": 0.975}) == "0.975"
