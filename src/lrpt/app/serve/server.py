"""Start ``lrpt serve``: load the model and the prompt store, run the app under uvicorn."""

from __future__ import annotations

import ipaddress
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrpt.app.serve.api import Limits, create_app
from lrpt.app.serve.engine import Engine
from lrpt.app.serve.metrics import ServeMetrics
from lrpt.app.serve.store import PromptStore
from lrpt.family import Family

log = logging.getLogger("lrpt.serve")


@dataclass(frozen=True)
class ServeOptions:
    """Everything ``lrpt serve`` is started with."""

    model: str
    prompts: Path
    host: str = "127.0.0.1"
    port: int = 8000
    revision: str | None = None  # of a Hub model
    device: str = "auto"
    dtype: str = "auto"
    limits: Limits = field(default_factory=Limits)
    max_batch: int = 32
    max_queue: int = 256
    prefix_cache_mb: float = 1024
    log_level: str = "info"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_options(options: ServeOptions) -> None:
    """Refuse, before loading anything, what cannot be served safely or at all."""
    if not is_loopback(options.host) and options.limits.api_key is None:
        raise ValueError(
            f"--host {options.host} is not a loopback address: give --api-key (and --admin-key "
            "for prompt management), or bind to 127.0.0.1"
        )
    for name, value in [("--max-batch", options.max_batch), ("--max-queue", options.max_queue),
                        ("--max-tokens", options.limits.max_tokens),
                        ("--max-input-tokens", options.limits.max_input_tokens)]:  # fmt: skip
        if value < 1:
            raise ValueError(f"{name} must be ≥ 1, got {value}")
    if options.limits.timeout <= 0:
        raise ValueError(f"--timeout must be > 0 seconds, got {options.limits.timeout}")
    if options.prefix_cache_mb < 0:
        raise ValueError(f"--prefix-cache-mb must be ≥ 0, got {options.prefix_cache_mb}")
    if options.prompts.exists() and not options.prompts.is_dir():
        raise ValueError(f"--prompts {str(options.prompts)!r} is a file, not a directory")


def build(options: ServeOptions) -> tuple[Any, Engine]:
    """The app and its (not yet started) engine, with the model and every prompt loaded."""
    from lrpt.base_models import load_model
    from lrpt.placement import resolve_device

    check_options(options)
    loaded = load_model(options.model, revision=options.revision,
                        device=resolve_device(options.device), dtype=options.dtype)  # fmt: skip
    if loaded.family != Family.CAUSAL:
        raise ValueError(f"lrpt serve needs a causal LM; {options.model!r} is {loaded.family}")
    loaded.model.eval()
    store = PromptStore(options.prompts, loaded.model, loaded.tokenizer, options.model)
    store.load_all()
    log.info("serving %d prompt(s) on %s (%d refused)", len(store.prompts), options.model,
             len(store.refused))  # fmt: skip
    metrics = ServeMetrics()
    engine = Engine(
        store, options.model, metrics, max_batch=options.max_batch, max_queue=options.max_queue,
        prefix_cache_bytes=int(options.prefix_cache_mb * (1 << 20)),
    )  # fmt: skip
    metrics.watch(engine.cache, lambda: store.prompts)
    app = create_app(store, engine, metrics, options.limits)

    @asynccontextmanager
    async def lifespan(_: Any) -> Any:
        engine.start()
        yield
        engine.close()  # uvicorn has drained the in-flight requests; finish what is queued

    app.router.lifespan_context = lifespan
    return app, engine


def serve(options: ServeOptions) -> None:
    """Run the server until SIGINT/SIGTERM (in-flight requests finish first)."""
    import uvicorn

    logging.basicConfig(level=options.log_level.upper(), format="%(levelname)s: %(message)s")
    app, _ = build(options)
    uvicorn.run(
        app, host=options.host, port=options.port, log_level=options.log_level,
        timeout_graceful_shutdown=int(options.limits.timeout) + 5, timeout_keep_alive=30,
    )  # fmt: skip
