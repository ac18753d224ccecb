"""Start ``lrpt serve``: load the model and the prompt store, run the app under uvicorn."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from lrpt.app.serve.api import create_app
from lrpt.app.serve.config import ServeConfig
from lrpt.app.serve.engine import Engine
from lrpt.app.serve.jobs import ServingEngine
from lrpt.app.serve.metrics import ServeMetrics
from lrpt.app.serve.store import PromptStore
from lrpt.app.vllm_engine.settings import VllmSettings
from lrpt.family import Family

if TYPE_CHECKING:
    from lrpt.app.vllm_engine.serving import VllmEngine

log = logging.getLogger("lrpt.serve")


def build(config: ServeConfig, vllm: VllmSettings | None = None) -> tuple[Any, ServingEngine]:
    """The app and its (not yet started) engine, with the model and every prompt loaded
    (``vllm``: the vLLM engine's settings, with ``--engine vllm``)."""
    from lrpt.base_models import load_model
    from lrpt.placement import resolve_device

    loaded = load_model(config.model, revision=config.revision,
                        device=resolve_device(config.device), dtype=config.dtype)  # fmt: skip
    if loaded.family != Family.CAUSAL:
        raise ValueError(f"lrpt serve needs a causal LM; {config.model!r} is {loaded.family}")
    loaded.model.eval()
    store = PromptStore(config.prompts, loaded.model, loaded.tokenizer, config.model)
    store.load_all()
    log.info("serving %d prompt(s) on %s (%d refused)", len(store.prompts), config.model,
             len(store.refused))  # fmt: skip
    metrics = ServeMetrics()
    engine: Engine | VllmEngine
    if config.engine == "vllm":
        from lrpt.app.vllm_engine.serving import VllmEngine

        engine = VllmEngine(store, metrics, vllm or VllmSettings(), max_queue=config.max_queue)
    else:
        engine = Engine(store, metrics, max_batch=config.max_batch, max_queue=config.max_queue,
                        prefix_cache_bytes=config.prefix_cache_bytes)  # fmt: skip
        metrics.watch(engine.cache, lambda: store.prompts)
    app = create_app(engine, metrics, config)

    @asynccontextmanager
    async def lifespan(_: Any) -> Any:
        engine.start()
        yield
        engine.close()  # uvicorn has drained the in-flight requests; finish what is queued

    app.router.lifespan_context = lifespan
    return app, engine


def serve(config: ServeConfig, vllm: VllmSettings | None = None) -> None:
    """Run the server until SIGINT/SIGTERM (in-flight requests finish first)."""
    import uvicorn

    logging.basicConfig(level=config.log_level.upper(), format="%(levelname)s: %(message)s")
    app, _ = build(config, vllm)
    uvicorn.run(
        app, host=config.host, port=config.port, log_level=config.log_level,
        timeout_graceful_shutdown=int(config.timeout) + 5, timeout_keep_alive=30,
    )  # fmt: skip
