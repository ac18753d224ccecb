"""``--engine`` and the ``--vllm-*`` settings of the commands that run trained prompts (``eval``,
``predict``; ``serve``, whose ``--engine`` is a ServeConfig field): flags derived from
:class:`~lrpt.app.vllm_engine.settings.VllmSettings`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from lrpt.app.cli.flags import add_spec_flags, given_sections, spec_flag
from lrpt.app.vllm_engine.settings import ENGINE_HELP, ENGINES, VllmSettings, require_vllm

if TYPE_CHECKING:
    from lrpt.app.data.objectives import Objective
    from lrpt.model import PromptedModel

SECTION = "vllm"


def add_engine_flags(parser: argparse.ArgumentParser) -> None:
    """``--engine own|vllm`` and one ``--vllm-*`` flag per vLLM setting."""
    parser.add_argument("--engine", choices=ENGINES, default="own", help=ENGINE_HELP)
    add_vllm_flags(parser)


def add_vllm_flags(parser: argparse.ArgumentParser) -> None:
    """One ``--vllm-*`` flag per vLLM setting (absent unless given)."""
    add_spec_flags(parser, SECTION, VllmSettings, "vLLM engine settings (with --engine vllm)")


def vllm_settings(args: argparse.Namespace) -> VllmSettings | None:
    """The vLLM settings given, with ``--engine vllm`` (vLLM must be installed); None with
    ``--engine own`` (where a ``--vllm-*`` flag is an error)."""
    given = given_sections(args).get(SECTION, {})
    if args.engine != "vllm":
        if given:
            fields = {f.name: f for f in VllmSettings.__dataclass_fields__.values()}
            names = ", ".join(spec_flag(fields[name]) for name in sorted(given))
            raise ValueError(f"{names} set(s) the vLLM engine: add --engine vllm")
        return None
    settings = VllmSettings(**given)
    require_vllm()
    return settings


def on_engine(objective: Objective, pm: PromptedModel, settings: VllmSettings | None) -> Objective:
    """``objective`` as it is on the own engine (``settings`` None), else with its predictions
    on a vLLM engine started with ``settings``."""
    if settings is None:
        return objective
    from lrpt.app.vllm_engine.offline import on_vllm

    return on_vllm(objective, pm, settings)
