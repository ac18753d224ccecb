"""lrpt: low-rank soft prompt tuning for frozen language models."""

from lrpt.artifact import load_prompt, read_artifact, save_prompt
from lrpt.base_models import LoadedModel, load_model, model_keys
from lrpt.family import Family
from lrpt.methods import METHODS, InitContext, ModelDims, PromptMethod, make_config, method_class
from lrpt.model import InputEncoder, PromptedModel, build_method, model_dims, prompt_model

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "Family",
    "InitContext",
    "InputEncoder",
    "LoadedModel",
    "ModelDims",
    "PromptMethod",
    "PromptedModel",
    "build_method",
    "load_model",
    "load_prompt",
    "make_config",
    "method_class",
    "model_dims",
    "model_keys",
    "prompt_model",
    "read_artifact",
    "save_prompt",
]
