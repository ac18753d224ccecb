"""The prompt store: a directory of artifacts, one sub-directory per prompt name.

Every artifact is loaded (and fully validated, as :func:`lrpt.load_prompt` does) onto the one
frozen model at start; one that fails, e.g. trained on another base model, is refused with the
reason logged and the server serves the others. Uploads arrive as a tar archive holding the
artifact's two files; they are written into a hidden temporary directory beside the target,
validated there, and renamed into place (:func:`lrpt.fileio.atomic_dir`) before the engine
serves them, so a crash mid-upload leaves the previous version or nothing, never half a
prompt. Names are checked against :data:`NAME` (no path separators, no leading dot).

The store owns the registry of served prompts: it alone adds and removes them, and it alone
answers what a request's ``model`` names (:meth:`PromptStore.resolve`).
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import re
import shutil
import tarfile
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrpt.app.data.objectives import ClassifyObjective, make_objective
from lrpt.app.data.task_format import TaskSpec
from lrpt.app.serve.errors import NotAClassifier, UnknownModel, UnknownPrompt
from lrpt.app.trained import load_onto, trained_task
from lrpt.artifact import FILES, JSON_NAME, ArtifactError, read_artifact
from lrpt.family import Family
from lrpt.fileio import atomic_dir, fsync_dir, write_synced
from lrpt.model import PromptedModel

log = logging.getLogger("lrpt.serve")

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
NAME_RULE = "1–128 characters from A–Z a–z 0–9 . _ -, not starting with . _ or -"
_loads = itertools.count()


def check_name(name: str) -> str:
    """``name`` if it is a valid prompt name, else ValueError naming it and the rule."""
    if not NAME.fullmatch(name):
        raise ValueError(f"invalid prompt name {name!r}: expected {NAME_RULE}")
    return name


@dataclass
class Served:
    """A prompt as the server runs it."""

    name: str
    pm: PromptedModel
    meta: dict[str, Any]
    spec: TaskSpec | None  # the task format it was trained with, if lrpt train saved it
    objective: ClassifyObjective | None  # rank classification by verbalizer, if it has one
    size: int  # bytes on disk
    key: str = field(default_factory=lambda: f"load-{next(_loads)}")  # this load of it, uniquely

    def classifier(self) -> ClassifyObjective:
        """Its rank classification; :class:`NotAClassifier` when it was trained without one."""
        if self.objective is None:
            raise not_a_classifier(self.name)
        return self.objective

    @property
    def batched(self) -> bool:
        """Whether its rows join mixed-prompt batches through the shared prefix."""
        return self.pm.unshared_reason() is None

    def describe(self) -> dict[str, Any]:
        """What ``GET /v1/prompts/{name}`` shows."""
        training = self.meta.get("training") or {}
        return {
            "id": self.name,
            "object": "prompt",
            "method": self.meta["method"],
            "config": self.meta["config"],
            "base_model": self.meta["model"]["name"],
            "parameters": self.pm.num_trainable()["method"],
            "bytes": self.size,
            "task": self.spec.to_dict() if self.spec is not None else None,
            "classify": self.objective is not None,
            "path": "shared prefix" if self.batched else "prompt inside the input",
            "training": {k: training[k] for k in ("steps", "seed") if k in training},
        }


def not_a_classifier(name: str) -> NotAClassifier:
    return NotAClassifier(f"{name!r} has no classification task (template and verbalizer); "
                          "use a prompt trained with the classify objective", "model")  # fmt: skip


class PromptStore:
    """The prompts in ``root`` loaded onto ``model``; ``model_key`` names the model (requests
    for the bare base model use it, and it picks the input encoders of instance-dependent
    methods)."""

    def __init__(self, root: Path, model: Any, tokenizer: Any, model_key: str) -> None:
        self.root = root
        self.model = model
        self.tokenizer = tokenizer
        self.model_key = model_key
        self.prompts: dict[str, Served] = {}
        self.refused: dict[str, str] = {}
        self._encoders: dict[str | None, Any] = {}
        self._objectives: dict[str, ClassifyObjective | None] = {}
        self._write_lock = threading.Lock()

    # ------------------------------------------------------------------ the registry
    def resolve(self, name: str) -> Served | None:
        """The prompt a request's ``model`` names (None: the bare base model), else
        :class:`UnknownModel`."""
        if name == self.model_key:
            return None
        served = self.prompts.get(name)
        if served is None:
            raise UnknownModel(f"no prompt or model {name!r}: GET /v1/models lists them", "model")
        return served

    def classifier(self, name: str) -> tuple[Served, ClassifyObjective]:
        """The prompt ``name`` and its rank classification (see :meth:`resolve`); the base
        model, or a prompt trained without a classification task, is :class:`NotAClassifier`."""
        served = self.resolve(name)
        if served is None:
            raise not_a_classifier(name)
        return served, served.classifier()

    def prompt(self, name: str) -> Served:
        """Prompt ``name`` (for prompt management), else :class:`UnknownPrompt`."""
        served = self.prompts.get(name)
        if served is None:
            raise UnknownPrompt(f"no prompt {name!r}", "name")
        return served

    def register(self, served: Served) -> None:
        """Serve ``served`` under its name (in place of a prompt of that name)."""
        self.prompts[served.name] = served
        self.refused.pop(served.name, None)

    def remove(self, name: str) -> None:
        """Stop serving prompt ``name`` and remove its directory (renamed away first, so it
        goes at once)."""
        with self._write_lock:
            path = self.root / check_name(name)
            gone = self.root / f".{name}.{uuid.uuid4().hex}.tmp"
            path.rename(gone)
            fsync_dir(self.root)
            shutil.rmtree(gone, ignore_errors=True)
        self.prompts.pop(name, None)

    # ------------------------------------------------------------------ loading
    def load_all(self) -> None:
        """Recover from a crash mid-replace, drop leftover temporary directories, then load
        every artifact (refusing, with the reason logged, those that do not load)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._recover()
        for path in sorted(self.root.iterdir()):
            if path.name.startswith(".") or not path.is_dir():
                continue
            try:
                self.prompts[check_name(path.name)] = self.load(path, path.name)
            except (ArtifactError, ValueError, OSError) as err:
                self.refused[path.name] = str(err)
                log.warning("refusing prompt %r: %s", path.name, err)

    def discover(self, name: str) -> Served | None:
        """Prompt ``name`` if its directory appeared in the store after the start (written by
        another server on a shared store) and loads; else None (a refused one is logged)."""
        try:
            path = self.root / check_name(name)
        except ValueError:
            return None
        if not (path / JSON_NAME).is_file():
            return None
        with self._write_lock:
            try:
                return self.load(path, name)
            except (ArtifactError, ValueError, OSError) as err:
                self.refused[name] = str(err)
                log.warning("refusing prompt %r: %s", name, err)
                return None

    def _recover(self) -> None:
        """:func:`atomic_dir` replaces ``X`` by renaming it to ``.X.<id>.old`` and the new
        directory to ``X``: a crash between the two leaves ``X`` missing; restore the old one.
        Other temporary directories (uploads that never finished) are removed."""
        for path in sorted(self.root.glob(".*.old")):
            name = path.name[1:].rsplit(".", 2)[0]
            target = self.root / name
            if not target.exists():
                path.rename(target)
                log.warning("restored prompt %r after an interrupted replace", name)
        for path in self.root.glob(".*.*"):
            if path.is_dir() and path.suffix in (".tmp", ".old"):
                shutil.rmtree(path, ignore_errors=True)

    def load(self, path: Path, name: str) -> Served:
        """The artifact at ``path`` loaded and validated onto the served model."""
        meta = read_artifact(path)
        pm = load_onto(path, meta, self.model, self.tokenizer, self.model_key,
                       device=self.model.device, encoders=self._encoders)  # fmt: skip
        pm.method.eval()  # the frozen model is in eval mode already
        spec = trained_task(meta)
        objective = self._objective(spec) if spec is not None else None
        size = sum((path / f).stat().st_size for f in FILES)
        return Served(name, pm, meta, spec, objective, size)

    def _objective(self, spec: TaskSpec) -> ClassifyObjective | None:
        """Rank classification for ``spec`` (one per distinct task format: prompts trained on
        the same task share it), or None for another objective."""
        if spec.objective != "classify":
            return None
        key = json.dumps(spec.to_dict(), sort_keys=True)
        if key not in self._objectives:
            made = make_objective(spec, self.tokenizer, Family.CAUSAL, self.model.config)
            self._objectives[key] = made if isinstance(made, ClassifyObjective) else None
        return self._objectives[key]

    # ------------------------------------------------------------------ uploads
    def stage(self, name: str, archive: bytes) -> Served:
        """Write the artifact in the tar ``archive`` as prompt ``name`` (replacing any): into a
        temporary directory, validated there by loading it, then renamed into place. → the
        loaded prompt, for the engine to serve (:meth:`Engine.install`)."""
        check_name(name)
        files = read_archive(archive)
        with self._write_lock, atomic_dir(self.root / name, replace=True) as tmp:
            for file_name, data in files.items():
                write_synced(tmp / file_name, data)
            fsync_dir(tmp)
            return self.load(tmp, name)


def read_archive(data: bytes) -> dict[str, bytes]:
    """The artifact files in a tar archive (optionally gzipped; at its top level or in one
    directory). Anything else in it (links, devices, other names) is refused."""
    files: dict[str, bytes] = {}
    try:
        archive = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")  # noqa: SIM115
    except tarfile.TarError as err:
        raise ValueError(f"the upload is not a tar archive: {err}") from None
    with archive:
        for member in archive.getmembers():
            if member.isdir():
                continue
            base = member.name.rsplit("/", 1)[-1]
            if not member.isfile() or base not in FILES:
                raise ValueError(
                    f"the archive holds {member.name!r}; an artifact archive holds only "
                    f"{' and '.join(FILES)}"
                )
            if base in files:
                raise ValueError(f"the archive holds {base!r} twice")
            handle = archive.extractfile(member)
            assert handle is not None  # a regular file
            files[base] = handle.read()
    missing = [f for f in FILES if f not in files]
    if missing:
        raise ValueError(f"the archive lacks {' and '.join(missing)}")
    return files
