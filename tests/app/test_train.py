"""The trainer on tiny models: data order, schedule, loss, results, checkpoints, every method."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import tiny, tiny_encoder

import lrpt
from lrpt.app.data.examples import Example, TaskData
from lrpt.app.data.objectives import make_objective
from lrpt.app.data.task_format import task_spec
from lrpt.app.train_config import TrainConfig
from lrpt.app.training.checkpoint import CHECKPOINT_VERSION
from lrpt.app.training.loop import batch_indices, lr_lambda, method_defaults, train
from lrpt.app.training.outdir import CHECKPOINT
from lrpt.app.training.state import Run
from lrpt.methods import METHODS, method_class

pytestmark = pytest.mark.usefixtures("one_thread")


RESULT_KEYS = {
    "method", "config", "model", "task", "seed", "trainable_params", "steps", "train_seconds",
    "best_validation", "test", "zero_shot_test",
}  # fmt: skip


def sentiment(n: int = 48) -> TaskData:
    """A separable toy task: the label is the review's last word."""
    words = {"pos": "great", "neg": "awful"}
    rows = [Example(f"review {i} was {words['pos' if i % 2 else 'neg']}", "pos" if i % 2 else "neg")
            for i in range(n)]  # fmt: skip
    return TaskData("toy", rows[:32], rows[32:40], rows[40:], ["neg", "pos"], "accuracy",
                    "Review: {text}\nSentiment:", {"neg": "bad", "pos": "good"})  # fmt: skip


def make_run(
    tmp_path: Path, family: str = "causal", method: str = "pt", *, task: TaskData | None = None,
    options: dict | None = None, **cfg,
) -> Run:  # fmt: skip
    task = task or sentiment()
    loaded = tiny(family)
    encoder = None if method_class(method).static else tiny_encoder()
    options = options if options is not None else {"num_tokens": 4}
    pm = lrpt.prompt_model(
        method, loaded.model, loaded.tokenizer, encoder=encoder, seed=0, **options
    )
    spec = task_spec(task, family)
    objective = make_objective(spec, loaded.tokenizer, family, loaded.model.config)
    config = TrainConfig(**({"steps": 4, "batch_size": 4, "eval_every": 2, "lr": 3e-2} | cfg))
    model = {"name": loaded.name, "family": family, "encoder": "tiny-bert" if encoder else None}
    return Run(pm, objective, task, config, tmp_path / "out", model)


def test_batch_indices_cover_each_epoch_in_a_seeded_order() -> None:
    first = batch_indices(10, seed=3, position=0, size=10)
    assert sorted(first) == list(range(10))
    assert first == batch_indices(10, seed=3, position=0, size=10)
    assert first != batch_indices(10, seed=4, position=0, size=10)
    assert batch_indices(10, 3, 7, 6) == first[7:] + batch_indices(10, 3, 10, 3)


def test_lr_schedule_warms_up_then_decays() -> None:
    f = lr_lambda(TrainConfig(steps=10, warmup=0.2))
    assert [round(f(s), 3) for s in range(10)] == [
        0.5, 1.0, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125,
    ]  # fmt: skip


def test_train_config_errors() -> None:
    with pytest.raises(ValueError, match="steps must be an integer ≥ 1"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="warmup"):
        TrainConfig(warmup=1.5)
    with pytest.raises(ValueError, match="lr must be > 0"):
        TrainConfig(lr=0.0)


# The fair suite's grid choices (docs/training.md, "Defaults"; tests/test_readme.py derives them).
LRS = {"pt": 1e-2, "dpt": 5e-2, "lopt1": 3e-2, "lopt2": 3e-2, "ulpt": 3e-2, "residual": 1e-2,
       "dept": 1e-2, "ept": 1e-2, "lopa": 1e-3, "idpg": 1e-2}  # fmt: skip


def test_method_defaults_are_declared_by_each_method() -> None:
    assert set(LRS) == set(METHODS)
    for key, lr in LRS.items():
        expected = {"weight_decay": 1e-5, "warmup": 0.1, "head_lr": 1e-3, "lr": lr}
        assert method_defaults(key) == expected
        assert list(method_defaults(key)) == list(expected)  # the order the CLI has always seen
        assert method_class(key).training_defaults.lr == lr
    with pytest.raises(ValueError, match=r"unknown method 'some-new-method'"):
        method_defaults("some-new-method")


def test_loss_drops_and_results_are_complete(tmp_path: Path) -> None:
    run = make_run(tmp_path, steps=20, eval_every=5, batch_size=8)
    before = {k: v.clone() for k, v in run.pm.model.state_dict().items()}
    results = train(run, progress=False)
    losses = results["train_loss"]
    assert len(losses) == 20
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    assert set(results) >= RESULT_KEYS
    assert results["best_validation"]["metric"] == "accuracy"
    assert set(results["test"]) == {"accuracy", "f1", "macro_f1", "matthews"}
    assert set(results["zero_shot_test"]) == set(results["test"])
    assert results["trainable_params"] == {"method": 4 * 64, "head": 0, "total": 256}
    assert [h["step"] for h in results["validation_history"]] == [5, 10, 15, 20]
    out = run.out
    assert json.loads((out / "results.json").read_text()) == results
    assert sorted(p.name for p in (out / "prompt").iterdir()) == [
        "prompt.json", "prompt.safetensors",
    ]  # fmt: skip
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left
    for name, tensor in run.pm.model.state_dict().items():  # the frozen model is unchanged
        torch.testing.assert_close(tensor, before[name], rtol=0, atol=0)


class Sealed(list):
    """A split that may be counted but whose examples raise when read."""

    def _read(self, *args: object) -> None:
        raise AssertionError("the test split was read")

    __iter__ = __getitem__ = __reversed__ = __contains__ = _read  # type: ignore[assignment]


def test_no_evaluate_test_never_reads_the_test_split(tmp_path: Path) -> None:
    """A selection run (evaluate_test off) trains and validates without touching a single test
    example, and says so in its results; the same run with it on reads the split."""
    task = sentiment()
    sealed = TaskData(task.name, task.train, task.validation, Sealed(task.test), task.labels,
                      task.metric, task.template, task.verbalizer)  # fmt: skip
    run = make_run(tmp_path, task=sealed, evaluate_test=False)
    results = train(run, progress=False)
    assert results["best_validation"]["value"] is not None
    assert results["test"] is None and results["zero_shot_test"] is None
    assert results["zero_shot_reason"] == "test evaluation is off (--no-evaluate-test)"
    assert results["task"]["test_used"] == 0 and results["training"]["evaluate_test"] is False
    assert (run.out / "prompt" / "prompt.json").is_file()
    with pytest.raises(AssertionError, match="the test split was read"):
        train(make_run(tmp_path / "on", task=sealed), progress=False)


def test_best_checkpoint_is_restored_and_early_stopping(tmp_path: Path) -> None:
    run = make_run(tmp_path, steps=40, eval_every=1, patience=2, lr=1e-6)
    results = train(run, progress=False)
    assert results["stopped_early"] and results["steps"] < 40
    best = results["best_validation"]
    history = results["validation_history"]
    assert best["value"] == max(h["accuracy"] for h in history)
    assert len(history) - 1 - [h["step"] for h in history].index(best["step"]) == 2


@pytest.mark.parametrize("family", ["seq2seq", "encoder"])
def test_other_families(tmp_path: Path, family: str) -> None:
    results = train(make_run(tmp_path, family, steps=3, eval_every=3), progress=False)
    assert set(results) >= RESULT_KEYS
    if family == "encoder":
        assert results["zero_shot_test"] is None
        assert "encoder" in results["zero_shot_reason"]
        assert results["trainable_params"]["head"] > 0
    else:
        assert results["zero_shot_test"] is not None


@pytest.mark.parametrize("method", list(METHODS))
def test_every_registered_method_trains(tmp_path: Path, method: str) -> None:
    run = make_run(tmp_path, method=method, options={}, steps=2, eval_every=2)
    results = train(run, progress=False)
    assert results["steps"] == 2 and all(map(torch.isfinite, torch.tensor(results["train_loss"])))
    assert results["model"]["encoder"] == (None if method_class(method).static else "tiny-bert")


def test_out_exists_without_resume(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "something").write_text("x")
    with pytest.raises(FileExistsError, match="pass --resume"):
        train(make_run(tmp_path), progress=False)


def test_resume_checks_the_run_settings(tmp_path: Path) -> None:
    train(make_run(tmp_path, steps=2, checkpoint_every=1), progress=False)
    with pytest.raises(ValueError, match="training differ"):
        train(make_run(tmp_path, steps=2, lr=1e-3), resume=True, progress=False)


@pytest.mark.parametrize("content", [b"not a checkpoint", b""])
def test_resume_from_a_corrupt_checkpoint_names_it(tmp_path: Path, content: bytes) -> None:
    train(make_run(tmp_path, steps=2, checkpoint_every=1), progress=False)
    (tmp_path / "out" / CHECKPOINT).write_bytes(content)
    with pytest.raises(ValueError, match=f"{CHECKPOINT}: not a readable lrpt checkpoint"):
        train(make_run(tmp_path, steps=2, checkpoint_every=1), resume=True, progress=False)


def test_resume_refuses_another_checkpoint_format(tmp_path: Path) -> None:
    train(make_run(tmp_path, steps=2, checkpoint_every=1), progress=False)
    path = tmp_path / "out" / CHECKPOINT
    saved = torch.load(path, weights_only=True)
    assert saved["version"] == CHECKPOINT_VERSION == 1
    torch.save(saved | {"version": 2}, path)
    with pytest.raises(ValueError, match=f"{CHECKPOINT}: checkpoint format 2, expected 1$"):
        train(make_run(tmp_path, steps=2, checkpoint_every=1), resume=True, progress=False)


def test_resume_in_process_matches_uninterrupted(tmp_path: Path) -> None:
    """Stop after a checkpoint (by truncating the run), resume: same tensors and results."""
    full = train(make_run(tmp_path / "a", steps=6, checkpoint_every=2), progress=False)
    part = make_run(tmp_path / "b", steps=6, checkpoint_every=2)
    ckpt = torch.load(tmp_path / "a" / "out" / CHECKPOINT, weights_only=True)
    assert ckpt["state"]["step"] == 6
    # simulate a crash at step 4: run the first 4 steps of the same run, keep only the checkpoint
    import lrpt.app.training.loop as trainer

    calls = {"n": 0}
    real_step = trainer.train_step

    def crash_after_four(*args, **kwargs):
        if calls["n"] == 4:
            raise KeyboardInterrupt
        calls["n"] += 1
        return real_step(*args, **kwargs)

    trainer.train_step = crash_after_four
    try:
        with pytest.raises(KeyboardInterrupt):
            train(part, progress=False)
    finally:
        trainer.train_step = real_step
    assert torch.load(part.out / CHECKPOINT, weights_only=True)["state"]["step"] == 4
    resumed = train(
        make_run(tmp_path / "b", steps=6, checkpoint_every=2), resume=True, progress=False
    )
    for key in ("test", "best_validation", "train_loss", "validation_history", "zero_shot_test"):
        assert resumed[key] == full[key], key


def ratings() -> TaskData:
    """A toy regression task: the rating is the number of exclamation marks."""
    rows = [Example(f"fine{'!' * (i % 4)}", str(i % 4)) for i in range(24)]
    return TaskData("rate", rows[:16], rows[16:20], rows[20:], ["0", "1", "2", "3"], "pearson",
                    "Text: {text}\nScore:")  # fmt: skip


@pytest.mark.parametrize("family", ["causal", "encoder"])
def test_regression(tmp_path: Path, family: str) -> None:
    task = ratings()
    loaded = tiny(family)
    if family == "encoder":  # one output: the rating
        from transformers import BertForSequenceClassification

        config = loaded.model.config
        config.num_labels = 1
        loaded.model = BertForSequenceClassification(config).eval()
    pm = lrpt.prompt_model("pt", loaded.model, loaded.tokenizer, num_tokens=2)
    spec = task_spec(task, family)
    assert spec.objective == ("head" if family == "encoder" else "generate")
    objective = make_objective(spec, loaded.tokenizer, family, loaded.model.config)
    config = TrainConfig(steps=2, batch_size=4, eval_every=2, lr=1e-2)
    model = {"name": loaded.name, "family": family, "encoder": None}
    results = train(Run(pm, objective, task, config, tmp_path / "out", model), progress=False)
    assert set(results["test"]) == {"pearson", "spearman"}
    assert results["best_validation"]["metric"] == "pearson"
