"""PromptedModel: a frozen Hugging Face model with a prompt method attached.

The one place lrpt inserts a prompt, for every method and model family:

* causal LMs: ``[BOS if the row starts with the tokenizer's BOS] + prompt + input (+ target)``;
* seq2seq: the prompt before the encoder's input; the decoder is untouched;
* encoder classifiers: the prompt after ``[CLS]``; the classification head trains too.

Insertion is one gather over ``cat(token_embeddings, prompt_rows)`` that works for left and right
padding alike (real tokens must be contiguous). Prompt rows get attention mask 1, label −100 and
token type 0; causal position ids are recomputed from the new mask so left padding stays correct.
Logits of causal models are returned at the *input* positions (prompt rows removed), so
``logits[b, j]`` always belongs to ``input_ids[b, j]``.

Precision: the frozen model may be float32, bfloat16 or float16 on any device; the method's
tensors stay float32 (master weights) and the prompt rows and input updates are cast to the
embeddings' dtype where they enter the model. An encoder classifier's trainable head is kept in
float32 on a half-precision base (:func:`keep_head_float32`).

Speed: a causal LM asked for the last ``k`` positions' logits (``logits_to_keep``) hands its
head a strided slice of the hidden states; on the CPU a matmul of that non-contiguous input is
7× (float32) to 200× (bfloat16) slower than of the same rows made contiguous, and the head is
the largest matrix of a small model. :func:`contiguous_head_input` makes the head's input
contiguous first (a no-op for an input that already is).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from lrpt.cache_api import prefix_support, sliding_window, window_reason
from lrpt.checkpointing import checkpointed_layers
from lrpt.decoding import greedy
from lrpt.family import Family
from lrpt.labels import IGNORE
from lrpt.methods import InitContext, ModelDims, PromptMethod, make_config, method_class
from lrpt.packed import Prompt, forward_packed, packed_support, prefill_packed
from lrpt.prefix import (
    PrefixState,
    batch_prefix,
    forward_with_prefix,
    prefill_with_prefix,
    prefix_embeds,
    run_prefix,
)

SHARED = "shared prefix: [BOS] + prompt runs once per batch (training) or once per task (inference)"
PACKED = "; packed: one model call, every row's tokens without padding (lrpt.packed)"
PATHS = ("auto", "packed", "shared", "naive")  # see PromptedModel's ``path``
DEFAULT_PATH = "auto"
# What "auto" picks per device type, by measurement (bench/packed_speed.py, side by side in one
# process; a busy 2-core CPU, SmolLM2-135M shape, float32, n = 100, MR-like rows): the packed
# pass took 0.75× / 0.47× the shared prefix's time per training step at 16 / 64 rows and
# 0.70× / 0.35× / 0.47× per inference batch at 16 / 64 / 256 rows. Devices not measured yet
# keep the shared prefix.
AUTO: dict[str, str] = {"cpu": "packed"}

log = logging.getLogger(__name__)
_warned: set[str] = set()  # reasons already logged in this process
_float32_heads: weakref.WeakSet[nn.Module] = weakref.WeakSet()  # see keep_head_float32
_contiguous_heads: weakref.WeakSet[nn.Module] = weakref.WeakSet()  # see contiguous_head_input


class InputEncoder(nn.Module):
    """A frozen encoder model that maps raw texts to pooled ``(B, k)`` vectors (mean pooling).

    Instance-dependent methods (``lopa``, ``idpg``) condition their prompt on this vector.
    """

    def __init__(self, model: PreTrainedModel, tokenizer: Any, *, max_length: int = 128) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.max_length = max_length

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @torch.no_grad()
    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        batch = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length,
            return_tensors="pt",
        ).to(device)  # fmt: skip
        hidden = self.model(**batch).last_hidden_state  # (B, L, k)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B, k)


@dataclass
class Inserted:
    """A batch with the prompt inserted, plus where each input token went."""

    embeds: torch.Tensor  # (B, L + n, d)
    attention_mask: torch.Tensor  # (B, L + n)
    labels: torch.Tensor | None  # (B, L + n) for causal LMs, else the caller's labels
    position_ids: torch.Tensor  # (B, L + n)
    token_positions: torch.Tensor  # (B, L): new index of input token j
    extra: dict[str, torch.Tensor]  # other per-token tensors, e.g. token_type_ids


@dataclass(frozen=True)
class AfterPrefix:
    """The part of a batch that runs after a shared ``[BOS] + prompt`` prefix (see
    :meth:`PromptedModel.after_prefix` and :func:`lrpt.prefix.forward_with_prefix`)."""

    embeds: torch.Tensor  # (B, L, d) token embeddings, with the method's input update
    rest_mask: torch.Tensor  # (B, L) attention mask with each row's lead BOS masked out
    lead_cols: torch.Tensor  # (B, L) bool, the lead BOS's column: its logits come from the prefix
    labels: torch.Tensor | None  # (B, L) with the lead BOS's label set to −100, or None
    with_lead: bool  # whether the rows start with the lead BOS (all of them, or none)


def family_of(model: PreTrainedModel) -> Family:
    """``CAUSAL``, ``SEQ2SEQ`` or ``ENCODER`` from the model's config and class."""
    if getattr(model.config, "is_encoder_decoder", False):
        return Family.SEQ2SEQ
    if model.can_generate():
        return Family.CAUSAL
    return Family.ENCODER


def lead_token_id(tokenizer: Any) -> int | None:
    """The special token the tokenizer puts first (BOS / CLS), or None if it adds none."""
    with_special = tokenizer("a")["input_ids"]
    without = tokenizer("a", add_special_tokens=False)["input_ids"]
    if len(with_special) > len(without) and with_special[0] != without[0]:
        return int(with_special[0])
    return None


class PromptedModel(nn.Module):
    """A frozen ``model`` whose inputs get the prompt of ``method``.

    Args:
        model: a Hugging Face causal LM, seq2seq LM or sequence-classification encoder.
        tokenizer: its tokenizer (used to find the BOS/CLS token and for decoding).
        method: the prompt method (see :mod:`lrpt.methods`).
        encoder: the input encoder an instance-dependent method conditions on.
        share_prefix: for static methods on causal LMs, run ``[BOS] + prompt`` once per batch
            (training) or once per task (inference) and share its keys/values across rows
            (see :mod:`lrpt.prefix`); ``False`` runs the prompt with every row (as ``path``
            ``"naive"``).
        path: how a shared prompt runs: ``"shared"`` (the prefix runs alone, then the rows,
            padded, after its cached keys/values: :mod:`lrpt.prefix`), ``"packed"`` (one model
            call over the prompt once and every row's tokens without padding:
            :mod:`lrpt.packed`), ``"auto"`` (the default: the faster of those two on the
            model's device type as measured, ``AUTO``) or ``"naive"`` (the prompt inside every
            row). A path the model or a batch cannot take falls back to the next (packed →
            shared → naive), logged once per reason.
        gradient_checkpointing: when gradients are enabled, recompute the frozen model's layer
            activations in the backward pass instead of keeping them (the per-row pass only;
            a shared prefix still runs once per batch, see :mod:`lrpt.checkpointing`; a packed
            pass is checkpointed whole, prompt included).

    Raises:
        ValueError: embedding-size mismatch, or an instance-dependent method without encoder.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: Any,
        method: PromptMethod,
        *,
        encoder: InputEncoder | None = None,
        share_prefix: bool = True,
        path: str = DEFAULT_PATH,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if path not in PATHS:
            raise ValueError(f"unknown prompt path {path!r}: expected one of {', '.join(PATHS)}")
        d = embedding_weight(model).shape[1]
        if method.dims.embed_dim != d:
            raise ValueError(
                f"method {method.key!r} was built for embedding size {method.dims.embed_dim}, "
                f"but the model's embeddings have size {d}"
            )
        if not method.static:
            if encoder is None:
                raise ValueError(f"method {method.key!r} is instance-dependent: pass encoder=")
            if encoder.dim != method.dims.encoder_dim:
                raise ValueError(
                    f"method {method.key!r} was built for encoder size {method.dims.encoder_dim}, "
                    f"but the encoder's hidden size is {encoder.dim}"
                )
        self.model = model.requires_grad_(False)
        self.tokenizer = tokenizer
        self.method = method
        self.encoder = encoder
        self.family = family_of(model)
        self.lead_id = lead_token_id(tokenizer)
        self.share_prefix = share_prefix
        self.path = path
        self.gradient_checkpointing = gradient_checkpointing
        self._prefix_cache: dict[bool, tuple[tuple, PrefixState]] = {}
        for param in self.head_parameters():
            param.requires_grad_(True)
        if self.family == Family.ENCODER and embedding_weight(model).dtype != torch.float32:
            keep_head_float32(model)
        if self.family == Family.CAUSAL:
            contiguous_head_input(model)

    # ----------------------------------------------------------------- parameters
    def head_parameters(self) -> list[nn.Parameter]:
        """The classification head of an encoder model (trainable); empty for LMs."""
        if self.family != Family.ENCODER:
            return []
        base = {id(p) for p in self.model.base_model.parameters()}
        return [p for p in self.model.parameters() if id(p) not in base]

    def named_head_parameters(self) -> dict[str, nn.Parameter]:
        head = {id(p) for p in self.head_parameters()}
        if not head:
            return {}
        return {n: p for n, p in self.model.named_parameters() if id(p) in head}

    def num_trainable(self) -> dict[str, int]:
        """Trainable parameters: the method's and the head's, counted separately."""
        return {
            "method": self.method.num_trainable(),
            "head": sum(p.numel() for p in self.head_parameters()),
        }

    def param_groups(self, lr: float, head_lr: float | None = None) -> list[dict[str, Any]]:
        """The method's optimizer groups plus one for the head (at ``head_lr`` or ``lr``)."""
        groups = self.method.param_groups(lr)
        head = self.head_parameters()
        if head:
            groups.append({"params": head, "lr": head_lr if head_lr is not None else lr})
        return groups

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Every trainable tensor: ``method.<name>`` and ``head.<name>``."""
        state = {f"method.{n}": p for n, p in self.method.named_parameters() if p.requires_grad}
        state |= {f"head.{n}": p for n, p in self.named_head_parameters().items()}
        return {k: v.detach() for k, v in state.items()}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load tensors saved by :meth:`trainable_state_dict` (names and shapes must match)."""
        own = self.trainable_state_dict()
        if set(own) != set(state):
            missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
            raise ValueError(f"trainable tensors differ: missing {missing}, unexpected {extra}")
        params = dict(self.method.named_parameters())
        params |= {f"head.{n}": p for n, p in self.named_head_parameters().items()}
        with torch.no_grad():
            for name, value in state.items():
                target = (
                    params[name.removeprefix("method.")]
                    if name.startswith("method.")
                    else (params[name])
                )
                if tuple(value.shape) != tuple(target.shape):
                    raise ValueError(
                        f"tensor {name!r} has shape {tuple(value.shape)}, "
                        f"expected {tuple(target.shape)}"
                    )
                target.copy_(value)

    # ----------------------------------------------------------------- insertion
    def condition(
        self,
        input_ids: torch.Tensor,
        texts: Sequence[str] | None,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """The ``(B, k)`` input-encoder output an instance-dependent method needs, else None.

        Without ``texts`` the input is decoded from ``input_ids``, leaving out target tokens
        (causal ``labels`` ≠ −100), which the encoder must not see.
        """
        if self.method.static:
            return None
        assert self.encoder is not None  # checked in __init__
        if texts is None:
            keep = labels == IGNORE if labels is not None and self.family == Family.CAUSAL else None
            texts = [
                self.tokenizer.decode(row if keep is None else row[keep[i]],
                                      skip_special_tokens=True)
                for i, row in enumerate(input_ids)
            ]  # fmt: skip
        if len(texts) != input_ids.shape[0]:
            raise ValueError(f"got {len(texts)} texts for a batch of {input_ids.shape[0]} rows")
        return self.encoder(texts)

    def prompt_rows(
        self,
        input_ids: torch.Tensor,
        texts: Sequence[str] | None = None,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The prompt for this batch: ``(1, n, d)`` (static) or ``(B, n, d)``."""
        return self.method.prompt(input_ids.shape[0], self.condition(input_ids, texts, labels))

    def insert(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        *,
        texts: Sequence[str] | None = None,
        prompt: torch.Tensor | None = None,
        **per_token: torch.Tensor | None,
    ) -> Inserted:
        """Embed ``input_ids`` and insert the prompt (see the module docstring)."""
        if input_ids.dim() != 2:
            raise ValueError(
                f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}"
            )
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if prompt is None:
            prompt = self.prompt_rows(input_ids, texts, labels)
        B, L = input_ids.shape
        n = prompt.shape[1]
        start, lead = self._layout(input_ids, attention_mask)
        if labels is not None and self.family == Family.CAUSAL:
            labels = self._ignore_lead(labels, start, lead)
        embeds = self.embed_input(input_ids, attention_mask, start, lead, labels)

        begin = (start + lead)[:, None]  # (B, 1) where the prompt starts
        t = torch.arange(L + n, device=input_ids.device)[None]  # (1, L + n)
        rel = t - begin
        src = torch.where(rel < 0, t, torch.where(rel < n, L + rel, t - n))  # (B, L + n)
        j = torch.arange(L, device=input_ids.device)[None]
        token_positions = j + n * (j >= begin)  # (B, L)

        rows = prompt.to(embeds.dtype).expand(B, n, -1)  # (B, n, d)
        new_embeds = torch.cat([embeds, rows], 1).gather(
            1, src[..., None].expand(-1, -1, embeds.shape[-1])
        )
        new_mask = _gather_tokens(attention_mask, src, n, 1)
        new_labels = labels
        if labels is not None and self.family == Family.CAUSAL:
            new_labels = _gather_tokens(labels, src, n, IGNORE)
        extra = {k: _gather_tokens(v, src, n, 0) for k, v in per_token.items() if v is not None}
        position_ids = (new_mask.long().cumsum(1) - 1).clamp(min=0)
        return Inserted(new_embeds, new_mask, new_labels, position_ids, token_positions, extra)

    def _layout(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per row: index of the first real token ``(B,)`` and 1 if it is the lead BOS/CLS."""
        L = input_ids.shape[1]
        start = (attention_mask.long().cumsum(1) == 0).sum(1)  # (B,)
        lead = torch.zeros_like(start)
        if self.lead_id is not None:
            first = input_ids.gather(1, start.clamp(max=L - 1)[:, None]).squeeze(1)
            lead = ((first == self.lead_id) & (start < L)).long()
        return start, lead

    @staticmethod
    def _ignore_lead(labels: torch.Tensor, start: torch.Tensor, lead: torch.Tensor) -> torch.Tensor:
        """Labels with the lead token's set to −100: no model predicts its own BOS."""
        cols = torch.arange(labels.shape[1], device=labels.device)[None]
        return labels.masked_fill((cols == start[:, None]) & (lead[:, None] > 0), IGNORE)

    def embed_input(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        start: torch.Tensor,
        lead: torch.Tensor,
        labels: torch.Tensor | None,
    ) -> torch.Tensor:
        """Token embeddings ``(B, L, d)`` plus the method's input update, if it has one."""
        embeds = self.model.get_input_embeddings()(input_ids)  # (B, L, d)
        causal_labels = labels if self.family == Family.CAUSAL else None
        positions = self._input_positions(attention_mask.long(), start, lead, causal_labels)
        update = self.method.input_update(positions)
        if update is not None:
            embeds = embeds + update.to(embeds.dtype)
        return embeds

    @staticmethod
    def _input_positions(
        mask: torch.Tensor, start: torch.Tensor, lead: torch.Tensor, labels: torch.Tensor | None
    ) -> torch.Tensor:
        """Each token's index inside its own unpadded input (lead token excluded); −1 for pads,
        the lead token and target tokens (labels ≠ −100), which get no input update."""
        pos = mask.cumsum(1) - 1 - lead[:, None]  # (B, L)
        keep = (mask > 0) & (pos >= 0)
        if labels is not None:
            keep &= labels == IGNORE
        return torch.where(keep, pos, torch.full_like(pos, -1))

    # ----------------------------------------------------------------- running
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        *,
        texts: Sequence[str] | None = None,
        token_type_ids: torch.Tensor | None = None,
        logits_to_keep: int = 0,
        **model_kwargs: Any,
    ) -> Any:
        """Run the frozen model on the prompted batch; returns the model's output (loss, logits).

        ``logits_to_keep=k > 0`` (causal LMs) computes only the last ``k`` positions' logits,
        which are input positions whenever rows are left-padded.
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None and not model_kwargs and self._may_share():
            rest = self.after_prefix(input_ids, attention_mask, labels)
            route = self._route(rest) if rest is not None else None
            if rest is not None and route is not None:
                with self._checkpointing():
                    return self._after_prefix_forward(route, rest, logits_to_keep)
        ins = self.insert(
            input_ids, attention_mask, labels, texts=texts, token_type_ids=token_type_ids
        )
        kwargs: dict[str, Any] = {"inputs_embeds": ins.embeds, "attention_mask": ins.attention_mask}
        kwargs |= ins.extra | model_kwargs
        if ins.labels is not None:
            kwargs["labels"] = ins.labels
        if self.family == Family.CAUSAL:
            kwargs["position_ids"] = ins.position_ids
            if logits_to_keep:
                kwargs["logits_to_keep"] = logits_to_keep
        with self._checkpointing():
            out = self.model(**kwargs)
        if self.family == Family.CAUSAL and not logits_to_keep:
            index = ins.token_positions[..., None].expand(-1, -1, out.logits.shape[-1])
            out.logits = out.logits.gather(1, index)  # (B, L, V): input positions only
        return out

    def _checkpointing(self) -> AbstractContextManager[None]:
        """The frozen model's layers under gradient checkpointing, when it is on and gradients
        are enabled; else nothing."""
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return checkpointed_layers(self.model)
        return nullcontext()

    # ----------------------------------------------------------------- shared prefix
    def shares_prefix(self) -> bool:
        """Whether this model runs the prompt once per batch/task in every batch (see
        ``share_prefix`` and ``path``).

        When it cannot although ``share_prefix`` asks for it, logs a warning saying why, once
        per reason and process.
        """
        reason = self.unshared_reason()
        if reason is not None and self._may_share():
            say_once(logging.WARNING, "the prompt runs with every row, not as a shared prefix",
                      reason)  # fmt: skip
        return reason is None

    def unshared_reason(self) -> str | None:
        """None when the prompt runs as a shared prefix in every batch; else why (or in which
        batches) it runs with every row."""
        return self._model_reason() or window_reason(self.model.config)

    def _model_reason(self) -> str | None:
        """Why the prompt cannot run as a shared prefix in any batch on this model, or None."""
        if not self.share_prefix:
            return "turned off (share_prefix=False)"
        if self.path == "naive":
            return "turned off (path='naive')"
        if self.family != Family.CAUSAL:
            return f"a {self.family} model: the prompt is part of the encoder's input"
        if not self.method.static:
            return f"method {self.method.key!r} is instance-dependent: each row has its own prompt"
        support = prefix_support(self.model)
        return None if support.ok else support.reason

    def _may_share(self) -> bool:
        """Whether some batches share the prompt (logs why not, once, when none does)."""
        reason = self._model_reason()
        if reason is not None and self.share_prefix and self.path != "naive":
            say_once(logging.WARNING, "the prompt runs with every row, not as a shared prefix",
                      reason)  # fmt: skip
        return reason is None

    def sharing(self) -> str:
        """``"packed"`` or ``"shared"``: how a shared prompt runs on this model (see ``path``
        and :func:`sharing`)."""
        return sharing(self.model, self.path)

    def _route(self, rest: AfterPrefix, new_tokens: int = 0) -> str | None:
        """How this batch shares its prompt (:meth:`sharing`), or None when a row with its
        prompt (and ``new_tokens``) overruns the model's sliding window: then it runs naive."""
        route = self.sharing()
        if sliding_window(self.model.config) is None:
            return route
        width = rest.rest_mask.sum(1).max() if route == "packed" else rest.rest_mask.shape[1]
        span = self.method.num_tokens + int(rest.with_lead) + int(width) + new_tokens
        reason = window_reason(self.model.config, span)
        if reason is None:
            return route
        say_once(logging.WARNING, "the prompt runs with every row, not as a shared prefix", reason)
        return None

    def prefix_path(self) -> str:
        """Which path the prompt takes, in words (for run summaries and ``results.json``)."""
        reason = self._model_reason()
        if reason is not None:
            return f"every row (no shared prefix: {reason})"
        text = SHARED + (PACKED if self.sharing() == "packed" else "")
        window = window_reason(self.model.config)
        return text if window is None else f"{text}; every row {window}"

    def _after_prefix_forward(
        self, route: str, rest: AfterPrefix, logits_to_keep: int
    ) -> CausalLMOutputWithPast:
        """The batch after its shared prompt, on ``route`` (packed or shared)."""
        rows = torch.zeros(rest.embeds.shape[0], dtype=torch.long, device=rest.embeds.device)
        if route == "packed":
            prompt = self._packed_prompt(rest.with_lead)
            return forward_packed(
                self.model, rest.embeds, rest.rest_mask, rest.lead_cols, rows, [prompt],
                rest.labels, logits_to_keep,
            )  # fmt: skip
        prefix = batch_prefix([self.prefix_state(rest.with_lead)], rows, self.model.config)
        return forward_with_prefix(
            self.model, rest.embeds, rest.rest_mask, rest.lead_cols, prefix, rest.labels,
            logits_to_keep,
        )  # fmt: skip

    def _packed_prompt(self, with_lead: bool) -> Prompt:
        """The prompt of a packed pass: its embeddings, to run inside the pass, while it trains;
        else its cached prefix."""
        if self._trains_prompt():
            lead_id = self.lead_id if with_lead else None
            return prefix_embeds(self.model, self.method.prompt(1), lead_id)
        return self.prefix_state(with_lead)

    def _trains_prompt(self) -> bool:
        return torch.is_grad_enabled() and any(p.requires_grad for p in self.method.parameters())

    def prefix_state(self, with_lead: bool) -> PrefixState:
        """``[BOS] + prompt`` run once: with its graph while training, else cached per task
        until the prompt's parameters change (in-place optimizer steps bump their versions)."""
        lead_id = self.lead_id if with_lead else None
        if self._trains_prompt():
            return run_prefix(self.model, self.method.prompt(1), lead_id)
        weight = self.model.get_input_embeddings().weight
        tensors = [*self.method.parameters(), *self.method.buffers()]
        versions = tuple((id(t), _version(t)) for t in tensors)
        key = (weight.device, weight.dtype, self.training, versions)
        cached = self._prefix_cache.get(with_lead)
        if cached is None or cached[0] != key:
            with torch.no_grad():
                cached = (key, run_prefix(self.model, self.method.prompt(1), lead_id))
            self._prefix_cache[with_lead] = cached
        return cached[1]

    def after_prefix(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> AfterPrefix | None:
        """The input part of a batch that follows the shared ``[BOS] + prompt`` prefix of
        :meth:`prefix_state` (see :class:`AfterPrefix`).

        Args:
            input_ids: ``(B, L)`` token ids, left- or right-padded.
            attention_mask: ``(B, L)``, 1 on real tokens.
            labels: ``(B, L)`` causal-LM labels (−100 where no loss), or None.

        Returns:
            ``None`` when some rows start with the lead BOS and others do not (no single prefix
            fits them all), else what runs after the prefix.
        """
        start, lead = self._layout(input_ids, attention_mask)
        with_lead = bool(lead.any())
        if with_lead and not bool(lead.all()):
            return None
        if labels is not None:
            labels = self._ignore_lead(labels, start, lead)
        embeds = self.embed_input(input_ids, attention_mask, start, lead, labels)
        cols = torch.arange(input_ids.shape[1], device=input_ids.device)[None]
        lead_cols = (cols == start[:, None]) & (lead[:, None] > 0)
        rest_mask = attention_mask.long().masked_fill(lead_cols, 0)
        return AfterPrefix(embeds, rest_mask, lead_cols, labels, with_lead)

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        texts: Sequence[str] | None = None,
        **generate_kwargs: Any,
    ) -> torch.Tensor:
        """Generate with the prompt; returns only the new tokens ``(B, T)`` (both LM families).

        Causal batches must be left-padded (as for any decoder-only generation).
        """
        if self.family == Family.ENCODER:
            raise ValueError("generate needs a causal or seq2seq model; this is an encoder")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if self.family == Family.CAUSAL and bool((attention_mask[:, -1] == 0).any()):
            raise ValueError("generate with a causal model needs left padding (pads first)")
        greedy = set(generate_kwargs) <= {"max_new_tokens", "do_sample", "eos_token_id"}
        greedy &= "max_new_tokens" in generate_kwargs and not generate_kwargs.get("do_sample")
        if greedy and self._may_share():
            rest = self.after_prefix(input_ids, attention_mask)
            steps = generate_kwargs["max_new_tokens"]
            route = self._route(rest, steps) if rest is not None else None
            if rest is not None and route is not None:
                eos = generate_kwargs.get("eos_token_id", self.model.generation_config.eos_token_id)
                return self._greedy(route, rest, steps, eos)
        ins = self.insert(input_ids, attention_mask, texts=texts)
        generate_kwargs.setdefault("pad_token_id", self.tokenizer.pad_token_id)
        return self.model.generate(  # type: ignore[operator]  # generation models have it
            inputs_embeds=ins.embeds, attention_mask=ins.attention_mask, **generate_kwargs
        )

    def _greedy(
        self, route: str, rest: AfterPrefix, max_new_tokens: int, eos: int | list[int] | None
    ) -> torch.Tensor:
        """Greedy decoding after the task's cached prefix (:func:`lrpt.decoding.greedy`), the
        batch prefilled on ``route`` (packed or shared)."""
        rows = torch.zeros(rest.embeds.shape[0], dtype=torch.long, device=rest.embeds.device)
        state = self.prefix_state(rest.with_lead)
        if route == "packed":
            running = prefill_packed(
                self.model, rest.embeds, rest.rest_mask, rest.lead_cols, rows, [state]
            )
        else:
            prefix = batch_prefix([state], rows, self.model.config)
            running = prefill_with_prefix(
                self.model, rest.embeds, rest.rest_mask, rest.lead_cols, prefix
            )
        return greedy(self.model, running, max_new_tokens, eos, self.tokenizer.pad_token_id)


def sharing(model: PreTrainedModel, path: str) -> str:
    """``"packed"`` or ``"shared"``: how a shared prompt runs on ``model`` on ``path``
    (``"auto"``: as ``AUTO`` says for the model's device type). A packed path the model does
    not take is logged once, with why (a warning where ``"packed"`` was asked for by name)."""
    if path == "auto":
        path = AUTO.get(embedding_weight(model).device.type, "shared")
    if path == "packed":
        support = packed_support(model)
        if support.ok:
            return "packed"
        say_once(logging.WARNING, "the prompt runs as a shared prefix, not packed", support.reason)
    return "shared"


def say_once(level: int, what: str, reason: str) -> None:
    """Log ``lrpt: <what>: <reason>`` at ``level``, once per reason and process."""
    if reason not in _warned:
        _warned.add(reason)
        log.log(level, "lrpt: %s: %s", what, reason)


def keep_head_float32(model: PreTrainedModel) -> None:
    """Keep an encoder classifier's head (the modules outside its base model, which train) in
    float32 on a half-precision base: its weights are master weights like the prompt's, and what
    enters it is cast to float32, so its logits are float32 too. Idempotent."""
    base = model.base_model
    for module in model.children():
        if module is base or next(module.parameters(), None) is None:
            continue
        module.float()
        if module not in _float32_heads:
            module.register_forward_pre_hook(_float32_inputs, with_kwargs=True)
            _float32_heads.add(module)


def contiguous_head_input(model: PreTrainedModel) -> None:
    """Make the hidden states that enter a causal LM's vocabulary head contiguous (see the
    module docstring: ``logits_to_keep`` slices them). Idempotent; the values are unchanged."""
    head = model.get_output_embeddings()
    if isinstance(head, nn.Module) and head not in _contiguous_heads:
        head.register_forward_pre_hook(_contiguous_inputs)
        _contiguous_heads.add(head)


def _contiguous_inputs(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(a.contiguous() if isinstance(a, torch.Tensor) else a for a in args)


def _float32_inputs(
    module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    def cast(value: Any) -> Any:
        is_float = isinstance(value, torch.Tensor) and value.is_floating_point()
        return value.float() if is_float else value

    return tuple(cast(a) for a in args), {k: cast(v) for k, v in kwargs.items()}


def _version(tensor: torch.Tensor) -> int:
    """The tensor's in-place modification counter; −1 for inference tensors, which have none
    (and cannot be modified outside inference mode)."""
    try:
        return tensor._version
    except RuntimeError:
        return -1


def _gather_tokens(values: torch.Tensor, src: torch.Tensor, n: int, fill: int) -> torch.Tensor:
    """Per-token ``values (B, L)`` laid out like the prompted sequence, ``fill`` on prompt rows."""
    pad = torch.full((values.shape[0], n), fill, dtype=values.dtype, device=values.device)
    return torch.cat([values, pad], 1).gather(1, src)


def embedding_weight(model: PreTrainedModel) -> torch.Tensor:
    """``model``'s input-embedding matrix ``(V, d)``."""
    weight = model.get_input_embeddings().weight
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"the model's input embeddings have no weight tensor: {type(weight)}")
    return weight


def model_dims(model: PreTrainedModel, encoder: InputEncoder | None = None) -> ModelDims:
    """The dims a method needs from ``model`` (and the input encoder, if any)."""
    d = int(embedding_weight(model).shape[1])
    return ModelDims(embed_dim=d, encoder_dim=encoder.dim if encoder is not None else None)


def build_method(
    key: str,
    model: PreTrainedModel,
    tokenizer: Any = None,
    *,
    encoder: InputEncoder | None = None,
    seed: int = 0,
    embedding_dtype: torch.dtype | None = None,
    **options: Any,
) -> PromptMethod:
    """Build and initialise method ``key`` for ``model`` (initialisation seeded by ``seed``,
    which the method records as its ``init_seed``).

    The method is built and initialised on the CPU in float32 with a CPU generator (the same
    seed gives the same tensors on every device), then moved to the model's device; its
    tensors stay float32 whatever the model's dtype. ``embedding_dtype``: see
    :class:`~lrpt.methods.InitContext`.
    """
    cls = method_class(key)
    with torch.device("cpu"):
        method = cls(make_config(key, **options), model_dims(model, encoder))
    ctx = InitContext(
        embedding=model.get_input_embeddings(),
        generator=torch.Generator(device="cpu").manual_seed(seed),
        tokenizer=tokenizer,
        embedding_dtype=embedding_dtype,
    )
    with torch.device("cpu"):
        method.init_weights(ctx)  # records seed as method.init_seed
    return method.to(ctx.weight.device)


def prompt_model(
    key: str,
    model: PreTrainedModel,
    tokenizer: Any,
    *,
    encoder: InputEncoder | None = None,
    seed: int = 0,
    share_prefix: bool = True,
    path: str = DEFAULT_PATH,
    gradient_checkpointing: bool = False,
    **options: Any,
) -> PromptedModel:
    """Attach a new method ``key`` (config from ``options``) to a frozen ``model``."""
    method = build_method(key, model, tokenizer, encoder=encoder, seed=seed, **options)
    return PromptedModel(
        model, tokenizer, method, encoder=encoder, share_prefix=share_prefix, path=path,
        gradient_checkpointing=gradient_checkpointing,
    )  # fmt: skip
