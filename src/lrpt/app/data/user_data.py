"""User data files → a task: CSV, TSV, JSON lines or a saved ``datasets`` directory.

Formats: CSV, TSV (tab-separated, no quoting, as GLUE ships), JSON lines (``.jsonl``/``.json``; a
``.json`` file holding one JSON array also works) or a directory written by ``datasets``'
``save_to_disk``. Missing splits are made with seed 42 (:func:`~lrpt.app.data.examples.split_rows`):

- only training data: 80/10/10 — test ⌊10 %⌋, validation ⌊10 %⌋, the rest train;
- training + validation, no test (the papers' protocol): with < 10,000 training rows the validation
  set is shuffled and halved (first ⌊n/2⌋ validation, the rest test); otherwise 1,000 training rows
  become the validation set and the original validation set is the test set;
- training + test, no validation: 1,000 training rows (< 10,000 rows: ⌊10 %⌋) become validation;
- all three: used as given.

A saved ``DatasetDict`` split whose labels are all ``-1`` (GLUE's unlabelled test sets) counts as
absent. Labels become strings; label names are sorted (numerically when all are numbers).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lrpt.app.data.examples import SEED, Example, TaskData, sort_labels, split_rows

log = logging.getLogger(__name__)

SMALL = 10_000  # fewer training rows than this: a "small" dataset in the papers' protocol

SINGLE_TEMPLATE = "Input: {text}\nLabel:"
PAIR_TEMPLATE = "Input 1: {text}\nInput 2: {text_pair}\nLabel:"
_SPLIT_NAMES = {
    "train": "train",
    "validation": "validation",
    "valid": "validation",
    "dev": "validation",
    "test": "test",
}
Record = tuple[int, Mapping[str, Any]]  # (line or row number, fields)


@dataclass(frozen=True)
class _Fields:
    text: str
    pair: str | None
    label: str

    def names(self) -> list[str]:
        return [f for f in (self.text, self.pair, self.label) if f is not None]


def load_user_data(
    path: str | os.PathLike,
    *,
    text_field: str = "text",
    text_pair_field: str | None = None,
    label_field: str = "label",
    validation: str | os.PathLike | None = None,
    test: str | os.PathLike | None = None,
    metric: str = "accuracy",
    name: str | None = None,
) -> TaskData:
    """A task from local files: CSV, TSV, JSON lines, or a ``save_to_disk`` directory.

    ``validation``/``test``: optional files with the same fields; missing splits are made with the
    seeded protocol in the module docstring. Labels become strings; the verbalizer maps each label
    to itself. Raises ``ValueError`` naming the file (and line) for a missing file, an empty file,
    an unknown extension, a missing field or an empty label.
    """
    fields = _Fields(text_field, text_pair_field, label_field)
    root = Path(path).expanduser()
    splits = _read_source(root, fields)
    if validation is not None:
        splits["validation"] = _read_file_examples(Path(validation).expanduser(), fields)
    if test is not None:
        splits["test"] = _read_file_examples(Path(test).expanduser(), fields)
    train, val, tst = _complete_splits(root, splits)
    labels = sort_labels(e.label for e in [*train, *val, *tst])
    template = PAIR_TEMPLATE if text_pair_field else SINGLE_TEMPLATE
    task = TaskData(name or root.stem, train, val, tst, labels, metric, template)
    log.info("user data %s: %s, labels %s", root, task.sizes(), labels)
    return task


def _read_source(root: Path, fields: _Fields) -> dict[str, list[Example]]:
    if not root.exists():
        raise ValueError(f"data file {str(root)!r} does not exist")
    if root.is_dir():
        return _read_saved_dataset(root, fields)
    return {"train": _read_file_examples(root, fields)}


def _read_file_examples(path: Path, fields: _Fields) -> list[Example]:
    if not path.is_file():
        raise ValueError(f"data file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        records = _read_delimited(path, "\t" if suffix == ".tsv" else ",", fields)
    elif suffix in (".jsonl", ".json", ".ndjson"):
        records = _read_json(path)
    else:
        raise ValueError(
            f"{path}: unsupported file type {suffix or '(none)'!r}; use .csv, .tsv, .jsonl, or a "
            "directory saved with datasets' save_to_disk"
        )
    if not records:
        raise ValueError(f"{path}: the file has no examples")
    return _to_examples(records, str(path), "line", fields)


def _read_delimited(path: Path, delimiter: str, fields: _Fields) -> list[Record]:
    csv.field_size_limit(1 << 30)
    quoting: Literal[0, 1, 2, 3] = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter, quoting=quoting)
        header = reader.fieldnames
        if not header:
            raise ValueError(f"{path}: the file is empty (no header line)")
        _check_fields(str(path), header, fields)
        records: list[Record] = []
        for row in reader:
            if not any((v or "").strip() for k, v in row.items() if k is not None):
                continue  # blank line
            records.append((reader.line_num, row))
    return records


def _read_json(path: Path) -> list[Record]:
    text = path.read_text(encoding="utf-8-sig")
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: invalid JSON ({err})") from None
        records = list(enumerate(items, start=1))
    else:
        records = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append((n, json.loads(line)))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}, line {n}: invalid JSON ({err.msg})") from None
    for n, item in records:
        if not isinstance(item, dict):
            raise ValueError(f"{path}, line {n}: expected a JSON object, got {type(item).__name__}")
    return records


def _check_fields(source: str, available: Iterable[str], fields: _Fields) -> None:
    available = list(available)
    for name in fields.names():
        if name not in available:
            raise ValueError(
                f"{source}: no field {name!r} (fields: {', '.join(map(str, available))}); "
                "choose the text, text pair and label fields"
            )


def _label_string(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip() if value is not None else ""


def _to_examples(records: list[Record], source: str, unit: str, fields: _Fields) -> list[Example]:
    examples = []
    for n, row in records:
        for name in fields.names():
            if name not in row:
                _check_fields(f"{source}, {unit} {n}", row.keys(), fields)
            if row[name] is None and name != fields.label:
                raise ValueError(f"{source}, {unit} {n}: no value for field {name!r}")
        label = _label_string(row[fields.label])
        if not label:
            raise ValueError(f"{source}, {unit} {n}: empty label in field {fields.label!r}")
        pair = str(row[fields.pair]) if fields.pair else None
        examples.append(Example(str(row[fields.text]), label, pair))
    return examples


def _read_saved_dataset(root: Path, fields: _Fields) -> dict[str, list[Example]]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(root))
    except (FileNotFoundError, ValueError) as err:
        raise ValueError(
            f"{root}: not a dataset directory saved with datasets' save_to_disk ({err})"
        ) from None
    parts = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
    splits: dict[str, list[Example]] = {}
    for split, ds in parts.items():
        if split not in _SPLIT_NAMES:
            log.info("%s: ignoring split %r", root, split)
            continue
        source = f"{root} [{split}]"
        _check_fields(source, ds.column_names, fields)
        if len(ds) == 0:
            raise ValueError(f"{source}: the split has no examples")
        examples = _to_examples(list(enumerate(ds, start=1)), source, "row", fields)
        if all(e.label == "-1" for e in examples) and split != "train":
            log.info("%s: all labels are -1 (unlabelled), split ignored", source)
            continue
        splits[_SPLIT_NAMES[split]] = examples
    if "train" not in splits:
        raise ValueError(f"{root}: no train split (splits: {', '.join(parts)})")
    return splits


def _complete_splits(
    root: Path, splits: dict[str, list[Example]]
) -> tuple[list[Example], list[Example], list[Example]]:
    train, val, test = splits["train"], splits.get("validation"), splits.get("test")
    if val is None and test is None:
        n = len(train) // 10
        if n == 0:
            raise ValueError(
                f"{root}: {len(train)} examples are too few to hold out validation and test "
                "(need at least 10, or give validation and test files)"
            )
        return split_rows(train, n, n)
    if test is None:
        assert val is not None  # one of them was given
        if len(train) >= SMALL:
            train, val_from_train, _ = split_rows(train, 1000, 0)
            return train, val_from_train, val
        half = len(val) // 2
        if half == 0:
            raise ValueError(f"{root}: a validation set of {len(val)} is too small to halve")
        rows = list(val)
        random.Random(SEED).shuffle(rows)
        return train, rows[:half], rows[half:]
    if val is None:
        n = 1000 if len(train) >= SMALL else len(train) // 10
        train, val, _ = split_rows(train, n, 0)
        if not val:
            raise ValueError(f"{root}: too few training examples to hold out a validation set")
    return train, val, test
