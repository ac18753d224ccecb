"""Save, load and export a trained prompt: a directory holding ``prompt.json`` and
``prompt.safetensors`` (format version 1). No pickle anywhere.

``prompt.json``:

* ``format_version`` (1), ``method`` (registry key), ``config`` (every field of the method's config
  dataclass), ``dims`` (:class:`~lrpt.methods.ModelDims`);
* ``init_seed``: the seed ``build_method`` initialised the method with. Frozen tensors that are
  derived from it (e.g. ``lopt2``'s vocab-initialised ``X0``) are rebuilt from it, never stored;
* ``model``: identity of the frozen base model: ``name``, ``family``, ``hidden_size``,
  ``vocab_size`` and ``embedding_sha256`` (SHA-256 of its float32 input-embedding matrix);
* ``encoder``: the same identity for the input encoder of instance-dependent methods, else null;
* ``extra``: the method's ``extra_state()`` (e.g. ULPT's projection seed and fingerprint);
* ``frozen``: ``{name: {shape, dtype, sha256}}`` of every frozen tensor of the method (buffers and
  parameters that do not train). They are regenerated on load and must match bit for bit;
* ``tensors``: ``{name: {shape, dtype}}`` of the stored tensors;
* ``training``: a JSON summary of the training run, or null.

``prompt.safetensors``: the trainable tensors only, as named by
:meth:`PromptedModel.trainable_state_dict` (``method.<name>``, and ``head.<name>`` for the
classification head of encoder models).

Loading validates everything and raises a specific :class:`ArtifactError` subclass whose message
names the artifact and what did not match (expected vs got). Writes are atomic: both files are
written into a temporary directory beside the target, which is then renamed into place.

Modules: :mod:`~lrpt.artifact.schema` (format, JSON layout), :mod:`~lrpt.artifact.identity`
(model identities, fingerprints), :mod:`~lrpt.artifact.save`, :mod:`~lrpt.artifact.read` (files
and their structure), :mod:`~lrpt.artifact.load` (rebuild on a model, with every check),
:mod:`~lrpt.artifact.size`, :mod:`~lrpt.artifact.export` (PEFT adapter),
:mod:`~lrpt.artifact.errors`.
"""

from lrpt.artifact.errors import (
    ArtifactError,
    ArtifactNotFound,
    ConfigMismatch,
    CorruptArtifact,
    ExportError,
    FormatVersionError,
    FrozenStateMismatch,
    ModelMismatch,
    ModelRequired,
    NotAnArtifact,
    ProjectionMismatch,
    TensorMismatch,
    UnknownMethodError,
)
from lrpt.artifact.export import PEFT_TASK_TYPES, export_peft, exportable
from lrpt.artifact.identity import (
    embedding_fingerprint,
    encoder_identity,
    frozen_specs,
    frozen_tensors,
    model_identity,
)
from lrpt.artifact.load import load_method, load_prompt
from lrpt.artifact.read import read_artifact, read_tensors
from lrpt.artifact.save import save_prompt
from lrpt.artifact.schema import FILES, FORMAT_VERSION, JSON_NAME, TENSORS_NAME
from lrpt.artifact.size import artifact_bytes, artifact_size
from lrpt.fileio import write_synced
from lrpt.methods.base import changes_input

# writes each file of an artifact (or exported adapter) inside its temporary directory; looked up
# here at every write (see save.write_files), so replacing it simulates a failing disk
_write = write_synced

__all__ = [
    "FILES",
    "FORMAT_VERSION",
    "JSON_NAME",
    "PEFT_TASK_TYPES",
    "TENSORS_NAME",
    "ArtifactError",
    "ArtifactNotFound",
    "ConfigMismatch",
    "CorruptArtifact",
    "ExportError",
    "FormatVersionError",
    "FrozenStateMismatch",
    "ModelMismatch",
    "ModelRequired",
    "NotAnArtifact",
    "ProjectionMismatch",
    "TensorMismatch",
    "UnknownMethodError",
    "artifact_bytes",
    "artifact_size",
    "changes_input",
    "embedding_fingerprint",
    "encoder_identity",
    "export_peft",
    "exportable",
    "frozen_specs",
    "frozen_tensors",
    "load_method",
    "load_prompt",
    "model_identity",
    "read_artifact",
    "read_tensors",
    "save_prompt",
]
