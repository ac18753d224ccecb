"""docs/adding-a-task.md, followed to the letter: its example task, written as one module and
registered through the registry, is picked up by ``lrpt data``, ``lrpt train --task``,
``lrpt eval``, the run spec and the benchmark suites, with no other edit."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from guides import forget_after_test, load_example

from lrpt.app.bench.suite.schema import is_builtin
from lrpt.app.cli import main
from lrpt.app.data.examples import Example
from lrpt.app.data.tasks import TASKS, Task, get_task, load_task, register, task_available
from lrpt.app.spec import DataSpec, RunSpec

pytestmark = pytest.mark.usefixtures("one_thread")

GUIDE = Path(__file__).parents[2] / "docs" / "adding-a-task.md"
TOPICS = Path(__file__).parents[1] / "fixtures" / "topics.jsonl"  # 30 rows, 10 per topic
NAME = "headlines"


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data directory holding ``headlines.jsonl`` (the topics fixture), as ``LRPT_DATA_DIR``."""
    directory = tmp_path / "data"
    directory.mkdir()
    shutil.copy(TOPICS, directory / "headlines.jsonl")
    monkeypatch.setenv("LRPT_DATA_DIR", str(directory))
    return directory


@pytest.fixture
def headlines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Task:
    """The example written as ``<tmp>/headlines.py`` and registered as the registry line does;
    monkeypatch removes it from the registry afterwards."""
    task = load_example(GUIDE, tmp_path, NAME, monkeypatch).TASK
    assert task.name == NAME
    forget_after_test(TASKS, NAME, monkeypatch)
    assert register(task) is task
    assert list(TASKS) == ["mr", "tweets", "bbc", NAME] and get_task(NAME) is task
    return task


# --------------------------------------------------------------------------- the task
def test_the_task_is_what_the_guide_says(headlines: Task, data: Path) -> None:
    assert task_available(NAME)
    task = load_task(NAME)
    assert task.sizes() == {"train": 24, "validation": 3, "test": 3}  # ⌊10 %⌋ of 30 each
    assert task.labels == ["politics", "science", "sports"] and task.metric == "accuracy"
    assert task.verbalizer == {"politics": "vote", "science": "lab", "sports": "goal"}
    rows = [json.loads(line) for line in TOPICS.read_text().splitlines()]
    everything = task.train + task.validation + task.test
    assert sorted(e.text for e in everything) == sorted(r["text"] for r in rows)
    assert load_task(NAME) == task  # fixed splits
    first = task.test[0]
    assert task.render(first) == f"Headline: {first.text}\nTopic:"


def test_missing_data_says_where(headlines: Task, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LRPT_DATA_DIR", str(tmp_path / "empty"))
    assert not task_available(NAME)
    with pytest.raises(ValueError, match=r"the headlines task needs .*empty/headlines\.jsonl"):
        load_task(NAME)


# --------------------------------------------------------------------------- the CLI
def test_lrpt_data(headlines: Task, data: Path, capsys) -> None:
    assert main(["data", "list"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == "headlines  installed      news headlines by topic (an example), 3 labels"
    assert main(["data", "show", NAME, "--examples", "0"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "headlines: train 24, validation 3, test 3",
        "metric   accuracy",
        "labels   politics, science, sports",
        "template 'Headline: {text}\\nTopic:'",
        "words    politics=vote, science=lab, sports=goal",
    ]


def test_lrpt_train_and_eval(headlines: Task, data: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    argv = ["train", "--model", "tiny-llama", "--task", NAME, "--method", "pt",
            "--num-tokens", "4", "--steps", "4", "--batch-size", "4", "--eval-every", "2",
            "--out", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["task"]["name"] == NAME
    assert results["task"]["sizes"] == {"train": 24, "validation": 3, "test": 3}
    assert results["task"]["template"] == "Headline: {text}\nTopic:"
    assert results["spec"]["data"]["task"] == NAME
    capsys.readouterr()
    # no --task: eval loads the task the prompt was trained on, by its name
    assert main(["eval", "--prompt", str(out / "prompt"), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert (evaluated["task"], evaluated["examples"]) == (NAME, 3)
    assert evaluated["metrics"] == results["test"]


def test_run_spec_and_suites(headlines: Task) -> None:
    spec = {"model": {"name": "tiny-llama"}, "method": {"key": "pt"}, "data": {"task": NAME}}
    assert RunSpec.from_dict(spec).data == DataSpec(task=NAME)
    assert is_builtin(NAME) and not is_builtin("headlines.jsonl")


# --------------------------------------------------------------------------- the registry
def test_register_and_task_check_the_declarations(headlines: Task) -> None:
    with pytest.raises(ValueError, match=r"task name 'headlines' is taken by 'news headlines"):
        register(headlines)
    with pytest.raises(ValueError, match=r"a task must be a lrpt.app.data.tasks.Task, got 'x'"):
        register("x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"task 'x' has no labels"):
        dataclasses.replace(headlines, name="x", labels=())
    with pytest.raises(ValueError, match=r"task 'x': labels must be a tuple of distinct names"):
        dataclasses.replace(headlines, name="x", labels=("a", "a"))
    with pytest.raises(ValueError, match=r"task 'x': bad template 'Topic:'"):
        dataclasses.replace(headlines, name="x", template="Topic:")
    with pytest.raises(ValueError, match=r"task 'x': metric must be one of accuracy, "):
        dataclasses.replace(headlines, name="x", metric="bleu")
    with pytest.raises(ValueError, match=r"task 'x': verbalizer has no word for labels \['sports'"):
        dataclasses.replace(headlines, name="x", verbalizer={"politics": "a", "science": "b"})
    with pytest.raises(ValueError, match=r"unknown task 'x'; known tasks: mr, tweets, bbc, head"):
        get_task("x")


def test_rows_with_an_undeclared_label_are_refused(headlines: Task) -> None:
    stray = dataclasses.replace(
        headlines, rows=lambda: [Example("a", "politics"), Example("b", "art")]
    )
    with pytest.raises(ValueError, match=r"task 'headlines': rows labelled \['art'\], not one of"):
        stray.load()
