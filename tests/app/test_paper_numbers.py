"""Every parameter count METHODS.md lists, reproduced by ``lrpt params … --json``."""

from __future__ import annotations

import json

import pytest

from lrpt.app.cli import main

T5_SMALL, T5_BASE, T5_LARGE, GPT2_L, BLOOMZ_560M, BLOOMZ_1B7 = 512, 768, 1024, 1280, 1024, 2048

# (method, embed_dim, encoder_dim, {flag: value}, paper count)
PAPER = [
    ("pt", T5_SMALL, None, {"num-tokens": 100}, 51_200),
    ("pt", T5_BASE, None, {"num-tokens": 100}, 76_800),
    ("pt", T5_LARGE, None, {"num-tokens": 100}, 102_400),
    ("dpt", T5_SMALL, None, {"num-tokens": 100, "rank": 10}, 6_120),
    ("dpt", T5_BASE, None, {"num-tokens": 100, "rank": 10}, 8_680),
    ("dpt", T5_LARGE, None, {"num-tokens": 100, "rank": 10}, 11_240),
    ("dpt", T5_BASE, None, {"num-tokens": 100, "rank": 64}, 55_552),
    ("lopt1", GPT2_L, None, {"num-tokens": 20, "rank": 5}, 6_500),
    ("pt", GPT2_L, None, {"num-tokens": 20}, 25_600),
    ("lopt2", GPT2_L, None, {"num-tokens": 20, "rank": 5}, 12_800),
    ("ulpt", T5_BASE, None, {"num-tokens": 100, "rank": 2}, 1_736),
    ("ulpt", T5_BASE, None, {"num-tokens": 100, "rank": 16}, 3_136),
    ("ulpt", T5_BASE, None, {"num-tokens": 100, "rank": 64}, 7_936),
    ("ulpt", T5_BASE, None, {"num-tokens": 100, "rank": 256}, 27_136),
    ("ulpt", BLOOMZ_560M, None, {"num-tokens": 100, "rank": 2}, 2_248),
    ("ulpt", BLOOMZ_560M, None, {"num-tokens": 100, "rank": 16}, 3_648),
    ("ulpt", BLOOMZ_560M, None, {"num-tokens": 100, "rank": 64}, 8_448),
    ("ulpt", BLOOMZ_560M, None, {"num-tokens": 100, "rank": 256}, 27_648),
    ("ulpt", BLOOMZ_1B7, None, {"num-tokens": 100, "rank": 2}, 4_296),
    ("dept", T5_BASE, None, {"num-tokens": 60, "rank": 30, "max-length": 256}, 76_800),
    ("dept", T5_BASE, None, {"num-tokens": 40, "rank": 45, "max-length": 256}, 76_800),
    ("lopa", 1024, 1024, {"num-tokens": 10, "hidden": 256, "rank": 4}, 1_597_992),
    ("lopa", 2048, 1024, {"num-tokens": 10, "hidden": 1024, "rank": 1}, 4_229_130),
    ("lopa", 2560, 1024, {"num-tokens": 10, "hidden": 1024, "rank": 1}, 4_759_050),
    ("lopa", 3072, 1024, {"num-tokens": 10, "hidden": 1024, "rank": 1}, 5_288_970),
    ("lopa", 4096, 1024, {"num-tokens": 10, "hidden": 1024, "rank": 1}, 6_348_810),
    ("idpg", 1024, 1024, {"num-tokens": 10, "hidden": 256}, 2_894_080),
    ("residual", T5_SMALL, None, {"num-tokens": 100, "hidden": 400}, 462_736),
    ("residual", T5_BASE, None, {"num-tokens": 100, "hidden": 400}, 693_904),
    ("residual", T5_LARGE, None, {"num-tokens": 100, "hidden": 400}, 925_072),
]


@pytest.mark.parametrize(("method", "d", "k", "flags", "count"), PAPER)
def test_paper_count(capsys, method: str, d: int, k: int | None, flags: dict, count: int) -> None:
    argv = ["params", "--method", method, "--embed-dim", str(d), "--json"]
    argv += ["--encoder-dim", str(k)] if k else []
    for flag, value in flags.items():
        argv += [f"--{flag}", str(value)]
    assert main(argv) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["trainable_params"] == count
    assert sum(_prod(shape) for shape in info["tensors"].values()) == count


def _prod(shape: list[int]) -> int:
    out = 1
    for s in shape:
        out *= s
    return out


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
