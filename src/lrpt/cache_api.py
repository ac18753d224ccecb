"""How lrpt hands a transformers causal LM a precomputed prefix, across transformers releases.

The one place that decides whether a model can take a shared prefix (see :mod:`lrpt.prefix`), under
which keyword, and whether a batch fits a sliding-window model's window (:func:`window_reason`).
transformers 5.0–5.23 name a model's cache argument and output ``past_key_values``; 5.24 renamed
both to ``cache`` (the old name is deprecated, to be removed in 5.40). Models written outside
transformers may take either, or swallow unknown keywords in ``**kwargs`` and silently ignore them.

So the version only chooses which keyword to try first; the decision is made by what the model
does: :func:`prefix_support` runs it once on a two-token probe (one token, then the second with
the first's cache) and accepts the keyword under which the model extended the cache it was
given. The answer is memoised per model object.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, cast

import torch
import transformers
from packaging.version import Version
from transformers import PreTrainedModel

CACHE_RENAMED_IN = Version("5.24.0")  # the release whose models take ``cache=``


@dataclass(frozen=True)
class PrefixSupport:
    """Whether a model takes a precomputed prefix: the keyword to pass it under, or why not."""

    kwarg: str | None  # "cache" or "past_key_values"; None when the model cannot take one
    reason: str = ""  # why not, in words (empty when kwarg is set)

    @property
    def ok(self) -> bool:
        return self.kwarg is not None


_SUPPORT: weakref.WeakKeyDictionary[PreTrainedModel, PrefixSupport] = weakref.WeakKeyDictionary()


def cache_kwargs(version: str | None = None) -> tuple[str, ...]:
    """Cache keywords in the order to try them for transformers ``version`` (default: installed)."""
    installed = Version(version or transformers.__version__)
    if installed.release >= CACHE_RENAMED_IN.release:
        return ("cache", "past_key_values")
    return ("past_key_values", "cache")


def output_cache(out: Any) -> Any:
    """The cache a model returned, under either release's name (None if it returned none)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


def sliding_window(config: Any) -> int | None:
    """The model's active sliding-attention window, or None when attention is global."""
    window = getattr(config, "sliding_window", None)
    if window is None or getattr(config, "use_sliding_window", True) is False:
        return None
    return int(window)


def prefix_support(model: PreTrainedModel) -> PrefixSupport:
    """Whether ``model`` (a causal LM) can run after a precomputed prefix, and how (memoised)."""
    known = _SUPPORT.get(model)
    if known is None:
        known = _probe(model)
        _SUPPORT[model] = known
    return known


def window_reason(config: Any, span: int | None = None) -> str | None:
    """Why a batch whose longest prompt + row (+ new tokens) takes ``span`` positions cannot
    share its prompt on a model with ``config`` (``span`` None: any batch may be too long), or
    None. A sliding window that covers every row with its prompt is full attention there, and a
    shared prefix or packed pass gives the same numbers as the naive path; a longer row would
    have to drop the prompt's first positions, which a shared prefix keeps."""
    window = sliding_window(config)
    if window is None or (span is not None and span <= window):
        return None
    return (
        f"in batches where a row with its prompt is longer than the model's sliding window "
        f"({window} positions)"
    )


def _probe(model: PreTrainedModel) -> PrefixSupport:
    device = cast(torch.Tensor, model.get_input_embeddings().weight).device
    ids = torch.zeros(1, 2, dtype=torch.long, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            first = output_cache(model(input_ids=ids[:, :1], use_cache=True))
            if first is None:
                return PrefixSupport(None, f"{type(model).__name__} returns no key/value cache")
            for kwarg in cache_kwargs():
                outcome = _extends(model, ids, first, kwarg)
                if outcome:
                    return PrefixSupport(kwarg)
                first = output_cache(model(input_ids=ids[:, :1], use_cache=True))
    finally:
        model.train(was_training)
    return PrefixSupport(
        None, f"{type(model).__name__}.forward takes no precomputed cache (tried "
        f"{' and '.join(cache_kwargs())} on transformers {transformers.__version__})",
    )  # fmt: skip


def _extends(model: PreTrainedModel, ids: torch.Tensor, cache: Any, kwarg: str) -> bool:
    """Whether the model, given ``cache`` under ``kwarg``, extends it by the second token."""
    try:
        out = model(
            input_ids=ids[:, 1:], attention_mask=torch.ones_like(ids),
            position_ids=torch.ones_like(ids[:, 1:]), use_cache=True, **{kwarg: cache},
        )  # fmt: skip
    except (TypeError, ValueError):
        return False
    returned = output_cache(out)
    return returned is not None and int(returned.get_seq_length()) == 2


def cache_argument(model: PreTrainedModel, cache: Any) -> dict[str, Any]:
    """``cache`` under the keyword this model takes it by (see :func:`prefix_support`)."""
    support = prefix_support(model)
    if support.kwarg is None:
        raise ValueError(f"this model cannot run after a shared prefix: {support.reason}")
    return {support.kwarg: cache}
