"""One generation request being decoded: how it picks each token, the log-probabilities it
reports, and the text it may show so far.

A row picks its next token from the prompted model's logits after its frequency and presence
penalties and logit bias (:meth:`Row.pick`); the log-probabilities it reports are the prompted
model's own (before penalties, bias and temperature), as :func:`token_logprobs` gives them for
the prompt's tokens too. Text is shown as it is decoded, holding back what could begin a stop
string or end in an unfinished character; a stop string ends the row with the text before it.
"""

from __future__ import annotations

from typing import Any

import torch

from lrpt.app.serve.jobs import Delta, Done, GenerateJob, TokenLogprob
from lrpt.decoding import choose


def token_logprobs(
    logits: torch.Tensor, tokens: list[int] | torch.Tensor, k: int
) -> list[TokenLogprob]:
    """``logits (N, V)`` predicting ``tokens (N,)``: each token's log-probability and the
    ``k`` most likely tokens with theirs."""
    logp = logits.float().log_softmax(-1)
    index = torch.as_tensor(tokens, device=logp.device)
    chosen = logp.gather(1, index[:, None])[:, 0].tolist()
    top_values, top_ids = logp.topk(k, -1) if k else (logp[:, :0], index[:, None][:, :0])
    return [
        TokenLogprob(int(t), lp, tuple(zip(ids, values, strict=True)))
        for t, lp, ids, values in zip(
            index.tolist(), chosen, top_ids.tolist(), top_values.tolist(), strict=True
        )
    ]


class Row:
    """A generation request in the running batch."""

    def __init__(self, job: GenerateJob, tokenizer: Any) -> None:
        self.job = job
        self.tokenizer = tokenizer
        self.generator = torch.Generator(device="cpu")
        if job.sampling.seed is not None:
            self.generator.manual_seed(job.sampling.seed)
        else:
            self.generator.seed()
        self.tokens: list[int] = []
        self.ends: list[int] = []  # where each token's text ends in the decoded text
        self.reported: list[TokenLogprob] = []  # with job.logprobs: one per token
        self.logprob = 0.0  # summed log-probability of the tokens
        self.sent = 0  # characters of the text delivered
        self.given = 0  # tokens delivered with their log-probabilities
        self.counts: dict[int, int] = {}  # occurrences of each token, for the penalties

    def pick(self, logits: torch.Tensor) -> int:
        """The next token from ``logits (V,)`` (see the module docstring)."""
        sampling = self.job.sampling
        penalised = sampling.frequency_penalty or sampling.presence_penalty
        if penalised or sampling.logit_bias:
            logits = logits.float().clone()
            if penalised and self.counts:
                ids = torch.tensor(list(self.counts), device=logits.device)
                seen = torch.tensor(list(self.counts.values()), device=logits.device).float()
                logits[ids] -= sampling.frequency_penalty * seen + sampling.presence_penalty
            for token, bias in sampling.logit_bias:
                logits[token] += bias
        token = choose(logits, sampling.temperature, sampling.top_p, self.generator)
        return token

    def advance(self, logits: torch.Tensor, token: int) -> str | None:
        """Add ``token`` (chosen from the model's ``logits (V,)``) and deliver the text it
        lets the row show; → why the row finished (``stop`` or ``length``), or None."""
        (reported,) = token_logprobs(logits[None], [token], self.job.logprobs or 0)
        self.logprob += float(reported.logprob or 0.0)
        if self.job.logprobs is not None:
            self.reported.append(reported)
        self.tokens.append(token)
        self.counts[token] = self.counts.get(token, 0) + 1
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        self.ends.append(len(text))
        cuts = [text.find(s) for s in self.job.stop if s in text]
        if cuts:
            self.finish("stop", text[: min(cuts)], cut=True)
            return "stop"
        if len(self.tokens) >= self.job.max_tokens:
            self.finish("length", text)
            return "length"
        hold = max((len(s) for s in self.job.stop), default=1) - 1
        end = len(text) - hold
        while end > self.sent and text[end - 1] == "\ufffd":
            end -= 1
        if end > self.sent:
            self._deliver(text, end)
        return None

    def finish(self, reason: str, text: str | None = None, cut: bool = False) -> None:
        """Deliver the rest of the text (``text``: all of it, ``cut`` before a stop string;
        None: as decoded so far) and :class:`Done`."""
        if text is None:
            text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        if len(text) > self.sent or self.given < len(self.reported):
            self._deliver(text, len(text), tail=not cut)
        job = self.job
        job.deliver(Done(reason, len(job.ids), len(self.tokens), self.logprob))

    def _deliver(self, text: str, end: int, tail: bool = False) -> None:
        """Deliver ``text[sent:end]`` with the reported tokens whose text starts before
        ``end`` (``tail``: also those after, which add no text: the row's last word)."""
        given = self.given
        while given < len(self.reported):
            start = self.ends[given - 1] if given else 0
            if start >= end and not tail:
                break
            given += 1
        self.job.deliver(Delta(text[self.sent : end], tuple(self.reported[self.given : given])))
        self.sent, self.given = end, given
