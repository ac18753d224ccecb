"""Offline batch work on vLLM (``lrpt eval`` and ``lrpt predict`` with ``--engine vllm``).

:func:`on_vllm` wraps a task's objective so that its predictions run on ``vllm.LLM``: the
objective still encodes the examples (template, truncation), :class:`~lrpt.input_embeds.InputEmbeds`
turns each row into its input embeddings, and vLLM runs the frozen model on them:

* ``generate`` objectives: greedy decoding, stopping at the model's EOS as the own engine does;
  the tokens are decoded and parsed by the objective itself;
* ``classify`` objectives: each label's summed answer-token log-probability (see
  :mod:`lrpt.app.vllm_engine.scoring`), the best-scoring label is the prediction.

The engine behind :class:`EngineObjective` is anything with :class:`EmbedsEngine`'s two calls,
so the same wrapper runs on a reference engine in the tests.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

import torch

from lrpt.app.data.objectives import Batch, ClassifyObjective, Objective, Runnable
from lrpt.app.vllm_engine.scoring import ScorePlan, request_logprobs, score_params
from lrpt.app.vllm_engine.settings import VllmSettings, model_dir, on_cpu, require_vllm
from lrpt.input_embeds import InputEmbeds
from lrpt.model import PromptedModel


class EmbedsEngine(Protocol):
    """What the wrapper needs from an engine that runs input embeddings."""

    def generate(self, embeds: Sequence[torch.Tensor], max_tokens: int) -> list[list[int]]:
        """Greedy tokens after each row (ending with EOS when it stopped there)."""
        ...

    def logprobs(
        self, embeds: Sequence[torch.Tensor], tokens: Sequence[list[int]]
    ) -> list[Mapping[int, Any]]:
        """For each row, the next-token log-probability of each of its ``tokens``."""
        ...


def eos_ids(model: Any) -> list[int]:
    """The tokens greedy decoding stops at: the (transformers) model's generation config's EOS,
    as the own engine's (none: it runs to the token limit)."""
    eos = model.generation_config.eos_token_id
    return [] if eos is None else [eos] if isinstance(eos, int) else list(eos)


class _Runner:
    """The prompted model's ``generate`` on the engine (the part of :class:`Runnable` a
    ``generate`` objective calls)."""

    def __init__(self, pm: PromptedModel, embedder: InputEmbeds, engine: EmbedsEngine) -> None:
        self.pm, self.embedder, self.engine = pm, embedder, engine
        self.pad_id = embedder.pad_id

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("an engine objective scores labels through ScorePlan, not logits")

    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]:
        return self.pm.parameters(recurse)

    def eval(self) -> _Runner:
        return self

    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        texts: Sequence[str] | None = None,
        max_new_tokens: int,
        do_sample: bool = False,
    ) -> torch.Tensor:
        """``(B, T)`` new tokens (pads after EOS), as :meth:`PromptedModel.generate`."""
        if do_sample:
            raise ValueError("the engine objective decodes greedily (do_sample=False)")
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        rows = [ids[m.bool()].tolist() for ids, m in zip(input_ids, mask, strict=True)]
        new = self.engine.generate(self.embedder(rows, texts), max_new_tokens)
        width = max((len(t) for t in new), default=0)
        out = torch.full((len(new), width), self.pad_id, dtype=torch.long)
        for i, tokens in enumerate(new):
            out[i, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        return out


class EngineObjective(Objective):
    """``inner``'s encoding, with its predictions run on ``engine`` (see the module docstring);
    the model passed to :meth:`predict` and :meth:`answers` is not used."""

    def __init__(self, inner: Objective, pm: PromptedModel, engine: EmbedsEngine) -> None:
        super().__init__(inner.spec, inner.tok, inner.family)
        self.inner = inner
        self.runner = _Runner(pm, InputEmbeds(pm), engine)

    def collate(self, examples: Sequence[Any], *, golds: bool = True) -> Batch:
        return self.inner.collate(examples, golds=golds)

    def scores(self, batch: Batch) -> torch.Tensor:
        """``(B, C)``: each label's summed answer-token log-probability (classify only)."""
        if not isinstance(self.inner, ClassifyObjective):
            raise ValueError(f"objective {self.spec.objective!r} has no label scores")
        plan = ScorePlan(self.inner.words, len(batch))
        rows = [batch.rows[row] + list(before) for row, before in plan.prefixes]
        texts = [batch.texts[row] for row, _ in plan.prefixes]
        embeds = self.runner.embedder(rows, texts)
        return plan.scores(self.runner.engine.logprobs(embeds, plan.wanted))

    def predict(self, model: Runnable, batch: Batch) -> list[Any]:
        if isinstance(self.inner, ClassifyObjective):
            return self.scores(batch).argmax(-1).tolist()
        return self.inner.predict(self.runner, batch)

    def answers(self, model: Runnable, batch: Batch) -> list[str]:
        if isinstance(self.inner, ClassifyObjective):
            return [self.show(pred) for pred in self.predict(model, batch)]
        return self.inner.answers(self.runner, batch)


class VllmOffline:
    """:class:`EmbedsEngine` on ``vllm.LLM``, started here with ``settings`` for ``model`` (the
    frozen transformers model as lrpt loaded it: vLLM loads it from the same directory, in the
    same dtype)."""

    def __init__(self, model: Any, settings: VllmSettings) -> None:
        self.vllm = require_vllm()
        args = settings.engine_args(model_dir(model), model.dtype, cpu=on_cpu())
        self.llm = self.vllm.LLM(**args)
        self.eos = eos_ids(model)

    def close(self) -> None:
        """Stop vLLM's engine core (its child process) now rather than at exit."""
        self.llm.llm_engine.engine_core.shutdown()

    def _run(self, embeds: Sequence[torch.Tensor], params: Any) -> list[Any]:
        prompts = [{"prompt_embeds": e.detach().cpu()} for e in embeds]
        return list(self.llm.generate(prompts, params, use_tqdm=False))

    def generate(self, embeds: Sequence[torch.Tensor], max_tokens: int) -> list[list[int]]:
        params = self.vllm.SamplingParams(
            max_tokens=max_tokens, temperature=0.0, stop_token_ids=self.eos, detokenize=False
        )
        return [list(out.outputs[0].token_ids) for out in self._run(embeds, params)]

    def logprobs(
        self, embeds: Sequence[torch.Tensor], tokens: Sequence[list[int]]
    ) -> list[Mapping[int, Any]]:
        params = [score_params(self.vllm, list(t)) for t in tokens]
        return [request_logprobs(out) for out in self._run(embeds, params)]


def on_vllm(objective: Objective, pm: PromptedModel, settings: VllmSettings) -> EngineObjective:
    """``objective`` with its predictions on a vLLM engine started for ``pm``'s frozen model."""
    InputEmbeds(pm)  # a prompt vLLM cannot run fails before the engine starts
    return EngineObjective(objective, pm, VllmOffline(pm.model, settings))
