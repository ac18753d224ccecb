"""The run spec: one frozen, typed description of a training run.

Every entry point builds a :class:`RunSpec` and hands it to :func:`lrpt.app.runs.train_spec`: the
command line (``lrpt train``'s flags are derived from these dataclasses by
:mod:`lrpt.app.cli.flags`), a TOML or JSON file (``lrpt train --config run.toml``; flags given
with it override it), Python, and the benchmark suites. ``results.json`` records the spec under
``"spec"``, so ``lrpt train --config OUT/results.json --out NEW`` reruns a run.

A spec file has one table per section; every key is the field's name (the flag without ``--``,
with ``_``)::

    out = "runs/ulpt"         # optional; --out overrides it
    [model]
    name = "smollm2-135m"     # a model key or a local directory; family, encoder optional
    device = "auto"           # auto, cpu, cuda, cuda:N, mps; dtype = "auto", "float32", ...
    [method]
    key = "ulpt"
    num_tokens = 100          # the method's options
    rank = 2
    [data]
    task = "mr"               # or data = "train.csv" with text_field, label_field, ...
    [format]
    max_input_tokens = 128    # objective, template, verbalizer
    [training]
    steps = 100               # lr, weight_decay, warmup, head_lr: unset = the method's default
    seed = 0

Each field is declared once, here (or in :class:`~lrpt.app.train_config.TrainConfig` for the
training options), with its help text in the field's metadata.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrpt.app.data.metrics import METRICS, check_metric
from lrpt.app.data.task_format import (
    DEFAULT_MAX_INPUT_TOKENS,
    LM_OBJECTIVES,
    check_max_input_tokens,
)
from lrpt.app.data.tasks import TASKS, get_task
from lrpt.app.fields import option, spec_section
from lrpt.app.train_config import TrainConfig
from lrpt.family import Family
from lrpt.methods import METHODS, make_config, method_class
from lrpt.methods.base import check_choice
from lrpt.placement import DTYPE_CHOICES, check_device_name, check_dtype_name

TRAINABLE_FAMILIES = tuple(f.value for f in Family if f != Family.BASE)  # what a prompt trains on


@spec_section
class ModelSpec:
    """The frozen base model and, for instance-dependent methods, the input encoder."""

    name: str = option(
        "a model key (see lrpt params) or a local Hugging Face directory",
        flag="--model", metavar="KEY_OR_PATH",
    )  # fmt: skip
    revision: str | None = option(
        "a Hub id's branch, tag or commit (default main); recorded as the commit loaded",
        default=None,
    )
    family: str | None = option(
        "the model's family when its config.json cannot tell (default: inferred)",
        default=None, choices=TRAINABLE_FAMILIES,
    )  # fmt: skip
    encoder: str | None = option(
        "input encoder of instance-dependent methods "
        "(default: tiny-bert for tiny models, else minilm-l6)",
        default=None, metavar="KEY_OR_PATH",
    )  # fmt: skip
    device: str = option(
        "where the frozen model (and the input encoder) runs: auto (CUDA if available, "
        "else CPU), cpu, cuda, cuda:N or mps",
        default="auto", metavar="DEVICE",
    )  # fmt: skip
    dtype: str = option(
        "the frozen model's precision (auto: float32 on CPU, bfloat16 on CUDA where "
        "supported); the prompt's parameters and optimizer state stay float32",
        default="auto", choices=DTYPE_CHOICES,
    )  # fmt: skip

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"model name must be a model key or path, got {self.name!r}")
        if self.family is not None:
            check_choice("family", self.family, TRAINABLE_FAMILIES)
        check_device_name(self.device)
        check_dtype_name(self.dtype)


@spec_section
class MethodSpec:
    """The prompt method and the options of its config (validated against it)."""

    key: str = option(
        "a registered method (see lrpt methods)",
        flag="--method", metavar="KEY", choices=lambda: tuple(sorted(METHODS)),
    )  # fmt: skip
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        method_class(self.key)  # an unknown key fails here, naming the known ones
        object.__setattr__(self, "options", dict(self.options))
        self.config()  # bad options fail here, before anything loads

    def config(self) -> Any:
        """The method's validated config."""
        return make_config(self.key, **self.options)


@spec_section
class DataSpec:
    """A built-in task, or the user's data files and their fields."""

    task: str | None = option(
        f"a built-in task: {', '.join(TASKS)}",
        default=None, metavar="TASK", choices=lambda: tuple(sorted(TASKS)),
    )  # fmt: skip
    data: str | None = option(
        "training data: .csv, .tsv, .jsonl or a save_to_disk directory",
        default=None, metavar="FILE",
    )  # fmt: skip
    text_field: str = option("", default="text", metavar="NAME")
    text_pair_field: str | None = option("", default=None, metavar="NAME")
    label_field: str = option("", default="label", metavar="NAME")
    validation_data: str | None = option("", default=None, metavar="FILE")
    test_data: str | None = option("", default=None, metavar="FILE")
    metric: str | None = option(
        "the task metric of --data (default accuracy)", default=None, choices=METRICS
    )

    def __post_init__(self) -> None:
        if self.task is not None and self.data is not None:
            raise ValueError("give a task or data, not both (--task or --data)")
        if self.task is not None:
            get_task(self.task)  # an unknown name fails here, naming the known ones
            for name in ("validation_data", "test_data", "metric", "text_pair_field"):
                if getattr(self, name) is not None:
                    raise ValueError(f"--{name.replace('_', '-')} goes with --data, not --task")
        if self.metric is not None:
            check_metric(self.metric)

    @property
    def given(self) -> bool:
        """Whether a task or a data file is named."""
        return self.task is not None or self.data is not None


@spec_section
class FormatSpec:
    """How examples become model inputs: objective, template, verbalizer, input length."""

    objective: str | None = option(
        "classify: rank the verbalizer words (default for classification); generate: "
        "text-to-text with greedy decoding (default for regression); encoder models always "
        "train their classification head",
        default=None, choices=LM_OBJECTIVES,
    )  # fmt: skip
    template: str | None = option(
        r"input template with {text} (and {text_pair}); \n is a newline", default=None
    )
    verbalizer: str | None = option(
        "answer word per label, e.g. 'negative=terrible,positive=great'",
        default=None, metavar="LABEL=WORD,...",
    )  # fmt: skip
    max_input_tokens: int = option(
        "truncate the text so the filled template fits N tokens",
        default=DEFAULT_MAX_INPUT_TOKENS, metavar="N",
    )  # fmt: skip

    def __post_init__(self) -> None:
        if self.objective is not None:
            check_choice("objective", self.objective, LM_OBJECTIVES)
        check_max_input_tokens(self.max_input_tokens)


SECTIONS: dict[str, type] = {
    "model": ModelSpec,
    "method": MethodSpec,
    "data": DataSpec,
    "format": FormatSpec,
    "training": TrainConfig,
}


@dataclass(frozen=True)
class RunSpec:
    """One training run, complete: validated on construction, before anything loads."""

    model: ModelSpec
    method: MethodSpec
    data: DataSpec
    format: FormatSpec = field(default_factory=FormatSpec)
    training: TrainConfig = field(default_factory=TrainConfig)
    out: str | None = None

    def __post_init__(self) -> None:
        if not self.data.given:
            raise ValueError("no data: give a task or a data file (--task or --data)")

    def to_dict(self) -> dict[str, Any]:
        """The spec as nested plain values (JSON and TOML): one table per section."""
        out: dict[str, Any] = {} if self.out is None else {"out": self.out}
        for name in SECTIONS:
            section = getattr(self, name)
            if name == "method":
                out[name] = {"key": section.key, **section.options}
            else:
                out[name] = dataclasses.asdict(section)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "spec") -> RunSpec:
        """Build from :meth:`to_dict`'s layout; unknown sections or keys are errors."""
        return cls(**_sections(data, where))

    def with_overrides(self, overrides: Mapping[str, Mapping[str, Any]]) -> RunSpec:
        """This spec with ``{section: {field: value}}`` replaced (the method's options merge)."""
        return RunSpec.from_dict(merge(self.to_dict(), overrides))


def merge(
    base: Mapping[str, Any], overrides: Mapping[str, Mapping[str, Any] | Any]
) -> dict[str, Any]:
    """``base`` (a spec dict) with ``overrides``' sections merged in, key by key."""
    merged = {k: dict(v) if isinstance(v, Mapping) else v for k, v in base.items()}
    for name, values in overrides.items():
        if isinstance(values, Mapping):
            merged[name] = {**merged.get(name, {}), **values}
        else:
            merged[name] = values
    return merged


def _sections(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    unknown = sorted(set(data) - set(SECTIONS) - {"out"})
    if unknown:
        raise ValueError(
            f"{where}: unknown section(s) {', '.join(unknown)}; expected out and "
            f"{', '.join(SECTIONS)}"
        )
    for name in ("model", "method"):
        if name not in data:
            raise ValueError(f"{where}: no [{name}] section")
    built: dict[str, Any] = {"out": data.get("out")}
    for name, cls in SECTIONS.items():
        values = data.get(name, {})
        if not isinstance(values, Mapping):
            raise ValueError(f"{where}: [{name}] must be a table, got {values!r}")
        if name == "method":
            values = dict(values)
            key = values.pop("key", None)
            built[name] = MethodSpec(key, values)
            continue
        fields = {f.name for f in dataclasses.fields(cls)}
        extra = sorted(set(values) - fields)
        if extra:
            raise ValueError(
                f"{where}: [{name}] has unknown key(s) {', '.join(extra)}; "
                f"expected some of {', '.join(sorted(fields))}"
            )
        try:
            built[name] = cls(**values)
        except TypeError as err:  # a required field is missing
            raise ValueError(f"{where}: [{name}]: {err}") from None
    return built


def read_spec_file(path: str | Path) -> dict[str, Any]:
    """A spec dict from a ``.toml`` file, a JSON spec, or a run's ``results.json`` (its
    ``"spec"``). Not validated: flags may still complete or override it."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--config {str(path)!r}: no such file")
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"--config {str(path)!r}: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"--config {str(path)!r}: expected a table of sections")
    if "spec" in data:  # results.json
        data = data["spec"]
    elif "method" in data and isinstance(data["method"], str):
        raise ValueError(
            f"--config {str(path)!r} is a results.json from before run specs were recorded: "
            "pass its settings as flags"
        )
    return data


def setting_names() -> dict[str, tuple[str, str]]:
    """Each spec field's setting name (its flag without ``--``, with ``_``: ``model``,
    ``method``, ``steps``, …) → ``(section, field)``."""
    names: dict[str, tuple[str, str]] = {}
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            if "help" in f.metadata:
                flag = f.metadata.get("flag") or f.name
                names[flag.removeprefix("--").replace("-", "_")] = (section, f.name)
    return names


def sections_from_settings(settings: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Flat settings keyed by setting name (bench suites' keys) → spec sections; a 0 for a
    "0 = all" option becomes None."""
    names = setting_names()
    sections: dict[str, dict[str, Any]] = {}
    for key, value in settings.items():
        if key not in names:
            raise ValueError(
                f"unknown setting {key!r}; expected some of {', '.join(sorted(names))}"
            )
        section, name = names[key]
        meta = {f.name: f.metadata for f in dataclasses.fields(SECTIONS[section])}[name]
        if meta.get("zero_is_none") and value == 0:
            value = None
        sections.setdefault(section, {})[name] = value
    return sections
