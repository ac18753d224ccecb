"""Templates, verbalizers and objectives: batch layouts and scores checked against brute force."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import lrpt
from lrpt.app.data.examples import Example, TaskData
from lrpt.app.data.objectives import ClassifyObjective, GenerateObjective, make_objective, pad
from lrpt.app.data.task_format import parse_verbalizer, task_spec, unescape
from lrpt.app.training.evaluate import Unprompted

EXAMPLES = [
    Example("a truly good film", "pos"),
    Example("bad", "neg"),
    Example("an utterly bad and boring film, too long", "neg"),
]


def toy_task(metric: str = "accuracy", labels: tuple[str, ...] = ("neg", "pos")) -> TaskData:
    words = {"neg": "bad", "pos": "good"} if labels == ("neg", "pos") else {}
    return TaskData(
        "toy",
        EXAMPLES,
        EXAMPLES,
        EXAMPLES,
        list(labels),
        metric,
        "Review: {text}\nSentiment:",
        words,
    )


def prompted(loaded: lrpt.LoadedModel) -> lrpt.PromptedModel:
    return lrpt.prompt_model("pt", loaded.model, loaded.tokenizer, num_tokens=3, seed=1)


# --- specs ---------------------------------------------------------------------------------


def test_parse_verbalizer() -> None:
    labels = ["neg", "pos"]
    assert parse_verbalizer("pos=great, neg=terrible", labels) == {
        "neg": "terrible",
        "pos": "great",
    }
    with pytest.raises(ValueError, match=r"missing: \['pos'\]"):
        parse_verbalizer("neg=bad", labels)
    with pytest.raises(ValueError, match=r"unknown: \['neutral'\]"):
        parse_verbalizer("neg=bad,pos=good,neutral=meh", labels)
    with pytest.raises(ValueError, match="distinct"):
        parse_verbalizer("neg=ok,pos=ok", labels)
    with pytest.raises(ValueError, match="LABEL=WORD"):
        parse_verbalizer("neg:bad,pos=good", labels)


def test_task_spec_defaults_and_overrides() -> None:
    task = toy_task()
    assert task_spec(task, "causal").objective == "classify"
    assert task_spec(task, "encoder").objective == "head"
    spec = task_spec(task, "seq2seq", template=r"Q: {text}\nA:", verbalizer="neg=no,pos=yes")
    assert spec.template == "Q: {text}\nA:"
    assert spec.verbalizer == {"neg": "no", "pos": "yes"}
    assert type(spec).from_dict(spec.to_dict()) == spec
    assert unescape(r"a\tb\nc") == "a\tb\nc"


def test_task_spec_errors() -> None:
    with pytest.raises(ValueError, match="encoder classifiers train"):
        task_spec(toy_task(), "encoder", objective="generate")
    regression = toy_task("pearson", ("1.5", "3"))
    assert task_spec(regression, "causal").objective == "generate"
    with pytest.raises(ValueError, match="use --objective generate"):
        task_spec(regression, "causal", objective="classify")
    with pytest.raises(ValueError, match="bad template"):
        task_spec(toy_task(), "causal", template="no placeholder")


# --- batches -------------------------------------------------------------------------------


def test_pad_layouts() -> None:
    ids, mask = pad([[5, 6], [7]], 0, left=True)
    assert ids.tolist() == [[5, 6], [0, 7]] and mask.tolist() == [[1, 1], [0, 1]]
    ids, mask = pad([[5, 6], [7]], 0, left=False)
    assert ids.tolist() == [[5, 6], [7, 0]] and mask.tolist() == [[1, 1], [1, 0]]
    ids, mask = pad([[5, 6], [7]], 0, left=True, tails=[[8], [8, 9]])
    assert ids.tolist() == [[5, 6, 8, 0], [0, 7, 8, 9]]
    assert mask.tolist() == [[1, 1, 1, 0], [0, 1, 1, 1]]


def test_truncation_keeps_the_template_tail(causal: lrpt.LoadedModel) -> None:
    spec = task_spec(toy_task(), "causal", max_input_tokens=24)
    objective = make_objective(spec, causal.tokenizer, "causal")
    ids = objective.encode(Example("word " * 100, "pos"))
    assert len(ids) <= 24
    assert causal.tokenizer.decode(ids).endswith("\nSentiment:")


# --- scores against brute force ------------------------------------------------------------


def brute_force_causal(pm, tok, objective, example) -> list[float]:
    """Sum of answer-token log-probs, one unpadded full forward per label."""
    scores = []
    row = objective.encode(example)
    for word in objective.words:
        ids = torch.tensor([row + word])
        logp = pm(ids).logits[0].log_softmax(-1)  # (L, V)
        scores.append(sum(float(logp[len(row) - 1 + k, t]) for k, t in enumerate(word)))
    return scores


@torch.no_grad()
def test_causal_multi_token_scores_match_brute_force(causal: lrpt.LoadedModel) -> None:
    pm = prompted(causal)
    objective = make_objective(task_spec(toy_task(), "causal"), causal.tokenizer, "causal")
    assert objective.width > 1  # byte tokenizer: " good" is several tokens
    scores = objective.scores(pm, objective.collate(EXAMPLES))  # (B, C), left-padded
    for i, ex in enumerate(EXAMPLES):
        expected = brute_force_causal(pm, causal.tokenizer, objective, ex)
        torch.testing.assert_close(scores[i], torch.tensor(expected), atol=1e-4, rtol=1e-4)


class OneToken(ClassifyObjective):
    """Answer words forced to one token each, to test the single-pass path."""

    def word_ids(self, word: str) -> list[int]:
        return [self.tok.convert_tokens_to_ids(word[0])]


@torch.no_grad()
@pytest.mark.parametrize("plain", [False, True])
def test_causal_single_token_scores_match_brute_force(causal: lrpt.LoadedModel, plain) -> None:
    pm = prompted(causal)
    model = Unprompted(causal.model, "causal") if plain else pm
    objective = OneToken(task_spec(toy_task(), "causal"), causal.tokenizer, "causal", None)
    assert objective.width == 1
    scores = objective.scores(model, objective.collate(EXAMPLES))
    for i, ex in enumerate(EXAMPLES):
        ids = torch.tensor([objective.encode(ex)])
        logits = pm(ids).logits if not plain else causal.model(ids).logits
        expected = logits[0, -1].log_softmax(-1)[[w[0] for w in objective.words]]
        torch.testing.assert_close(scores[i], expected, atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_seq2seq_scores_match_brute_force(seq2seq: lrpt.LoadedModel) -> None:
    pm = prompted(seq2seq)
    objective = make_objective(
        task_spec(toy_task(), "seq2seq", verbalizer="neg=bad,pos=x"),
        seq2seq.tokenizer, "seq2seq", seq2seq.model.config,
    )  # fmt: skip
    scores = objective.scores(pm, objective.collate(EXAMPLES))
    start = seq2seq.model.config.decoder_start_token_id
    for i, ex in enumerate(EXAMPLES):
        ids = torch.tensor([objective.encode(ex)])
        expected = []
        for word in objective.words:
            dec = torch.tensor([[start, *word[:-1]]])
            logp = pm(ids, decoder_input_ids=dec).logits[0].log_softmax(-1)
            expected.append(sum(float(logp[k, t]) for k, t in enumerate(word)))
        torch.testing.assert_close(scores[i], torch.tensor(expected), atol=1e-4, rtol=1e-4)


def test_causal_generate_loss_matches_model_loss(causal: lrpt.LoadedModel) -> None:
    pm = prompted(causal)
    spec = task_spec(toy_task(), "causal", objective="generate")
    objective = make_objective(spec, causal.tokenizer, "causal")
    batch = objective.collate(EXAMPLES)
    loss = objective.loss(pm, batch)  # logits_to_keep on the targets only
    targets = [objective.target_ids(g) for g in batch.golds]
    rows = [r + t for r, t in zip(batch.rows, targets, strict=True)]
    ids, mask = pad(rows, objective.pad_id, left=True)
    labels = torch.full_like(ids, -100)
    for i, t in enumerate(targets):
        labels[i, ids.shape[1] - len(t) :] = torch.tensor(t)
    logits = pm(ids, mask).logits[:, :-1]  # position p predicts p + 1
    expected = F.cross_entropy(logits.flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=1e-5)
    # the head on the targets' window only, the head everywhere: the same gradients too
    (got,) = torch.autograd.grad(loss, pm.method.prompt_embeddings)
    (want,) = torch.autograd.grad(expected, pm.method.prompt_embeddings)
    assert got.abs().max() > 0
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def test_generate_parse() -> None:
    tok = lrpt.load_model("tiny-llama").tokenizer
    objective = GenerateObjective(
        task_spec(toy_task(), "causal", objective="generate"), tok, "causal"
    )
    assert objective.parse(" Good\nReview: x") == 1
    assert objective.parse(" meh") == -1
    reg = GenerateObjective(
        task_spec(toy_task("pearson", ("1", "2", "4")), "causal"), tok, "causal"
    )
    assert reg.parse(" 3.5 stars") == 3.5
    assert reg.parse("n/a") == 2.0  # unparseable → the median label value


@pytest.mark.parametrize("objective_name", ["classify", "generate"])
def test_seq2seq_and_causal_objectives_run(
    causal: lrpt.LoadedModel, seq2seq: lrpt.LoadedModel, objective_name: str
) -> None:
    for loaded, family in ((causal, "causal"), (seq2seq, "seq2seq")):
        pm = prompted(loaded)
        spec = task_spec(toy_task(), family, objective=objective_name)
        objective = make_objective(spec, loaded.tokenizer, family, loaded.model.config)
        batch = objective.collate(EXAMPLES)
        loss = objective.loss(pm, batch)
        loss.backward()
        assert torch.isfinite(loss)
        assert pm.method.prompt_embeddings.grad is not None
        with torch.inference_mode():
            preds = objective.predict(pm, objective.collate(EXAMPLES, golds=False))
        assert len(preds) == len(EXAMPLES) and set(preds) <= {-1, 0, 1}


def test_head_objective(encoder_model: lrpt.LoadedModel) -> None:
    pm = prompted(encoder_model)
    spec = task_spec(toy_task(), "encoder")
    objective = make_objective(spec, encoder_model.tokenizer, "encoder", encoder_model.model.config)
    pair = [Example("first", "pos", "second")]
    batch = objective.collate(EXAMPLES + pair)
    assert batch.pairs is not None and 1 in batch.pairs[-1]  # the pair is segment 1
    loss = objective.loss(pm, batch)
    loss.backward()
    assert torch.isfinite(loss)
    assert objective.answers(pm, batch)[0] in ("neg", "pos")


def test_same_answer_tokens_rejected(causal: lrpt.LoadedModel) -> None:
    spec = task_spec(toy_task(), "causal", verbalizer="neg=bad,pos=bold")  # both → "b"
    with pytest.raises(ValueError, match="same answer tokens"):
        OneToken(spec, causal.tokenizer, "causal", None)
