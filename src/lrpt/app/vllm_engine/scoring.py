"""Label scores from next-token log-probabilities, for an engine that returns log-probabilities
of generated positions only (vLLM returns none for the prompt positions of prompt embeddings).

A label's score keeps ``lrpt eval``'s meaning: the sum of the log-probabilities of its answer
word's tokens after the input (teacher-forced). The log-probability of answer token ``i`` comes
from a one-token request whose prompt is the input followed by the word's tokens ``< i``, asking
for the raw log-probabilities of exactly the tokens wanted there (vLLM's ``logprob_token_ids``:
log-softmax over the whole vocabulary before any sampling setting). Labels whose words share a
beginning share those requests, so single-token answer words (the usual case) need one request
per input, whatever the number of labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

MAX_TOKENS_PER_REQUEST = 128  # vLLM's bound on logprob_token_ids per request

Key = tuple[int, tuple[int, ...], int]  # (input row, answer tokens before, answer token)


@dataclass
class ScorePlan:
    """The one-token requests that score ``words`` after each of ``rows`` inputs."""

    words: list[list[int]]
    rows: int
    prefixes: list[tuple[int, tuple[int, ...]]] = field(default_factory=list)  # per request
    wanted: list[list[int]] = field(default_factory=list)  # per request: the tokens asked for
    where: dict[Key, int] = field(default_factory=dict)  # which request answers a token

    def __post_init__(self) -> None:
        open_: dict[tuple[int, tuple[int, ...]], int] = {}  # the request still taking tokens
        for row in range(self.rows):
            for word in self.words:
                for i, token in enumerate(word):
                    key = (row, tuple(word[:i]))
                    if (*key, token) in self.where:
                        continue
                    j = open_.get(key)
                    if j is None or len(self.wanted[j]) == MAX_TOKENS_PER_REQUEST:
                        j = open_[key] = len(self.prefixes)
                        self.prefixes.append(key)
                        self.wanted.append([])
                    self.wanted[j].append(token)
                    self.where[(*key, token)] = j

    def scores(self, logprobs: Sequence[Mapping[int, Any]]) -> torch.Tensor:
        """``(rows, labels)`` float32: each label's summed answer-token log-probability, from
        each request's ``{token: log-probability}`` (a number or a vLLM ``Logprob``)."""
        if len(logprobs) != len(self.prefixes):
            raise ValueError(f"got {len(logprobs)} answers for {len(self.prefixes)} requests")
        out = torch.zeros(self.rows, len(self.words), dtype=torch.float64)
        for row in range(self.rows):
            for c, word in enumerate(self.words):
                for i, token in enumerate(word):
                    value = logprobs[self.where[(row, tuple(word[:i]), token)]][token]
                    out[row, c] += float(getattr(value, "logprob", value))
        return out.float()


def score_params(vllm: Any, tokens: list[int]) -> Any:
    """vLLM sampling parameters of one scoring request: one greedy token, and the raw
    log-probabilities of ``tokens`` at its position."""
    return vllm.SamplingParams(
        max_tokens=1, temperature=0.0, logprob_token_ids=tokens, detokenize=False
    )


def request_logprobs(output: Any) -> Mapping[int, Any]:
    """The ``{token: Logprob}`` of a finished one-token scoring request (a vLLM output)."""
    logprobs = output.outputs[0].logprobs
    if not logprobs:
        raise RuntimeError("vLLM returned no log-probabilities for a scoring request")
    return logprobs[0]
