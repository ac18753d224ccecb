"""PromptBank: many prompts on one frozen causal LM, with mixed-task batches.

Each task's prompt prefix (``[BOS] + prompt``) is computed once and cached (see
:mod:`lrpt.prefix`); a batch may mix rows of different tasks, methods and prompt lengths, and
one forward or greedy ``generate`` serves them all with the outputs each task's rows get alone.
Static methods only (an instance-dependent prompt has no single prefix to cache).

With a :class:`~lrpt.prefix_cache.PrefixCache` the prefixes live in a memory-bounded LRU shared
by every task (computed on first use) instead of one per prompted model, so a bank can hold
thousands of tasks; :meth:`PromptBank.prefill` starts rows for iteration-level batching
(:mod:`lrpt.decoding`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import cast

import torch
from torch import nn
from transformers.modeling_outputs import CausalLMOutputWithPast

from lrpt.decoding import Running, greedy
from lrpt.family import Family
from lrpt.model import PATHS, AfterPrefix, PromptedModel, sharing
from lrpt.packed import forward_packed, prefill_packed
from lrpt.prefix import (
    PrefixState,
    batch_prefix,
    forward_with_prefix,
    prefill_with_prefix,
    run_prefix,
)
from lrpt.prefix_cache import PrefixCache

_serials = itertools.count()


class PromptBank(nn.Module):
    """Prompted models that share one frozen causal LM, addressed by task name.

    ``path``: ``"shared"`` lays the tasks' cached prefixes out for the batch (a left-padded copy
    per row, :func:`~lrpt.prefix.batch_prefix`) and runs the padded rows after them;
    ``"packed"`` runs every row's tokens without padding in one packed pass after the cached
    prefixes (:mod:`lrpt.packed`), where the model takes it (else shared, logged once);
    ``"auto"`` picks by device type (:data:`lrpt.model.AUTO`); ``"naive"`` is not a bank path.
    The default stays ``"shared"``: a server's batches keep their numbers until the server
    chooses the path (the packed pass gives zeros, not the shared prefix's values, at padding).

    Raises:
        ValueError: a prompt on another base model, a non-static or non-causal prompt, a task
            name used twice, an unknown task in a batch, or an unknown path.
    """

    def __init__(
        self,
        prompts: dict[str, PromptedModel] | None = None,
        *,
        prefix_cache: PrefixCache | None = None,
        path: str = "shared",
    ) -> None:
        super().__init__()
        if path not in PATHS or path == "naive":
            choices = ", ".join(p for p in PATHS if p != "naive")
            raise ValueError(f"unknown bank path {path!r}: expected one of {choices}")
        self.prompts = nn.ModuleDict()
        self.prefix_cache = prefix_cache
        self.path = path
        self._serial: dict[str, int] = {}  # a new number per add: cache keys of replaced tasks die
        for name, pm in (prompts or {}).items():
            self.add(name, pm)

    def add(self, name: str, pm: PromptedModel, *, replace: bool = False) -> None:
        """Add task ``name`` (``replace``: in place of the one of that name, if any)."""
        if name in self.prompts and not replace:
            raise ValueError(f"task {name!r} is already in the bank")
        if not pm.method.static or pm.family != Family.CAUSAL:
            raise ValueError(
                f"task {name!r}: mixed-task batches need a static prompt on a causal LM, "
                f"got method {pm.method.key!r} on a {pm.family} model"
            )
        reason = pm.unshared_reason()
        if reason is not None:
            raise ValueError(f"task {name!r}: mixed-task batches need a shared prefix: {reason}")
        if self.prompts:
            first = self.prompt(self.tasks[0])
            if pm.model is not first.model:
                raise ValueError(f"task {name!r} uses another base model object than the bank")
        self.remove(name)
        self.prompts[name] = pm
        self._serial[name] = next(_serials)

    def remove(self, name: str) -> None:
        """Drop task ``name`` (if present) and its cached prefixes."""
        if name in self.prompts:
            del self.prompts[name]
            serial = self._serial.pop(name)
            if self.prefix_cache is not None:
                self.prefix_cache.discard(
                    lambda key: key == (serial, True) or key == (serial, False)
                )

    def prefix_state(self, task: str, with_lead: bool) -> PrefixState:
        """Task ``task``'s ``[BOS] + prompt`` prefix: from the bank's LRU when it has one (run on
        a miss), else cached by the prompted model itself."""
        pm = self.prompt(task)
        if self.prefix_cache is None:
            return pm.prefix_state(with_lead)
        lead_id = pm.lead_id if with_lead else None

        def compute() -> PrefixState:
            with torch.no_grad():
                return run_prefix(pm.model, pm.method.prompt(1), lead_id)

        return self.prefix_cache.get((self._serial[task], with_lead), compute)

    @property
    def tasks(self) -> list[str]:
        return list(self.prompts)

    def prompt(self, task: str) -> PromptedModel:
        """The prompted model of ``task``."""
        return cast(PromptedModel, self.prompts[task])

    def sharing(self) -> str:
        """``"packed"`` or ``"shared"``: how this bank's batches run (see ``path`` and
        :func:`lrpt.model.sharing`)."""
        return sharing(self.prompt(self.tasks[0]).model, self.path) if self.prompts else "shared"

    def _prepare(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, tasks: Sequence[str]
    ) -> tuple[AfterPrefix, torch.Tensor, list[PrefixState]]:
        """The whole batch's input part (rows of each task from its own prompted model), each
        row's index into the batch's tasks, and those tasks' prefixes."""
        if len(tasks) != input_ids.shape[0]:
            raise ValueError(f"got {len(tasks)} task names for a batch of {input_ids.shape[0]}")
        unknown = sorted(set(tasks) - set(self.prompts))
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; the bank has {self.tasks}")
        used = list(dict.fromkeys(tasks))  # the tasks in this batch, in order of appearance
        rows = torch.tensor([used.index(t) for t in tasks], device=input_ids.device)
        parts: list[tuple[torch.Tensor, AfterPrefix]] = []
        for index, name in enumerate(used):
            sel = (rows == index).nonzero(as_tuple=True)[0]
            rest = self.prompt(name).after_prefix(input_ids[sel], attention_mask[sel])
            if rest is None:
                raise ValueError("rows must all start with the BOS token, or none of them")
            parts.append((sel, rest))
        with_lead = {rest.with_lead for _, rest in parts}
        if len(with_lead) > 1:
            raise ValueError("rows must all start with the BOS token, or none of them")
        first = parts[0][1].embeds
        embeds = torch.empty(
            (*input_ids.shape, first.shape[-1]), dtype=first.dtype, device=input_ids.device
        )
        rest_mask = torch.empty_like(attention_mask, dtype=torch.long)
        lead_cols = torch.empty_like(attention_mask, dtype=torch.bool)
        for sel, rest in parts:
            embeds[sel] = rest.embeds
            rest_mask[sel] = rest.rest_mask
            lead_cols[sel] = rest.lead_cols
        lead = with_lead.pop()
        states = [self.prefix_state(name, lead) for name in used]
        return AfterPrefix(embeds, rest_mask, lead_cols, None, lead), rows, states

    @torch.no_grad()
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        tasks: Sequence[str],
        *,
        logits_to_keep: int = 0,
    ) -> CausalLMOutputWithPast:
        """Logits at the input positions ``(B, L, V)``; row ``b`` is prompted for ``tasks[b]``."""
        rest, rows, states = self._prepare(input_ids, attention_mask, tasks)
        model = self.prompt(tasks[0]).model
        if self.sharing() == "packed":
            return forward_packed(
                model, rest.embeds, rest.rest_mask, rest.lead_cols, rows, states,
                logits_to_keep=logits_to_keep,
            )  # fmt: skip
        return forward_with_prefix(
            model, rest.embeds, rest.rest_mask, rest.lead_cols,
            batch_prefix(states, rows, model.config), logits_to_keep=logits_to_keep,
        )  # fmt: skip

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        tasks: Sequence[str],
        *,
        max_new_tokens: int,
        eos_token_id: int | list[int] | None = None,
    ) -> torch.Tensor:
        """Greedy generation for a left-padded mixed-task batch; returns the new tokens."""
        running = self.prefill(input_ids, attention_mask, tasks, verb="generate")
        pm = self.prompt(tasks[0])
        eos = eos_token_id if eos_token_id is not None else pm.model.generation_config.eos_token_id
        return greedy(pm.model, running, max_new_tokens, eos, pm.tokenizer.pad_token_id)

    @torch.no_grad()
    def prefill(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        tasks: Sequence[str],
        *,
        verb: str = "prefill",
    ) -> Running:
        """Run a left-padded mixed-task batch after its prefixes and keep the cache: rows ready
        to decode with :class:`~lrpt.decoding.Running` (their first token's logits included)."""
        if bool((attention_mask[:, -1] == 0).any()):
            raise ValueError(f"{verb} with a causal model needs left padding (pads first)")
        rest, rows, states = self._prepare(input_ids, attention_mask, tasks)
        model = self.prompt(tasks[0]).model
        if self.sharing() == "packed":
            return prefill_packed(model, rest.embeds, rest.rest_mask, rest.lead_cols, rows, states)
        prefix = batch_prefix(states, rows, model.config)
        return prefill_with_prefix(model, rest.embeds, rest.rest_mask, rest.lead_cols, prefix)
