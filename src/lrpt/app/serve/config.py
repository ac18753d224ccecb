"""Every option of ``lrpt serve``, declared once: its default, help text and check.

:class:`ServeConfig` is what the server is started with. ``lrpt serve``'s flags
(:func:`flags`), the server's per-request limits and the options table of docs/serving.md
(:func:`options_table`) are all derived from its fields, so an option is written here only.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from lrpt.app.spec import ModelSpec
from lrpt.app.vllm_engine.settings import ENGINE_HELP, ENGINES
from lrpt.placement import check_device_name, check_dtype_name

LOG_LEVELS = ("debug", "info", "warning", "error")
MAX_INPUTS = 32  # texts per classification request, prompts per completion request
_MODEL = {f.name: f for f in dataclasses.fields(ModelSpec)}


def option(
    help: str,
    *,
    metavar: str | None = None,
    choices: tuple[str, ...] | None = None,
    env: str | None = None,
    at_least: float | None = None,
    above: float | None = None,
) -> dict[str, Any]:
    """A :class:`ServeConfig` field's metadata: its help text, how its flag reads it, the
    environment variable its default comes from, and its lower bound (``at_least``: ≥,
    ``above``: >)."""
    meta: dict[str, Any] = {"help": help, "metavar": metavar, "choices": choices, "env": env}
    return meta | {"at_least": at_least, "above": above}


def _placement(name: str) -> Any:
    """A field declared as :class:`~lrpt.app.spec.ModelSpec` declares it (``lrpt train``'s)."""
    spec = _MODEL[name]
    meta = dict(spec.metadata)
    return field(default=spec.default, metadata=option(meta["help"], metavar=meta.get("metavar"),
                                                       choices=meta.get("choices")))  # fmt: skip


@dataclass(frozen=True)
class ServeConfig:
    """Everything ``lrpt serve`` is started with (see docs/serving.md)."""

    model: str = field(metadata=option("the frozen model", metavar="KEY_OR_PATH"))
    prompts: Path = field(
        metadata=option("the prompt store: one artifact directory per prompt", metavar="DIR")
    )
    host: str = field(
        default="127.0.0.1",
        metadata=option("the address to bind; one that is not loopback needs --api-key"),
    )
    port: int = field(default=8000, metadata=option("the port to bind", at_least=0))
    revision: str | None = _placement("revision")
    device: str = _placement("device")
    dtype: str = _placement("dtype")
    api_key: str | None = field(
        default=None, metadata=option("bearer token for the API", env="LRPT_API_KEY")
    )
    admin_key: str | None = field(
        default=None,
        metadata=option("bearer token for uploads and deletes", env="LRPT_ADMIN_KEY"),
    )
    engine: str = field(default="own", metadata=option(ENGINE_HELP, choices=ENGINES))
    max_batch: int = field(default=32, metadata=option("rows per model call", at_least=1))
    max_queue: int = field(
        default=256, metadata=option("requests waiting before new ones get 429", at_least=1)
    )
    max_input_tokens: int = field(
        default=1024, metadata=option("tokens per input text or prompt", at_least=1)
    )
    max_tokens: int = field(
        default=256, metadata=option("the most max_tokens a request may ask for", at_least=1)
    )
    timeout: float = field(default=60.0, metadata=option("seconds per request", above=0))
    max_body_bytes: int = field(
        default=1 << 20, metadata=option("the largest request body", at_least=1)
    )
    max_upload_bytes: int = field(
        default=64 << 20, metadata=option("the largest upload (PUT) body", at_least=1)
    )
    prefix_cache_mb: float = field(
        default=1024, metadata=option("memory cap of the prompt-prefix LRU cache", at_least=0)
    )
    log_level: str = field(default="info", metadata=option("log level", choices=LOG_LEVELS))
    chat_template: Path | None = field(
        default=None,
        metadata=option(
            "a Jinja chat template for /v1/chat/completions and /tokenize "
            "(default: the tokenizer's)",
            metavar="FILE",
        ),
    )

    def __post_init__(self) -> None:
        for key in ("api_key", "admin_key"):  # an empty key (e.g. LRPT_API_KEY=) is no key
            if getattr(self, key) == "":
                object.__setattr__(self, key, None)
        object.__setattr__(self, "prompts", Path(self.prompts))
        for f in dataclasses.fields(self):
            _check_bound(f, getattr(self, f.name))
            choices = f.metadata["choices"]
            if choices is not None and getattr(self, f.name) not in choices:
                raise ValueError(f"{flag_name(f)} must be one of {', '.join(choices)}; "
                                 f"got {getattr(self, f.name)!r}")  # fmt: skip
        check_device_name(self.device)
        check_dtype_name(self.dtype)
        if not is_loopback(self.host) and self.api_key is None:
            raise ValueError(
                f"--host {self.host} is not a loopback address: give --api-key (and --admin-key "
                "for prompt management), or bind to 127.0.0.1"
            )
        if self.prompts.exists() and not self.prompts.is_dir():
            raise ValueError(f"--prompts {str(self.prompts)!r} is a file, not a directory")
        if self.chat_template is not None and not Path(self.chat_template).is_file():
            raise ValueError(f"--chat-template {str(self.chat_template)!r} is not a file")

    @property
    def prefix_cache_bytes(self) -> int:
        return int(self.prefix_cache_mb * (1 << 20))


def _check_bound(f: dataclasses.Field, value: Any) -> None:
    low, above = f.metadata["at_least"], f.metadata["above"]
    if low is not None and value < low:
        raise ValueError(f"{flag_name(f)} must be ≥ {low:g}, got {value}")
    if above is not None and value <= above:
        unit = " seconds" if f.name == "timeout" else ""
        raise ValueError(f"{flag_name(f)} must be > {above:g}{unit}, got {value}")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def flag_name(f: dataclasses.Field) -> str:
    return "--" + f.name.replace("_", "-")


class Flag(NamedTuple):
    """One command-line flag of ``lrpt serve``, as :meth:`argparse.ArgumentParser.add_argument`
    takes it (``env``: the environment variable its default comes from)."""

    name: str
    dest: str
    type: Callable[[str], Any]
    default: Any
    required: bool
    help: str
    metavar: str | None
    choices: tuple[str, ...] | None
    env: str | None

    def arguments(self) -> dict[str, Any]:
        """Keyword arguments of ``add_argument`` (the default read from ``env`` now)."""
        default = os.environ.get(self.env) if self.env is not None else self.default
        help_text = f"{self.help} (default: ${self.env})" if self.env else self.help
        kwargs = {"dest": self.dest, "type": self.type, "help": help_text, "metavar": self.metavar}
        if self.required:
            return kwargs | {"required": True}
        return kwargs | {"default": default, "choices": self.choices}


def flags() -> list[Flag]:
    """One flag per :class:`ServeConfig` field, in declaration order."""
    hints = typing.get_type_hints(ServeConfig)
    out = []
    for f in dataclasses.fields(ServeConfig):
        kinds = [k for k in typing.get_args(hints[f.name]) if k is not type(None)]
        kind = kinds[0] if kinds else hints[f.name]
        required = f.default is dataclasses.MISSING
        meta = f.metadata
        out.append(Flag(flag_name(f), f.name, kind, None if required else f.default, required,
                        meta["help"], meta["metavar"], meta["choices"], meta["env"]))  # fmt: skip
    return out


def from_arguments(values: dict[str, Any]) -> ServeConfig:
    """The config of parsed flags (``vars(args)``; other entries are ignored)."""
    return ServeConfig(**{f.name: values[f.name] for f in dataclasses.fields(ServeConfig)})


def options_table() -> str:
    """The options as the markdown table of docs/serving.md."""
    rows = ["| flag | default | what |", "|---|---|---|"]
    for flag in flags():
        if flag.required:
            default = "required"
        elif flag.env is not None:
            default = f"`${flag.env}`"
        elif flag.default is None:
            default = "none"
        else:
            default = f"`{flag.default}`"
        what = flag.help + (f" ({', '.join(flag.choices)})" if flag.choices else "")
        value = f" {flag.metavar}" if flag.metavar else ""
        rows.append(f"| `{flag.name}{value}` | {default} | {what} |")
    return "\n".join(rows)
