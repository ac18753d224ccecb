"""The three training objectives: a task's examples → tokenised batches, a loss, predictions.

An objective reads a task's format (:class:`~lrpt.app.data.task_format.TaskSpec`: template,
verbalizer, objective name, input length) and turns examples into batches, a loss and
predictions, for one model family:

``classify`` (causal and seq2seq LMs; the default for classification tasks)
    Rank classification by verbalizer. The model reads the filled template; each label's answer
    word (with a leading space for causal LMs) is scored by the **sum of the log-probabilities of
    all its tokens** at the answer position, and the best-scoring label is the prediction. The
    training loss is the cross-entropy over the labels' scores. When every answer word is a
    single token (the usual case, and the built-in tasks') one forward pass with
    ``logits_to_keep=1`` on a left-padded batch scores every label at once; multi-token words
    repeat each input once per label with the word's tokens appended (teacher forcing).
``generate`` (causal and seq2seq LMs; the default for regression tasks)
    Text-to-text: the target is the label's answer word (classification) or the label string
    itself (regression, e.g. ``"3.8"``), followed by EOS; the loss is on target tokens only.
    Predictions are greedy decodes, mapped back to a label by exact match of the first line
    (case-insensitive; no match counts as wrong) or parsed as a number.
``head`` (encoder classifiers; the only objective there)
    The trainable classification head on the encoder's ``[CLS]`` output: cross-entropy, or mean
    squared error for regression (one output). Encoders read the raw text (and the text pair as
    the second segment); template and verbalizer do not apply.

Inputs longer than ``max_input_tokens`` are shortened by cutting tokens from the end of the text
(or of the longer of text and text pair) before the template is filled, so the template's answer
cue always survives.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from lrpt.app.data.examples import Example
from lrpt.app.data.task_format import TaskSpec
from lrpt.family import Family
from lrpt.labels import IGNORE


@dataclass
class Batch:
    """Examples encoded for one objective: token rows (unpadded), raw texts, gold labels."""

    rows: list[list[int]]  # input token ids with special tokens, template filled, truncated
    texts: list[str]  # raw input texts, for instance-dependent methods' input encoder
    golds: list[Any]  # label indices or values
    pairs: list[list[int]] | None = None  # token type ids (encoder objective)

    def __len__(self) -> int:
        return len(self.rows)


def pad(
    rows: Sequence[Sequence[int]],
    pad_id: int,
    *,
    left: bool,
    tails: Sequence[Sequence[int]] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad ``rows`` into ``(ids, mask)`` of shape ``(B, L)``.

    ``left=True`` puts pads first. ``tails`` (left padding only) are appended after each row and
    right-padded to a common length, so every row's original tokens end at the same column.
    """
    width = max(len(r) for r in rows)
    tail_width = max((len(t) for t in tails), default=0) if tails is not None else 0
    ids, mask = [], []
    for i, row in enumerate(rows):
        tail = list(tails[i]) if tails is not None else []
        before = [pad_id] * (width - len(row)) if left else []
        after = [pad_id] * ((0 if left else width - len(row)) + tail_width - len(tail))
        ids.append(before + list(row) + tail + after)
        mask.append([0] * len(before) + [1] * (len(row) + len(tail)) + [0] * len(after))
    return torch.tensor(ids), torch.tensor(mask)


def raw_texts(examples: Sequence[Example]) -> list[str]:
    """The raw inputs an instance-dependent method's encoder reads (a pair joined by a space)."""
    return [ex.text if ex.text_pair is None else f"{ex.text} {ex.text_pair}" for ex in examples]


class Runnable(Protocol):
    """What an objective runs: a :class:`~lrpt.model.PromptedModel`, or the unprompted model
    behind the same interface (:class:`~lrpt.app.training.evaluate.Unprompted`)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...

    def generate(self, *args: Any, **kwargs: Any) -> torch.Tensor: ...

    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]: ...

    def eval(self) -> Any: ...


def device_of(model: Runnable) -> torch.device:
    return next(model.parameters()).device


class Objective:
    """Base objective: encodes examples with the template; subclasses give loss and predict."""

    def __init__(self, spec: TaskSpec, tokenizer: Any, family: str) -> None:
        self.spec = spec
        self.tok = tokenizer
        self.family = family
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.eos_id = tokenizer.eos_token_id
        self.left = family == Family.CAUSAL

    # encoding -------------------------------------------------------------------------------
    def collate(self, examples: Sequence[Example], *, golds: bool = True) -> Batch:
        """Encode ``examples``; ``golds=False`` for unlabelled inputs (prediction only)."""
        rows = [self.encode(ex) for ex in examples]
        return Batch(rows, raw_texts(examples), self.golds(examples) if golds else [])

    def golds(self, examples: Sequence[Example]) -> list[Any]:
        return [self.spec.gold(ex) for ex in examples]

    def encode(self, example: Example) -> list[int]:
        """Token ids of the filled template (special tokens included), within the length limit."""
        text, pair = example.text, example.text_pair
        for _ in range(8):
            ids = self._ids(text, pair)
            excess = len(ids) - self.spec.max_input_tokens
            if excess <= 0:
                return ids
            text, pair = self._shorten(text, pair, excess)
        raise ValueError(
            f"the template {self.spec.template!r} alone is longer than max_input_tokens "
            f"({self.spec.max_input_tokens})"
        )

    def _ids(self, text: str, pair: str | None) -> list[int]:
        if "{text_pair}" in self.spec.template and pair is None:
            raise ValueError(
                f"template {self.spec.template!r} needs a text pair; the example has none"
            )
        rendered = self.spec.template.format(text=text, text_pair=pair or "")
        return list(self.tok(rendered)["input_ids"])

    def _shorten(self, text: str, pair: str | None, excess: int) -> tuple[str, str | None]:
        def cut(s: str, k: int) -> str:
            ids = self.tok(s, add_special_tokens=False)["input_ids"]
            return self.tok.decode(ids[: max(len(ids) - k, 0)]) if len(ids) > 0 else ""

        if pair is not None and "{text_pair}" in self.spec.template and len(pair) > len(text):
            return text, cut(pair, excess)
        if not text:
            return text, cut(pair or "", excess) if pair else pair
        return cut(text, excess), pair

    def word_ids(self, word: str) -> list[int]:
        """Token ids of an answer ``word`` as it follows the template (no special tokens)."""
        if self.family != Family.CAUSAL:
            return list(self.tok(word, add_special_tokens=False)["input_ids"])
        tail = self.spec.template.rsplit("}", 1)[-1] or "x"
        base = self.tok(tail, add_special_tokens=False)["input_ids"]
        full = self.tok(tail + " " + word, add_special_tokens=False)["input_ids"]
        if full[: len(base)] == base and len(full) > len(base):
            return list(full[len(base) :])
        return list(self.tok(" " + word, add_special_tokens=False)["input_ids"])

    def inputs(self, batch: Batch, model: Runnable) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = pad(batch.rows, self.pad_id, left=self.left)
        device = device_of(model)
        return ids.to(device), mask.to(device)

    # interface ------------------------------------------------------------------------------
    def loss(self, model: Runnable, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def predict(self, model: Runnable, batch: Batch) -> list[Any]:
        raise NotImplementedError

    def answers(self, model: Runnable, batch: Batch) -> list[str]:
        """Human-readable predictions: label names, or values for regression."""
        return [self.show(pred) for pred in self.predict(model, batch)]

    def show(self, pred: Any) -> str:
        if self.spec.regression:
            return f"{pred:g}"
        return self.spec.labels[pred] if pred >= 0 else "(no label)"


class ClassifyObjective(Objective):
    """Rank classification by verbalizer (see the module docstring)."""

    def __init__(self, spec: TaskSpec, tokenizer: Any, family: str, decoder_start: int | None):
        super().__init__(spec, tokenizer, family)
        self.decoder_start = decoder_start
        self.words = [self.word_ids(spec.verbalizer[label]) for label in spec.labels]
        for label, ids in zip(spec.labels, self.words, strict=True):
            if not ids:
                raise ValueError(f"the answer word of label {label!r} has no tokens")
        seen: dict[tuple[int, ...], str] = {}
        for label, ids in zip(spec.labels, self.words, strict=True):
            other = seen.setdefault(tuple(ids), label)
            if other != label:
                raise ValueError(f"labels {other!r} and {label!r} have the same answer tokens")
        self.width = max(len(w) for w in self.words)  # W: longest answer, in tokens
        targets = torch.zeros(len(self.words), self.width, dtype=torch.long)
        for c, ids in enumerate(self.words):
            targets[c, : len(ids)] = torch.tensor(ids)
        self.targets = targets  # (C, W)
        self.target_mask = (
            torch.arange(self.width)[None] < torch.tensor([len(w) for w in self.words])[:, None]
        )

    def scores(self, model: Runnable, batch: Batch) -> torch.Tensor:
        """``(B, C)``: each label's summed answer-token log-probability."""
        C, W = len(self.words), self.width
        if W == 1:  # one pass scores every label: the answer is one token
            logits = self._answer_logits(model, batch.rows, batch.texts, None)  # (B, 1, V)
            return logits[:, 0].float().log_softmax(-1)[:, self.targets[:, 0].to(logits.device)]
        rows = [row for row in batch.rows for _ in range(C)]
        texts = [text for text in batch.texts for _ in range(C)]
        prefixes = [w[:-1] for _ in batch.rows for w in self.words]
        logits = self._answer_logits(model, rows, texts, prefixes).float()  # (B·C, W, V)
        targets = self.targets.to(logits.device).repeat(len(batch), 1)  # (B·C, W)
        picked = logits.gather(-1, targets[..., None]).squeeze(-1) - logits.logsumexp(-1)
        mask = self.target_mask.to(logits.device).repeat(len(batch), 1)
        return (picked * mask).sum(-1).view(len(batch), C)  # (B, C)

    def _answer_logits(
        self,
        model: Runnable,
        rows: list[list[int]],
        texts: list[str],
        prefixes: list[list[int]] | None,
    ) -> torch.Tensor:
        """``(N, W, V)`` logits predicting answer tokens 0..W-1 after each row."""
        device = device_of(model)
        W = self.width
        if self.family == Family.CAUSAL:
            ids, mask = pad(rows, self.pad_id, left=True, tails=prefixes)
            out = model(ids.to(device), mask.to(device), texts=texts, logits_to_keep=W)
            return out.logits  # (N, W, V): the last W positions
        ids, mask = pad(rows, self.pad_id, left=False)
        prefixes = prefixes if prefixes is not None else [[] for _ in rows]
        start = self.decoder_start
        assert start is not None  # seq2seq objectives are built with one
        dec_ids, _ = pad([[start, *p] for p in prefixes], self.pad_id, left=False)
        out = model(
            ids.to(device), mask.to(device), texts=texts, decoder_input_ids=dec_ids.to(device)
        )
        return out.logits  # (N, W, V)

    def loss(self, model: Runnable, batch: Batch) -> torch.Tensor:
        golds = torch.tensor(batch.golds, device=device_of(model))
        return F.cross_entropy(self.scores(model, batch), golds)

    def predict(self, model: Runnable, batch: Batch) -> list[int]:
        return self.scores(model, batch).argmax(-1).tolist()


class GenerateObjective(Objective):
    """Text-to-text with greedy decoding (see the module docstring)."""

    def __init__(self, spec: TaskSpec, tokenizer: Any, family: str) -> None:
        super().__init__(spec, tokenizer, family)
        answers = self.targets()
        self.lookup = {a.strip().casefold(): i for i, a in enumerate(answers)}
        longest = max(len(self.word_ids(a)) for a in answers)
        self.max_new_tokens = min(longest + 1, 64)
        if spec.regression:
            values = sorted(float(v) for v in spec.labels)
            self.fallback = values[len(values) // 2]  # an unparseable generation → the median

    def targets(self) -> list[str]:
        """The answer text of each label (its word; a regression label is its own text)."""
        if self.spec.regression:
            return list(self.spec.labels)
        return [self.spec.verbalizer[label] for label in self.spec.labels]

    def target_ids(self, gold: Any) -> list[int]:
        text = self.targets()[gold] if not self.spec.regression else self._value_text(gold)
        eos = [self.eos_id] if self.eos_id is not None else []
        return self.word_ids(text) + eos

    @staticmethod
    def _value_text(value: float) -> str:
        return f"{value:g}"

    def loss(self, model: Runnable, batch: Batch) -> torch.Tensor:
        device = device_of(model)
        targets = [self.target_ids(g) for g in batch.golds]
        T = max(len(t) for t in targets)
        labels = torch.full((len(batch), T), IGNORE)
        if self.family == Family.CAUSAL:  # targets end every left-padded row: keep T + 1 logits
            rows = [r + t for r, t in zip(batch.rows, targets, strict=True)]
            ids, mask = pad(rows, self.pad_id, left=True)
            for i, t in enumerate(targets):
                labels[i, T - len(t) :] = torch.tensor(t)
            out = model(ids.to(device), mask.to(device), texts=batch.texts, logits_to_keep=T + 1)
            logits = out.logits[:, :-1]  # (B, T, V): position p predicts token p + 1
            return F.cross_entropy(
                logits.flatten(0, 1).float(), labels.flatten().to(device), ignore_index=IGNORE
            )
        for i, t in enumerate(targets):
            labels[i, : len(t)] = torch.tensor(t)
        ids, mask = self.inputs(batch, model)
        out = model(ids, mask, labels.to(device), texts=batch.texts)
        if out.logits.dtype == torch.float32:
            return out.loss
        # a half-precision model's own loss is in its precision: take it in float32 instead
        return F.cross_entropy(
            out.logits.flatten(0, 1).float(), labels.flatten().to(device), ignore_index=IGNORE
        )

    def predict(self, model: Runnable, batch: Batch) -> list[Any]:
        return [self.parse(text) for text in self.generate(model, batch)]

    def generate(self, model: Runnable, batch: Batch) -> list[str]:
        """Greedy generations, decoded without special tokens."""
        ids, mask = self.inputs(batch, model)
        new = model.generate(
            ids, mask, texts=batch.texts, max_new_tokens=self.max_new_tokens, do_sample=False
        )
        return self.tok.batch_decode(new, skip_special_tokens=True)

    def answers(self, model: Runnable, batch: Batch) -> list[str]:
        """The parsed label or value; the raw generation where it matches no label."""
        out = []
        for text in self.generate(model, batch):
            pred = self.parse(text)
            unmatched = not self.spec.regression and pred < 0
            out.append(text.strip() if unmatched else self.show(pred))
        return out

    def parse(self, text: str) -> Any:
        """A generation → label index (−1 for none) or value (the median if unparseable)."""
        line = text.strip().split("\n", 1)[0].strip()
        if not self.spec.regression:
            return self.lookup.get(line.casefold(), -1)
        try:
            value = float(line.split()[0]) if line else math.nan
        except ValueError:
            value = math.nan
        return value if math.isfinite(value) else self.fallback


class HeadObjective(Objective):
    """The encoder's trainable classification head (see the module docstring).

    Token type ids (segment 1 for the text pair) are passed when the model has more than one
    token type (BERT), never to models without them (RoBERTa, DistilBERT).
    """

    def __init__(self, spec: TaskSpec, tokenizer: Any, family: str, config: Any = None) -> None:
        super().__init__(spec, tokenizer, family)
        self.use_types = getattr(config, "type_vocab_size", 0) > 1

    def collate(self, examples: Sequence[Example], *, golds: bool = True) -> Batch:
        rows, types = [], []
        for ex in examples:
            enc = self.tok(
                ex.text, ex.text_pair, truncation=True, max_length=self.spec.max_input_tokens,
                return_token_type_ids=self.use_types,
            )  # fmt: skip
            rows.append(list(enc["input_ids"]))
            types.append(list(enc.get("token_type_ids") or [0] * len(enc["input_ids"])))
        return Batch(rows, raw_texts(examples), self.golds(examples) if golds else [], types)

    def logits(self, model: Runnable, batch: Batch) -> torch.Tensor:
        ids, mask = self.inputs(batch, model)
        kwargs = {}
        if self.use_types:
            kwargs["token_type_ids"] = pad(batch.pairs or [], 0, left=False)[0].to(ids.device)
        out = model(ids, mask, texts=batch.texts, **kwargs)
        return out.logits.float()  # (B, C) or (B, 1) for regression

    def loss(self, model: Runnable, batch: Batch) -> torch.Tensor:
        logits = self.logits(model, batch)
        golds = torch.tensor(batch.golds, device=logits.device)
        if self.spec.regression:
            return F.mse_loss(logits[:, 0], golds.float())
        return F.cross_entropy(logits, golds)

    def predict(self, model: Runnable, batch: Batch) -> list[Any]:
        logits = self.logits(model, batch)
        if self.spec.regression:
            return logits[:, 0].tolist()
        return logits.argmax(-1).tolist()


def make_objective(spec: TaskSpec, tokenizer: Any, family: str, config: Any = None) -> Objective:
    """The objective of ``spec`` for a model of ``family`` (``config``: the HF model config)."""
    if spec.objective == "head":
        if family != Family.ENCODER:
            raise ValueError(f"objective 'head' needs an encoder classifier, not a {family} model")
        return HeadObjective(spec, tokenizer, family, config)
    if family == Family.ENCODER:
        raise ValueError(
            f"objective {spec.objective!r} needs a causal or seq2seq LM, not an encoder"
        )
    if spec.objective == "generate":
        return GenerateObjective(spec, tokenizer, family)
    start = getattr(config, "decoder_start_token_id", None)
    if family == Family.SEQ2SEQ and start is None:
        raise ValueError("the seq2seq model's config has no decoder_start_token_id")
    return ClassifyObjective(spec, tokenizer, family, start)
