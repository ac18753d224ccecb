"""The trainable-parameter counts the methods' papers report, with the configurations that give
them: one table for the library's check (tests/methods/test_contract.py) and the CLI's
(tests/app/test_paper_numbers.py)."""

from __future__ import annotations

from typing import NamedTuple


class Paper(NamedTuple):
    """``method`` with ``options`` on a model of embedding size ``embed_dim`` (and input encoder
    size ``encoder_dim``) trains ``count`` parameters in the paper. ``defaults``: the method's
    defaults are this configuration (its options can be left out)."""

    method: str
    model: str
    embed_dim: int
    encoder_dim: int | None
    options: dict[str, int]
    count: int
    defaults: bool = False

    def __str__(self) -> str:
        options = ",".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.method}-{self.model}-{options}"


T5_SMALL, T5_BASE, T5_LARGE, GPT2_L, BLOOMZ_560M, BLOOMZ_1B7 = 512, 768, 1024, 1280, 1024, 2048
ROBERTA_L = CODESAGE = 1024
N100, N100_R10 = {"num_tokens": 100}, {"num_tokens": 100, "rank": 10}
N20_R5, N10_H1024_R1 = {"num_tokens": 20, "rank": 5}, {"num_tokens": 10, "hidden": 1024, "rank": 1}


def n100_r(rank: int) -> dict[str, int]:
    return {"num_tokens": 100, "rank": rank}


# fmt: off
PAPER = [
    # pt (Lester et al. 2021) on T5, n = 100; and LoPT's baseline on GPT2-large, n = 20
    Paper("pt", "T5-small", T5_SMALL, None, N100, 51_200, defaults=True),
    Paper("pt", "T5-base", T5_BASE, None, N100, 76_800, defaults=True),
    Paper("pt", "T5-large", T5_LARGE, None, N100, 102_400, defaults=True),
    Paper("pt", "GPT2-large", GPT2_L, None, {"num_tokens": 20}, 25_600),
    # dpt (Xiao et al. 2023), n = 100, bottleneck 10 and 64
    Paper("dpt", "T5-small", T5_SMALL, None, N100_R10, 6_120, defaults=True),
    Paper("dpt", "T5-base", T5_BASE, None, N100_R10, 8_680, defaults=True),
    Paper("dpt", "T5-large", T5_LARGE, None, N100_R10, 11_240, defaults=True),
    Paper("dpt", "T5-base", T5_BASE, None, {"num_tokens": 100, "rank": 64}, 55_552),
    # lopt1, lopt2 (Guo et al. 2024) on GPT2-large: lopt1 is "a factor of 5" below pt's 25,600
    Paper("lopt1", "GPT2-large", GPT2_L, None, N20_R5, 6_500, defaults=True),
    Paper("lopt2", "GPT2-large", GPT2_L, None, N20_R5, 12_800, defaults=True),
    # ulpt (Wu et al. 2025), n = 100
    Paper("ulpt", "T5-base", T5_BASE, None, n100_r(2), 1_736, defaults=True),
    Paper("ulpt", "T5-base", T5_BASE, None, n100_r(16), 3_136),
    Paper("ulpt", "T5-base", T5_BASE, None, n100_r(64), 7_936),
    Paper("ulpt", "T5-base", T5_BASE, None, n100_r(256), 27_136),
    Paper("ulpt", "Bloomz-560M", BLOOMZ_560M, None, n100_r(2), 2_248, defaults=True),
    Paper("ulpt", "Bloomz-560M", BLOOMZ_560M, None, n100_r(16), 3_648),
    Paper("ulpt", "Bloomz-560M", BLOOMZ_560M, None, n100_r(64), 8_448),
    Paper("ulpt", "Bloomz-560M", BLOOMZ_560M, None, n100_r(256), 27_648),
    Paper("ulpt", "Bloomz-1.7B", BLOOMZ_1B7, None, n100_r(2), 4_296, defaults=True),
    # dept (Shi & Lipani 2024) keeps pt's budget l·d (l = 100) on T5-base, m = 256
    Paper("dept", "T5-base", T5_BASE, None, {"num_tokens": 60, "rank": 30, "max_length": 256},
          76_800, defaults=True),
    Paper("dept", "T5-base", T5_BASE, None, {"num_tokens": 40, "rank": 45, "max_length": 256},
          76_800),
    # lopa (Jain et al. 2024): NLU on RoBERTa-large (k = d); the code tasks with CodeSage (k)
    Paper("lopa", "RoBERTa-large", ROBERTA_L, ROBERTA_L,
          {"num_tokens": 10, "hidden": 256, "rank": 4}, 1_597_992, defaults=True),
    Paper("lopa", "DeepSeekCoder-1.3B", 2048, CODESAGE, N10_H1024_R1, 4_229_130),
    Paper("lopa", "Phi-2", 2560, CODESAGE, N10_H1024_R1, 4_759_050),
    Paper("lopa", "Phi-3", 3072, CODESAGE, N10_H1024_R1, 5_288_970),
    Paper("lopa", "DeepSeekCoder-7B", 4096, CODESAGE, N10_H1024_R1, 6_348_810),
    # idpg (S-IDPG-DNN, Wu et al. 2022) as LoPA reports it, RoBERTa-large
    Paper("idpg", "RoBERTa-large", ROBERTA_L, ROBERTA_L, {"num_tokens": 10, "hidden": 256},
          2_894_080, defaults=True),
    # residual (Razdaibiedina et al. 2023), n = 100, bottleneck 400
    Paper("residual", "T5-small", T5_SMALL, None, {"num_tokens": 100, "hidden": 400}, 462_736,
          defaults=True),
    Paper("residual", "T5-base", T5_BASE, None, {"num_tokens": 100, "hidden": 400}, 693_904,
          defaults=True),
    Paper("residual", "T5-large", T5_LARGE, None, {"num_tokens": 100, "hidden": 400}, 925_072,
          defaults=True),
]
# fmt: on
