"""The application's API: run a :class:`~lrpt.app.spec.RunSpec`, load a trained prompt.

The commands parse, call these functions and print; they never import each other. Everything
that turns names into loaded objects lives here once: the base model, the input encoder of
instance-dependent methods, the task data, the prompted model.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

from lrpt.app.data.examples import TaskData
from lrpt.app.data.metrics import is_regression
from lrpt.app.data.objectives import make_objective
from lrpt.app.data.task_format import TaskSpec, parse_verbalizer, task_spec, unescape
from lrpt.app.data.tasks import TASKS, load_task
from lrpt.app.data.user_data import load_user_data
from lrpt.app.spec import DataSpec, RunSpec
from lrpt.app.trained import load_encoder, load_onto, trained_task
from lrpt.app.training.distributed import SINGLE, Dist, from_environment, shard_base
from lrpt.app.training.loop import train
from lrpt.app.training.outdir import check_out
from lrpt.app.training.state import Run
from lrpt.family import Family


def load_data(data: DataSpec) -> TaskData:
    """The built-in task or the user's data files a spec names."""
    if data.task is not None:
        return load_task(data.task)
    if data.data is None:
        raise ValueError("no data: give a task or a data file (--task or --data)")
    return load_user_data(
        data.data,
        text_field=data.text_field,
        text_pair_field=data.text_pair_field,
        label_field=data.label_field,
        validation=data.validation_data,
        test=data.test_data,
        metric=data.metric or "accuracy",
    )


def model_source(key_or_path: str) -> str:
    """A model key as given, or a local directory as an absolute path (recorded in results)."""
    from lrpt.base_models import model_keys

    if key_or_path in model_keys():
        return key_or_path
    path = Path(key_or_path).expanduser()
    return str(path.resolve()) if path.exists() else key_or_path


def prepare(spec: RunSpec, out: Path, dist: Dist = SINGLE) -> Run:
    """Load what ``spec`` names and build the prompted model: a :class:`Run` ready to train
    (``dist``: this process's rank in a distributed run, whose device it takes)."""
    from lrpt.base_models import load_model
    from lrpt.model import prompt_model
    from lrpt.placement import resolve_device, resolve_dtype

    # an unavailable device fails before loading
    device = dist.device if dist.device is not None else resolve_device(spec.model.device)
    if dist.fsdp and spec.training.gradient_checkpointing:
        raise ValueError("--fsdp and --gradient-checkpointing cannot be combined yet")
    task = load_data(spec.data)
    num_labels = 1 if is_regression(task.metric) else len(task.labels)
    loaded = load_model(
        spec.model.name, family=spec.model.family, num_labels=num_labels,
        revision=spec.model.revision, device="cpu" if dist.fsdp else device,
        dtype=resolve_dtype(spec.model.dtype, device) if dist.fsdp else spec.model.dtype,
    )  # fmt: skip
    if dist.fsdp:  # the blocks sharded onto the ranks' devices (see distributed.shard_base)
        shard_base(loaded.model, device, dist.world)
    if loaded.family != Family.ENCODER and spec.training.head_lr is not None:
        raise ValueError(
            f"--head-lr is for encoder classifiers; {spec.model.name!r} is {loaded.family}"
        )
    fmt = spec.format
    tspec = task_spec(
        task, loaded.family, objective=fmt.objective, template=fmt.template,
        verbalizer=fmt.verbalizer, max_input_tokens=fmt.max_input_tokens,
    )  # fmt: skip
    objective = make_objective(tspec, loaded.tokenizer, loaded.family, loaded.model.config)
    encoder, encoder_key = load_encoder(
        spec.method.key, spec.model.name, spec.model.encoder, device
    )
    pm = prompt_model(  # FSDP: no shared prefix (see lrpt.app.training.distributed)
        spec.method.key, loaded.model, loaded.tokenizer, encoder=encoder,
        seed=spec.training.seed, share_prefix=not dist.fsdp, **spec.method.options,
    )  # fmt: skip
    model = {"name": model_source(spec.model.name), "family": loaded.family, "encoder": encoder_key}
    if loaded.revision is not None:
        model["revision"] = loaded.revision
    return Run(pm, objective, task, spec.training, out, model, dist=dist)


def train_spec(
    spec: RunSpec, *, out: str | os.PathLike | None = None, resume: bool = False,
    progress: bool = True, dist: Dist | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Train the run ``spec`` describes into ``out`` (default: ``spec.out``); → its results,
    which record the spec (``results["spec"]``) with the model as loaded (a local directory as
    an absolute path).

    Under a launcher (``torchrun``, ``accelerate launch``) every process calls this with the
    same arguments and trains its rank (see :mod:`lrpt.app.training.distributed`); ``dist``:
    the rank, by default the one the environment describes (:func:`from_environment`)."""
    where = out if out is not None else spec.out
    if where is None:
        raise ValueError("no output directory: pass --out (or set out in the config)")
    path = Path(where).expanduser()
    check_out(path, resume)  # fail before loading anything
    own = dist is None
    dist = from_environment(spec.model.device) if dist is None else dist
    try:
        setup = {"spec": spec.to_dict(), "out": str(path.resolve()), "resume": resume}
        dist.check_same("the run's arguments", setup)
        run = prepare(spec, path, dist)
        model = dataclasses.replace(
            spec.model,
            name=run.model["name"],
            revision=run.model.get("revision", spec.model.revision),
        )
        recorded = dataclasses.replace(spec, model=model, out=str(path))
        return train(run, resume=resume, progress=progress, spec=recorded.to_dict())
    except torch.distributed.DistBackendError as err:  # e.g. a sharded block's all-gather
        raise dist.lost("training", err) from None
    finally:
        if own:
            dist.close()


# --- trained prompts -------------------------------------------------------------------------


@dataclasses.dataclass
class Loaded:
    """A trained prompt ready to run: the prompted model, its task spec and artifact metadata."""

    pm: Any
    spec: TaskSpec
    meta: dict[str, Any]


def load_trained(
    path: str | os.PathLike,
    model: str | None = None,
    encoder: str | None = None,
    family: str | None = None,
    *,
    device: str | None = None,
    dtype: str | None = None,
) -> Loaded:
    """Load the artifact at ``path`` onto its frozen model (or ``model``), with its task spec.

    ``family``, if given, must be the artifact's (the prompt was trained on that kind of model).
    ``device`` and ``dtype`` place the frozen model (None: CPU, float32; see
    :func:`lrpt.load_model`); a prompt trained on any device or dtype loads on any other.
    """
    from lrpt.artifact import read_artifact
    from lrpt.base_models import load_model

    meta = read_artifact(path)
    spec = trained_task(meta)
    if spec is None:
        raise ValueError(
            f"{str(path)!r} holds no task format (labels, template): it was not saved by lrpt train"
        )
    trained_on = meta["model"]["family"]
    if family is not None and family != trained_on:
        raise ValueError(
            f"--family {family} contradicts the artifact: the prompt was trained on a "
            f"{trained_on} model"
        )
    source = model or meta["model"]["name"]
    revision = None if model else meta["model"].get("revision")
    num_labels = 1 if spec.regression else len(spec.labels)
    loaded = load_model(
        source,
        family=trained_on,
        num_labels=num_labels,
        revision=revision,
        device=device,
        dtype=dtype,
    )
    where = loaded.model.device if device is not None else None
    pm = load_onto(path, meta, loaded.model, loaded.tokenizer, source, encoder=encoder,
                   device=where)  # fmt: skip
    return Loaded(pm, spec, meta)


def with_overrides(spec: TaskSpec, template: str | None, verbalizer: str | None) -> TaskSpec:
    """``spec`` with a ``--template`` / ``--verbalizer`` from the command line."""
    if template is not None:
        spec = dataclasses.replace(spec, template=unescape(template))
    if verbalizer is not None:
        spec = dataclasses.replace(spec, verbalizer=parse_verbalizer(verbalizer, spec.labels))
    return spec


def eval_data(data: DataSpec, spec: TaskSpec) -> TaskData:
    """The task or data ``data`` names, else the built-in task the prompt was trained on."""
    if not data.given:
        if spec.name not in TASKS:
            raise ValueError(
                f"the prompt was trained on {spec.name!r}, not a built-in task: pass --data"
            )
        return load_task(spec.name)
    return load_data(data)
