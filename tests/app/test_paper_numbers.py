"""Every parameter count the methods' papers report (tests/paper_counts.py), reproduced by
``lrpt params … --json``."""

from __future__ import annotations

import json
import math

import pytest
from paper_counts import PAPER, Paper

from lrpt.app.cli import main


@pytest.mark.parametrize("paper", PAPER, ids=str)
def test_paper_count(capsys, paper: Paper) -> None:
    argv = ["params", "--method", paper.method, "--embed-dim", str(paper.embed_dim), "--json"]
    argv += ["--encoder-dim", str(paper.encoder_dim)] if paper.encoder_dim else []
    for name, value in paper.options.items():
        argv += ["--" + name.replace("_", "-"), str(value)]
    assert main(argv) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["trainable_params"] == paper.count
    assert sum(math.prod(shape) for shape in info["tensors"].values()) == paper.count


def test_ept_matches_its_formula(capsys) -> None:
    """s·d + r·(m + d) + N_e·(2·d·h + h + d) + d·N_e at T5-base, s=60, r=30, m=256, h=16."""
    argv = ["params", "--method", "ept", "--embed-dim", "768", "--json"]
    assert main(argv) == 0
    info = json.loads(capsys.readouterr().out)
    s, d, r, m, n_e, h = 60, 768, 30, 256, 4, 16
    assert info["trainable_params"] == s * d + r * (m + d) + n_e * (2 * d * h + h + d) + d * n_e


def test_method_flags_rejected_by_name(capsys) -> None:
    assert main(["params", "--method", "pt", "--embed-dim", "768", "--rank", "3"]) == 2
    err = capsys.readouterr().err
    assert "method 'pt' does not use --rank; it takes --num-tokens, --init, --init-text" in err
