"""Gradient checkpointing of a frozen model's layers that keeps its key/value cache working.

transformers checkpoints a model's layers only in training mode, and then drops their cache
(``use_cache=False``): a checkpointed layer is replayed in the backward pass, and replaying a
layer that appends to a cache would append twice. lrpt keeps the frozen model in eval mode (no
dropout), and its shared prefix reaches the rows *through* that cache, so neither fits.

:func:`checkpointed_layers` instead checkpoints every layer transformers marks as checkpointable
(``GradientCheckpointingLayer``) itself, in any mode, with ``torch.utils.checkpoint``
(non-reentrant): a layer's activations are not kept but recomputed in the backward pass. Before
each run of a layer, first or replayed, any cache it was given is put back into the state it
had when the layer was first called, so the replay appends the same keys and values to the same
prefix and recomputes exactly what the first run computed. Cache updates must replace tensors
(``torch.cat``, as transformers' dynamic caches do), not write into them.

lrpt uses it for the per-row pass only (:class:`~lrpt.model.PromptedModel` with
``gradient_checkpointing=True``): the shared ``[BOS] + prompt`` prefix runs once per batch
without it (its activations are one row's), and its keys and values reach every row through
the cache as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import Cache

try:  # transformers 5.x
    from transformers.modeling_layers import GradientCheckpointingLayer
except ImportError:  # pragma: no cover - every supported release has it
    GradientCheckpointingLayer = ()  # type: ignore[assignment,misc]

Snapshot = list[tuple[Any, dict[str, Any]]]


def checkpointable_layers(model: nn.Module) -> list[nn.Module]:
    """The layers of ``model`` transformers marks as checkpointable (decoder/encoder blocks)."""
    return [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]


@contextmanager
def checkpointed_layers(model: nn.Module) -> Iterator[None]:
    """Within the block, every checkpointable layer of ``model`` runs under activation
    checkpointing whenever gradients are enabled (see the module docstring).

    Raises:
        ValueError: ``model`` has no layer transformers marks as checkpointable.
    """
    layers = checkpointable_layers(model)
    if not layers:
        raise ValueError(
            f"{type(model).__name__} has no layer transformers can checkpoint "
            "(no GradientCheckpointingLayer): gradient checkpointing does not apply to it"
        )
    for layer in layers:  # an instance attribute shadows the class's forward
        layer.__dict__["forward"] = _checkpointed(layer.forward)
    try:
        yield
    finally:
        for layer in layers:
            layer.__dict__.pop("forward", None)


def _checkpointed(forward: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        if not torch.is_grad_enabled():
            return forward(*args, **kwargs)
        caches = [v for v in (*args, *kwargs.values()) if isinstance(v, Cache)]
        before = [state for cache in caches for state in _snapshot(cache)]

        def replay(*args: Any, **kwargs: Any) -> Any:
            _restore(before)
            return forward(*args, **kwargs)

        return checkpoint(replay, *args, use_reentrant=False, **kwargs)

    return run


def _snapshot(obj: Any) -> Snapshot:
    """Each object of a cache (the cache, its layers, caches nested in it) with a copy of its
    attributes (dicts and lists copied one level deep; tensors are replaced on update)."""
    attrs = {
        k: dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v
        for k, v in vars(obj).items()
    }
    out: Snapshot = [(obj, attrs)]
    for value in vars(obj).values():
        if isinstance(value, Cache):
            out += _snapshot(value)
    for layer in getattr(obj, "layers", None) or []:
        if not isinstance(layer, Cache) and hasattr(layer, "__dict__"):
            out += _snapshot(layer)
    return out


def _restore(snapshot: Snapshot) -> None:
    for obj, attrs in snapshot:
        state: dict[str, Any] = obj.__dict__
        state.clear()
        state.update(
            {k: dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v
             for k, v in attrs.items()}
        )  # fmt: skip
