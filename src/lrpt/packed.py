"""The packed pass: one call of a frozen causal LM for a whole batch, every prompt in it once.

Layout (batch dimension 1): first the positions of each distinct prompt that runs in the pass
(``[BOS] + prompt``, position ids ``0 … P − 1``), then every row's real tokens back to back with
no padding, the rows grouped by prompt, each row's position ids restarting at its prompt's length
``P`` (the positions the prompt's insertion gives them, see :mod:`lrpt.model`). A row's tokens
attend to all of its own prompt's positions and causally to its own row; a prompt's positions
attend causally to themselves. The prompt's positions run inside the pass when gradients must
reach the prompt (training: every row's gradient flows into them in the same backward); at
inference they come from the prompt's cached prefix (:class:`~lrpt.prefix.PrefixState`), so the
pass holds the rows only.

Mechanism: transformers' attention-function registry, so no model code is copied.
:func:`packed_attention` is registered as ``"lrpt_packed"``; the layout (:class:`Packing`) reaches
every attention layer as a keyword argument that transformers models hand down, and an attention
module handed one runs the packed implementation (a hook switches it, also when gradient
checkpointing replays the module in the backward pass). For the one call the model's own
implementation is switched too, so that it builds no mask: the registry gives an implementation
it does not know none, and nothing in the pass is quadratic in its length (a dense 4-D mask over
the packed sequence is: measured in ``bench/packed_speed.py --dense``). Rows are padded to the
longest row in attention only; every other layer sees no padding. Two kernels (``KERNELS``):
``"sdpa"`` runs every row at once in one fused ``scaled_dot_product_attention`` call, its
prompt's keys/values gathered to it inside attention (views for a one-prompt batch, so the cost
does not grow with the number of prompts); ``"matmul"`` multiplies, per prompt, the queries of
its rows by its keys once, without ``B × P`` copies, and joins that to each row's own causal
attention in one softmax.

A model takes the packed pass only if a short probe on first use gives the logits its own
attention gives (:func:`packed_support`), and a batch only if every row's prompt and tokens fit
in the model's sliding window, if it has one (:func:`lrpt.cache_api.window_reason`).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import torch
import torch.nn.functional as F
from transformers import AttentionInterface, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from lrpt.decoding import Running
from lrpt.labels import IGNORE
from lrpt.prefix import PrefixState, prefix_rows

PACKED = "lrpt_packed"  # the name of :func:`packed_attention` in transformers' registry
# How the rows attend, per device type: "sdpa" (every row at once, its prompt's keys/values
# gathered to it inside attention, one fused scaled_dot_product_attention call with a mask) or
# "matmul" (per prompt, no copies: one matmul of its rows' queries by its keys, a batched matmul
# per row's own keys, a joint softmax). Measured on a busy 2-core CPU (SmolLM2-135M shape,
# float32): one layer's attention forward + backward at 16 / 64 / 256 rows, sdpa 1.7× / 1.7× /
# 2.8× faster; a whole training step at 16 rows, sdpa 0.62× matmul's time (inference: 0.94×).
# CUDA keeps the copy-free kernel until bench/gpu_check.sh has measured both there.
KERNELS: dict[str, str] = {"cpu": "sdpa", "cuda": "matmul"}
UNSUPPORTED = ("softcap", "s_aux", "sinks")  # attention keywords the packed pass cannot follow


class PackedUnsupported(RuntimeError):
    """The model asked the packed attention for something it cannot do (e.g. logit soft-capping)."""


@dataclass(frozen=True)
class Rows:
    """Rows of the pass padded to the longest of them (in attention only), in pass order."""

    index: torch.Tensor  # (R, W): pass position of each row's j-th token (its first if j ≥ length)
    valid: torch.Tensor  # (R, W) bool: j < the row's length
    allowed: torch.Tensor  # (R, 1, W, W) bool: the row's query j may attend to its key i
    mask: torch.Tensor | None  # "sdpa": (R, 1, W, P_max + W) bool, its prompt's slots and its own
    source: torch.Tensor | None  # "sdpa": (R, P_max + W) where its keys come from (_rows_sdpa)


@dataclass(frozen=True)
class Group:
    """One distinct prompt of a packed batch (and, for the "matmul" kernel, its rows)."""

    length: int  # P: the prompt's positions, lead BOS included
    block: int | None  # where its positions start in the pass; None: from ``state``
    state: PrefixState | None  # its cached keys/values (when ``block`` is None)
    rows: Rows | None  # "matmul": the rows that use it


@dataclass
class Packing:
    """What :func:`packed_attention` needs to know about the pass (the same for every layer)."""

    groups: list[Group]
    span: int  # the longest prompt + row, in positions (checked against a sliding window)
    rows: Rows | None = None  # "sdpa": every row of the pass
    keep: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # per layer, when recording
    calls: int = 0  # attention layers run (the probe checks that every layer ran here)


def packed_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    lrpt_packing: Packing | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention over a packed pass (see the module docstring): ``query (1, H, T, dh)``,
    ``key``/``value (1, H_kv, T, dh)`` → ``(1, T, H, dh)``."""
    if lrpt_packing is None:
        raise PackedUnsupported(
            "the packed attention was called without its layout: the model does not hand "
            "keyword arguments down to its attention layers"
        )
    used = [name for name in UNSUPPORTED if kwargs.get(name) is not None]
    if used:
        raise PackedUnsupported(f"the model's attention uses {', '.join(used)}")
    window = kwargs.get("sliding_window")
    if window is not None and lrpt_packing.span > int(window):
        raise PackedUnsupported(f"a row does not fit in the sliding window ({window})")
    lrpt_packing.calls += 1
    q, k, v = query[0], key[0], value[0]
    scale = scaling if scaling is not None else q.shape[-1] ** -0.5
    if lrpt_packing.keep is not None:
        lrpt_packing.keep.append((k, v))
    layer = int(getattr(module, "layer_idx", 0))
    groups = lrpt_packing.groups
    parts = [_block(q, k, v, g, scale) for g in groups if g.block is not None]
    if lrpt_packing.rows is not None:
        prompts = [_prompt_kv(k, v, g, layer) for g in groups]
        parts.append(_rows_sdpa(q, k, v, prompts, lrpt_packing.rows, scale, dropout))
    for g in groups:
        if g.rows is not None:
            pk, pv = _prompt_kv(k, v, g, layer)
            parts.append(_rows_matmul(q, k, v, pk, pv, g.rows, scale, dropout))
    return torch.cat(parts)[None], None


def _prompt_kv(
    k: torch.Tensor, v: torch.Tensor, g: Group, layer: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The keys and values ``(H_kv, P, dh)`` of a group's prompt: in the pass, or cached."""
    if g.block is not None:
        part = slice(g.block, g.block + g.length)
        return k[:, part], v[:, part]
    assert g.state is not None
    return g.state.keys[layer][0], g.state.values[layer][0]


def _block(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: Group, scale: float
) -> torch.Tensor:
    """A prompt's own positions, causal among themselves → ``(P, H, dh)``."""
    assert g.block is not None
    part = slice(g.block, g.block + g.length)
    out = F.scaled_dot_product_attention(
        q[None, :, part], k[None, :, part], v[None, :, part], is_causal=True, scale=scale,
        enable_gqa=True,
    )  # fmt: skip
    return out[0].transpose(0, 1)


def _rows_sdpa(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
    prompts: list[tuple[torch.Tensor, torch.Tensor]], r: Rows, scale: float, dropout: float,
) -> torch.Tensor:  # fmt: skip
    """Every row at once: its prompt's keys (left-padded to the longest prompt), then its own
    keys causally → ``(N, H, dh)``. Each row's keys are gathered in one index from the prompts'
    (each left-padded) followed by the pass's, so many prompts cost what one does."""
    assert r.source is not None and r.mask is not None
    if r.index.shape[1] == 0:
        return q.new_zeros(0, q.shape[0], q.shape[2])
    longest = r.mask.shape[-1] - r.index.shape[1]
    pk = torch.cat([*(F.pad(x, (0, 0, longest - x.shape[1], 0)) for x, _ in prompts), k], 1)
    pv = torch.cat([*(F.pad(x, (0, 0, longest - x.shape[1], 0)) for _, x in prompts), v], 1)
    keys, values = pk[:, r.source].transpose(0, 1), pv[:, r.source].transpose(0, 1)
    out = F.scaled_dot_product_attention(
        q[:, r.index].transpose(0, 1), keys, values, attn_mask=r.mask, dropout_p=dropout,
        scale=scale, enable_gqa=True,
    )  # fmt: skip  # (R, H, W, dh)
    return out.transpose(1, 2)[r.valid]


def _rows_matmul(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pk: torch.Tensor, pv: torch.Tensor,
    r: Rows, scale: float, dropout: float,
) -> torch.Tensor:  # fmt: skip
    """One prompt's rows without copies of its keys/values ``pk``/``pv (H_kv, P, dh)``: one
    matmul of all its rows' queries by them, a batched matmul per row's own keys, a joint
    softmax → ``(N, H, dh)``."""
    rows, width = r.index.shape
    heads, kv_heads, dh = q.shape[0], k.shape[0], q.shape[2]
    if width == 0:
        return q.new_zeros(0, heads, dh)
    group, size = heads // kv_heads, pk.shape[1]
    # queries (H_kv, R, group·W, dh): a row's queries of every head sharing a key head together
    qr = q.view(kv_heads, group, -1, dh)[:, :, r.index].transpose(1, 2)
    qr = qr.reshape(kv_heads, rows, group * width, dh)
    kr, vr = k[:, r.index], v[:, r.index]  # (H_kv, R, W, dh)
    to_prompt = qr.view(kv_heads, -1, dh) @ pk.transpose(1, 2)  # (H_kv, R·group·W, P)
    own = (qr @ kr.transpose(2, 3)).view(kv_heads, rows, group, width, width)
    own = own.masked_fill(~r.allowed, -math.inf)
    scores = torch.cat([to_prompt.view(kv_heads, rows, group * width, size),
                        own.view(kv_heads, rows, group * width, width)], -1)  # fmt: skip
    probs = (scores * scale).softmax(-1, dtype=torch.float32).to(q.dtype)
    if dropout:
        probs = F.dropout(probs, dropout, training=True)
    out = probs[..., :size].reshape(kv_heads, -1, size) @ pv  # (H_kv, R·group·W, dh)
    out = out.view(kv_heads, rows, group * width, dh) + probs[..., size:] @ vr
    out = out.view(kv_heads, rows, group, width, dh).permute(1, 3, 0, 2, 4)
    return out.reshape(rows, width, heads, dh)[r.valid]


AttentionInterface.register(PACKED, packed_attention)


@contextmanager
def packed_attention_on(model: PreTrainedModel, *, whole: bool = True) -> Iterator[None]:
    """Every attention module of ``model`` switches to :func:`packed_attention` whenever it is
    handed a layout, also when gradient checkpointing replays it in the backward pass; and,
    with ``whole``, within the block the model's own implementation is the packed one, so that
    the model builds no mask (the probe leaves it out: the modules alone must switch)."""
    _switch_attention_modules(model)
    if not whole:
        yield
        return
    config = model.config
    before = config._attn_implementation
    config._attn_implementation = PACKED
    try:
        yield
    finally:
        config._attn_implementation = before


_switching: weakref.WeakSet[torch.nn.Module] = weakref.WeakSet()  # hooked modules and models


def _switch_attention_modules(model: torch.nn.Module) -> None:
    """Hook every attention module of ``model`` (idempotent): a call given a layout runs with
    the packed implementation (see :func:`packed_attention_on`)."""
    if model in _switching:
        return
    _switching.add(model)
    for module in model.modules():
        named = type(module).__name__.endswith("Attention") and hasattr(module, "config")
        if named and module not in _switching:
            module.register_forward_pre_hook(_switch_on, with_kwargs=True)
            module.register_forward_hook(_switch_back, always_call=True)
            _switching.add(module)


def _switch_on(module: torch.nn.Module, args: Any, kwargs: dict[str, Any]) -> None:
    if kwargs.get("lrpt_packing") is not None:
        config: Any = module.config
        module.__dict__["_lrpt_before"] = config._attn_implementation
        config._attn_implementation = PACKED


def _switch_back(module: torch.nn.Module, args: Any, output: Any) -> None:
    before = module.__dict__.pop("_lrpt_before", None)
    if before is not None:
        config: Any = module.config
        config._attn_implementation = before


# ------------------------------------------------------------------------------ layout
@dataclass
class Packed:
    """A batch laid out for one packed pass (see the module docstring)."""

    embeds: torch.Tensor  # (1, T, d)
    position_ids: torch.Tensor  # (1, T)
    packing: Packing
    where: torch.Tensor  # (B, L) pass position of each row token, −1 elsewhere
    starts: torch.Tensor  # (B,) pass position of each row's first token
    lengths: torch.Tensor  # (B,) each row's tokens in the pass
    prompt_lengths: torch.Tensor  # (B,) each row's prompt's P
    lead: list[int]  # per prompt: where its lead logits come from (a source, see ``logits``)
    last: list[int]  # per prompt: where the logits after its last position come from
    extra: list[torch.Tensor] = field(default_factory=list)  # (1, V) rows of cached logits

    @property
    def total(self) -> int:
        return int(self.embeds.shape[1])


Prompt = torch.Tensor | PrefixState  # its positions' embeddings (1, P, d), or its cached prefix


def pack(
    embeds: torch.Tensor,
    rest_mask: torch.Tensor,
    rows: torch.Tensor,
    prompts: Sequence[Prompt],
    kernel: str | None = None,
) -> Packed:
    """Lay out the rows ``embeds (B, L, d)`` (real tokens where ``rest_mask (B, L)`` is 1,
    contiguous in each row) after ``prompts``; row ``b`` uses ``prompts[rows[b]]``; ``kernel``:
    how rows attend (default: ``KERNELS`` for the device)."""
    device = embeds.device
    sizes = [p.shape[1] if isinstance(p, torch.Tensor) else p.length for p in prompts]
    inline = [p for p in prompts if isinstance(p, torch.Tensor)]
    offset = sum(p.shape[1] for p in inline)  # the prompts' positions come first
    order = torch.argsort(rows, stable=True)  # pass order: rows grouped by prompt
    mask = rest_mask.bool()
    lengths = mask.sum(1)
    lens = lengths[order]
    starts = offset + lens.cumsum(0) - lens  # (B,) each row's first position, pass order
    row_start = torch.empty_like(starts).scatter_(0, order, starts)  # the same, batch order
    where = torch.where(mask, row_start[:, None] + mask.long().cumsum(1) - 1, -1)
    prompt_len = torch.tensor(sizes, device=device)[rows]
    in_order = mask[order]
    tokens = embeds[order][in_order]  # (N, d)
    within = (in_order.long().cumsum(1) - 1)[in_order]
    positions = [torch.arange(p.shape[1], device=device) for p in inline]
    positions.append(prompt_len[order][:, None].expand_as(in_order)[in_order] + within)
    total = offset + tokens.shape[0]
    counts = torch.bincount(rows, minlength=len(prompts)).tolist()
    kernel = kernel or KERNELS.get(device.type, "matmul")
    packing = Packing([], int((prompt_len + lengths).max()))
    packed = Packed(
        torch.cat([*(p.to(tokens.dtype) for p in inline), tokens[None]], 1),
        torch.cat(positions)[None], packing, where, row_start, lengths, prompt_len, [], [],
    )  # fmt: skip
    first, block = 0, 0
    for prompt, size, count in zip(prompts, sizes, counts, strict=True):
        span = slice(first, first + count)
        first += count
        mine = _rows(starts[span], lens[span]) if kernel == "matmul" else None
        if isinstance(prompt, torch.Tensor):
            packing.groups.append(Group(size, block, None, mine))
            packed.lead.append(block)
            packed.last.append(block + size - 1)
            block += size
            continue
        packing.groups.append(Group(size, None, prompt, mine))
        packed.lead.append(total + len(packed.extra))
        packed.extra.append(
            prompt.last_logits if prompt.lead_logits is None else prompt.lead_logits
        )
        packed.last.append(total + len(packed.extra))
        packed.extra.append(prompt.last_logits)
    if kernel == "sdpa":
        packing.rows = _rows(starts, lens, (prompt_len[order], rows[order], sizes))
    return packed


def _rows(
    starts: torch.Tensor,
    lens: torch.Tensor,
    prompts: tuple[torch.Tensor, torch.Tensor, list[int]] | None = None,
) -> Rows:
    """The rows starting at pass positions ``starts`` with ``lens`` tokens; with ``prompts``
    (each row's prompt length and prompt, every prompt's length), the mask and key sources of
    the "sdpa" kernel: keys ``[prompt 0, …, prompt K−1]`` (each left-padded to the longest),
    then the pass's."""
    width = int(lens.max()) if len(lens) else 0
    j = torch.arange(width, device=starts.device)
    valid = j[None] < lens[:, None]  # (R, W)
    index = starts[:, None] + torch.where(valid, j[None], 0)
    allowed = ((j[None, :] <= j[:, None])[None] & valid[:, None, :])[:, None]  # key i ≤ query j
    if prompts is None:
        return Rows(index, valid, allowed, None, None)
    prompt_lens, prompt, sizes = prompts
    longest = max(sizes)
    slots = torch.arange(longest, device=starts.device)
    own = slots[None] >= longest - prompt_lens[:, None]  # (R, P_max)
    mask = torch.cat([own[:, None, None].expand(-1, 1, width, -1), allowed], -1)
    source = torch.cat([prompt[:, None] * longest + slots, len(sizes) * longest + index], 1)
    return Rows(index, valid, allowed, mask, source)


# ------------------------------------------------------------------------------ running
def run(
    model: PreTrainedModel, packed: Packed, positions: torch.Tensor, *, whole: bool = True
) -> torch.Tensor:
    """The model's logits at pass ``positions (M,)`` (sorted, unique) → ``(M, V)``
    (``whole``: see :func:`packed_attention_on`)."""
    if packed.total == 0 or len(positions) == 0:
        head: Any = model.get_output_embeddings()
        vocab = int(head.weight.shape[0])
        return packed.embeds.new_zeros(0, vocab)
    with packed_attention_on(model, whole=whole):
        out = model(
            inputs_embeds=packed.embeds, position_ids=packed.position_ids, use_cache=False,
            logits_to_keep=positions, lrpt_packing=packed.packing,
        )  # fmt: skip
    return cast(torch.Tensor, out.logits)[0]


def logits(
    model: PreTrainedModel, packed: Packed, sources: Sequence[torch.Tensor]
) -> list[torch.Tensor]:
    """Logits for each tensor of ``sources`` (same shape + ``(V,)``): a source ``s`` is a pass
    position (``s < T``), one of the cached rows ``extra[s − T]``, or −1 (zeros)."""
    total = packed.total
    every = torch.cat([s.flatten() for s in sources])
    positions = torch.unique(every[(every >= 0) & (every < total)])
    table = run(model, packed, positions)
    if packed.extra:  # a few rows: the cached prompts' logits
        table = torch.cat([table, *(e.to(table.dtype) for e in packed.extra)])
    if not len(table):
        return [table.new_zeros(*s.shape, table.shape[1]) for s in sources]
    remap = torch.zeros(total + len(packed.extra), dtype=torch.long, device=every.device)
    remap[positions] = torch.arange(len(positions), device=every.device)
    remap[total:] = torch.arange(len(positions), len(table), device=every.device)
    return [table[remap[s.clamp(min=0)]].masked_fill_((s < 0)[..., None], 0) for s in sources]


def forward_packed(
    model: PreTrainedModel,
    embeds: torch.Tensor,
    rest_mask: torch.Tensor,
    lead_cols: torch.Tensor,
    rows: torch.Tensor,
    prompts: Sequence[Prompt],
    labels: torch.Tensor | None = None,
    logits_to_keep: int = 0,
) -> CausalLMOutputWithPast:
    """The packed pass over a batch in the layout of :func:`lrpt.prefix.forward_with_prefix`
    (same arguments, same outputs): logits at the input positions ``(B, L, V)`` (zeros on
    padding), or the last ``logits_to_keep``, and with ``labels`` the mean next-token loss."""
    packed = pack(embeds, rest_mask, rows, prompts)
    lead = torch.tensor(packed.lead, device=rows.device)[rows]
    out = torch.where(lead_cols, lead[:, None], packed.where)  # (B, L)
    if logits_to_keep:
        out = out[:, -logits_to_keep:]
    sources = [out]
    if labels is not None:
        if logits_to_keep:
            raise ValueError("labels need every position's logits: use logits_to_keep=0")
        sources.append(_predecessors(packed, labels, rest_mask, rows))
    got = logits(model, packed, sources)
    loss = F.cross_entropy(got[1].float(), labels[labels != IGNORE]) if labels is not None else None
    return CausalLMOutputWithPast(loss=loss, logits=got[0])


def _predecessors(
    packed: Packed, labels: torch.Tensor, rest_mask: torch.Tensor, rows: torch.Tensor
) -> torch.Tensor:
    """The source of the logits that predict each labelled token: its predecessor in the row,
    or its prompt's last position (row-major order of the labelled tokens)."""
    b, c = (labels != IGNORE).nonzero(as_tuple=True)
    prev = (c - 1).clamp(min=0)
    from_row = (c > 0) & (rest_mask[b, prev] > 0)
    last = torch.tensor(packed.last, device=rows.device)[rows[b]]
    return torch.where(from_row, packed.where[b, prev], last)


# ------------------------------------------------------------------------------ support
@dataclass(frozen=True)
class PackedSupport:
    """Whether a model takes the packed pass, or why not."""

    ok: bool
    reason: str = ""


_SUPPORT: weakref.WeakKeyDictionary[PreTrainedModel, PackedSupport] = weakref.WeakKeyDictionary()


def packed_support(model: PreTrainedModel) -> PackedSupport:
    """Whether ``model`` gives the packed pass the logits its own attention gives (memoised): a
    probe of two rows after a three-position prompt, against each row run alone."""
    known = _SUPPORT.get(model)
    if known is None:
        known = _probe(model)
        _SUPPORT[model] = known
    return known


def _probe(model: PreTrainedModel) -> PackedSupport:
    name = type(model).__name__
    weight = cast(torch.Tensor, model.get_input_embeddings().weight)
    ids = torch.arange(1, 8, device=weight.device) % weight.shape[0]
    embed = model.get_input_embeddings()
    prompt, tokens = embed(ids[None, :3]), embed(ids[None, 3:])  # a prompt, then two rows' tokens
    rows = [tokens[:, :2], tokens[:, 1:4]]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            alone = [model(inputs_embeds=torch.cat([prompt, r], 1)).logits[0, 3:] for r in rows]
            batch = torch.zeros(2, 3, prompt.shape[-1], dtype=prompt.dtype, device=prompt.device)
            batch[0, :2], batch[1] = rows[0][0], rows[1][0]
            mask = torch.tensor([[1, 1, 0], [1, 1, 1]], device=prompt.device)
            packed = pack(batch, mask, torch.zeros(2, dtype=torch.long, device=mask.device),
                          [prompt])  # fmt: skip
            positions = torch.arange(3, packed.total, device=mask.device)
            got = run(model, packed, positions, whole=False)
    except PackedUnsupported as err:
        return PackedSupport(False, f"{name}: {err}")
    except (TypeError, ValueError, KeyError) as err:
        return PackedSupport(False, f"{name} cannot run the packed pass: {err}")
    finally:
        model.train(was_training)
    layers = getattr(model.config, "num_hidden_layers", None)
    if layers is not None and packed.packing.calls != layers:
        return PackedSupport(
            False, f"{name} ran {packed.packing.calls} of its {layers} attention layers packed "
            "(each must take transformers' attention registry and the model's keyword arguments)",
        )  # fmt: skip
    want = torch.cat(alone).float()
    diff = float((got.float() - want).abs().max())
    tolerance = 1e-3 if weight.dtype == torch.float32 else 5e-2
    if not diff <= tolerance * max(1.0, float(want.abs().max())):
        return PackedSupport(False, f"{name}'s packed logits differ from its own by {diff:.3g}")
    return PackedSupport(True)


# ------------------------------------------------------------------------------ decoding
@torch.no_grad()
def prefill_packed(
    model: PreTrainedModel,
    embeds: torch.Tensor,
    rest_mask: torch.Tensor,
    lead_cols: torch.Tensor,
    rows: torch.Tensor,
    states: Sequence[PrefixState],
) -> Running:
    """Run the rows after their cached prefixes in one packed pass and keep their keys/values:
    rows ready to decode (:class:`~lrpt.decoding.Running`, the first token's logits included).
    Each row's cache is its prefix's slots (left-padded to the longest prefix) then its own
    tokens' (left-padded to the longest row)."""
    packed = pack(embeds, rest_mask, rows, states)
    packed.packing.keep = []
    last = torch.tensor(packed.last, device=rows.device)[rows]
    col = rest_mask.shape[1] - 1 - rest_mask.flip(1).argmax(1)  # each row's last token
    source = torch.where(packed.lengths > 0, packed.where.gather(1, col[:, None])[:, 0], last)
    (first,) = logits(model, packed, [source])
    width = int(packed.lengths.max())
    j = torch.arange(width, device=rows.device)[None] - (width - packed.lengths[:, None])
    slots = packed.starts[:, None] + j.clamp(min=0)  # (B, W): right-aligned row tokens
    longest = max(s.length for s in states)
    keys, values = [], []
    for (k, v), (pk, pv) in zip(_kept(packed, states), prefix_rows(states, rows), strict=True):
        keys.append(torch.cat([pk, k[:, slots].transpose(0, 1)], 2))
        values.append(torch.cat([pv, v[:, slots].transpose(0, 1)], 2))
    prompt_slots = torch.arange(longest, device=rows.device)[None]
    mine = prompt_slots >= longest - packed.prompt_lengths[:, None]
    mask = torch.cat([mine, j >= 0], 1).long()
    return Running(keys, values, mask, packed.prompt_lengths + packed.lengths, first)


def _kept(packed: Packed, states: Sequence[PrefixState]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The pass's keys/values per layer ``(H_kv, T, dh)`` (empty ones when nothing ran)."""
    if packed.packing.keep:
        return [(k, v) for k, v in packed.packing.keep]
    return [(k[0, :, :0], v[0, :, :0]) for k, v in zip(states[0].keys, states[0].values,
                                                        strict=True)]  # fmt: skip
