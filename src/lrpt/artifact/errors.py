"""The exceptions of reading, loading and exporting artifacts (all :class:`LrptError`)."""

from __future__ import annotations

from lrpt.errors import LrptError


class ArtifactError(LrptError):
    """A prompt artifact is missing, malformed, or does not fit the model it is loaded on."""


class ArtifactNotFound(ArtifactError):
    """The artifact path does not exist."""


class NotAnArtifact(ArtifactError):
    """The path exists but is not an lrpt prompt artifact directory."""


class CorruptArtifact(ArtifactError):
    """A file of the artifact is unreadable: invalid JSON, truncated or empty safetensors, a
    missing key, or a tensor list that disagrees with the tensors stored."""


class FormatVersionError(ArtifactError):
    """The artifact's format version is not one this lrpt reads."""


class UnknownMethodError(ArtifactError):
    """The artifact's method key is not registered."""


class ConfigMismatch(ArtifactError):
    """The stored config has unknown, missing or invalid fields."""


class TensorMismatch(ArtifactError):
    """A stored tensor's name, shape or dtype is not what the method builds for these dims."""


class ModelMismatch(ArtifactError):
    """The base model (or input encoder) is not the one the prompt was trained on."""


class FrozenStateMismatch(ArtifactError):
    """A frozen tensor the method regenerates differs from the one the prompt was trained with."""


class ProjectionMismatch(FrozenStateMismatch):
    """The method's regenerated ``extra_state()`` (e.g. ULPT's projection fingerprint) differs
    from the stored one."""


class ModelRequired(ArtifactError):
    """The method's frozen tensors derive from the base model: it must be passed to rebuild them."""


class ExportError(ArtifactError):
    """The artifact cannot be exported to the requested format (the message says why)."""
