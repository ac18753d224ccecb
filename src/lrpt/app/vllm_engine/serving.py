"""``lrpt serve --engine vllm``: the serving engine on vLLM's async engine, in the same process.

It speaks the serve layer's vocabulary (:mod:`lrpt.app.serve.jobs` in, events out, errors of
:mod:`lrpt.app.serve.errors`), so the HTTP API, the store, uploads, auth, limits and metrics are
the own engine's. vLLM (``vllm.AsyncLLMEngine``) runs on an asyncio loop in a thread of its own;
its engine core runs the model in a child process, with prefix caching on and its continuous
batching; the settings of :class:`~lrpt.app.vllm_engine.settings.VllmSettings` pass through.

For each request lrpt builds the input embeddings its prompt implies
(:class:`~lrpt.input_embeds.InputEmbeds`, one per loaded prompt: a static prompt's rows are
computed once, so vLLM's prefix cache shares them); the bare base model gets its token ids.

* Generation: vLLM samples (temperature, top_p, seed, penalties, logit bias, stop strings) and
  detokenizes; greedy decoding stops at the model's EOS as the own engine's does, which counts
  no EOS among the completion's tokens. Log-probabilities are the model's own (vLLM's raw mode),
  the sampled token's and the ``k`` most likely.
* Classification keeps ``lrpt eval``'s meaning (each label's summed answer-token
  log-probability), scored from generated positions (:mod:`lrpt.app.vllm_engine.scoring`).
* Not supported: ``echo`` (the prompt's own log-probabilities: vLLM computes none for prompt
  embeddings); the HTTP layer refuses it by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

import torch

from lrpt.app.data.examples import Example
from lrpt.app.serve.engine import labelled
from lrpt.app.serve.errors import (
    Internal,
    Invalid,
    Overloaded,
    ServeError,
    TimedOut,
    Unavailable,
)
from lrpt.app.serve.jobs import (
    FEATURES,
    ClassifyJob,
    Delta,
    Done,
    Failed,
    GenerateJob,
    Job,
    Labels,
    TokenLogprob,
)
from lrpt.app.serve.metrics import ServeMetrics
from lrpt.app.serve.store import PromptStore, Served
from lrpt.app.vllm_engine.offline import eos_ids
from lrpt.app.vllm_engine.scoring import ScorePlan, request_logprobs, score_params
from lrpt.app.vllm_engine.settings import VllmSettings, model_dir, on_cpu, require_vllm
from lrpt.input_embeds import InputEmbeds

log = logging.getLogger("lrpt.serve")


class VllmEngine:
    """The store's prompts (and the bare base model) on vLLM's async engine (a
    :class:`~lrpt.app.serve.jobs.ServingEngine`); at most ``max_queue`` requests at once."""

    name = "vllm"
    supports = FEATURES - {"echo"}

    def __init__(
        self, store: PromptStore, metrics: ServeMetrics, settings: VllmSettings, *, max_queue: int
    ) -> None:
        self.vllm = require_vllm()
        self.store = store
        self.metrics = metrics
        self.max_queue = max_queue
        self.args = settings.engine_args(model_dir(store.model), store.model.dtype, cpu=on_cpu())
        self.eos = eos_ids(store.model)
        self._embedders: dict[str, InputEmbeds] = {}  # by the load of each prompt (Served.key)
        self._lock = threading.RLock()  # a job done at once calls back while submit holds it
        self._open: set[Future[None]] = set()  # requests accepted and not finished
        self._running = 0  # of them, those past their first step
        self._closing = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="lrpt-vllm",
                                        daemon=True)  # fmt: skip
        self.llm: Any = None

    # ------------------------------------------------------------------ control
    def start(self) -> None:
        """Start vLLM's engine (its engine core process loads the model) and its loop."""
        self._thread.start()

        async def make() -> Any:
            args = self.vllm.AsyncEngineArgs(**self.args)
            return self.vllm.AsyncLLMEngine.from_engine_args(args)

        self.llm = asyncio.run_coroutine_threadsafe(make(), self._loop).result()
        log.info("vLLM engine started: %s", self.args)

    def close(self) -> None:
        """Stop taking work, finish what was accepted, stop vLLM and the loop."""
        with self._lock:
            self._closing = True
            pending = list(self._open)
        for future in pending:
            with contextlib.suppress(Exception):
                future.result()
        if self.llm is not None:
            self.llm.shutdown()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()

    def submit(self, *jobs: Job) -> None:
        """Accept every job of a request, or none (:class:`Overloaded` past ``max_queue``
        requests at once, :class:`Unavailable` when shutting down)."""
        with self._lock:
            if self._closing:
                raise Unavailable("the server is shutting down")
            if len(self._open) + len(jobs) > self.max_queue:
                raise Overloaded(f"the queue is full ({self.max_queue} requests at once)")
            for job in jobs:
                future = asyncio.run_coroutine_threadsafe(self._run(job), self._loop)
                self._open.add(future)
                future.add_done_callback(self._finished)
            self.metrics.queue_depth.set(self.queued)

    def _finished(self, future: Future[None]) -> None:
        with self._lock:
            self._open.discard(future)
            self.metrics.queue_depth.set(self.queued)

    @property
    def queued(self) -> int:
        return max(len(self._open) - self._running, 0)

    @property
    def decoding(self) -> int:
        return self._running

    # ------------------------------------------------------------------ prompts
    def install(self, served: Served) -> None:
        """Serve ``served`` (in place of a prompt of that name) from now on."""
        self._forget(served.name)
        self.store.register(served)

    def uninstall(self, name: str) -> None:
        """Stop serving prompt ``name`` and delete it from the store."""
        self._forget(name)
        self.store.remove(name)

    def _forget(self, name: str) -> None:
        old = self.store.prompts.get(name)
        if old is not None:  # requests already accepted keep what they hold
            self._embedders.pop(old.key, None)

    async def _embeds(
        self, served: Served, rows: Sequence[list[int]], texts: Sequence[str]
    ) -> list[torch.Tensor]:
        """The input embeddings of ``rows`` under ``served``'s prompt, on the CPU (computed on
        a worker thread: the loop keeps streaming meanwhile)."""
        embedder = self._embedders.get(served.key)
        if embedder is None:
            embedder = InputEmbeds(served.pm)
            if self.store.prompts.get(served.name) is served:  # not one replaced meanwhile
                embedder = self._embedders.setdefault(served.key, embedder)

        def build() -> list[torch.Tensor]:
            with torch.inference_mode():
                return [e.cpu() for e in embedder(rows, texts)]

        return await asyncio.get_running_loop().run_in_executor(None, build)

    # ------------------------------------------------------------------ requests
    async def _run(self, job: Job) -> None:
        """Run ``job`` to its end, delivering its events; its deadline and errors end it with
        :class:`Failed`."""
        try:
            left = job.deadline - time.monotonic()
            if left <= 0:
                raise TimedOut()
            if isinstance(job, ClassifyJob):
                work = self._classify(job)
            else:
                assert isinstance(job, GenerateJob)  # the two kinds of job
                work = self._generate(job)
            try:
                await asyncio.wait_for(work, timeout=left)
            except TimeoutError:
                raise TimedOut() from None
        except ServeError as err:
            job.deliver(Failed(err))
        except ValueError as err:  # vLLM's own checks, e.g. a prompt longer than its max length
            job.deliver(Failed(Invalid(f"vLLM refused the request: {err}", "prompt")))
        except Exception as err:  # a bug must not kill the loop: fail the request
            log.exception("the vLLM engine failed a request")
            job.deliver(Failed(Internal(f"internal error: {type(err).__name__}: {err}")))

    async def _final(self, prompt: dict[str, Any], params: Any) -> Any:
        """vLLM's last output of a request that runs to its end."""
        last = None
        async for out in self.llm.generate(prompt, params, request_id=uuid.uuid4().hex):
            last = out
        return last

    async def _classify(self, job: ClassifyJob) -> None:
        objective = job.objective
        rows = [objective.encode(Example(text, "")) for text in job.texts]
        plan = ScorePlan(objective.words, len(rows))
        embeds = await self._embeds(
            job.served,
            [rows[row] + list(before) for row, before in plan.prefixes],
            [job.texts[row] for row, _ in plan.prefixes],
        )
        outputs = await asyncio.gather(*(
            self._final({"prompt_embeds": e}, score_params(self.vllm, wanted))
            for e, wanted in zip(embeds, plan.wanted, strict=True)
        ))  # fmt: skip
        scores = plan.scores([request_logprobs(out) for out in outputs])
        self.metrics.batch("classify", len(rows))
        job.deliver(Labels(tuple(labelled(objective, s) for s in scores)))

    def _params(self, job: GenerateJob) -> Any:
        sampling = job.sampling
        return self.vllm.SamplingParams(
            max_tokens=job.max_tokens, temperature=sampling.temperature, top_p=sampling.top_p,
            seed=sampling.seed, frequency_penalty=sampling.frequency_penalty,
            presence_penalty=sampling.presence_penalty,
            logit_bias=dict(sampling.logit_bias) or None, stop=job.stop or None,
            stop_token_ids=self.eos, logprobs=job.logprobs or 0, skip_special_tokens=True,
            output_kind=self.vllm.sampling_params.RequestOutputKind.DELTA,
        )  # fmt: skip

    async def _generate(self, job: GenerateJob) -> None:
        if job.max_tokens == 0:  # nothing to generate (echo, which would score, is refused)
            job.deliver(Done("length", len(job.ids), 0))
            return
        if job.served is None:
            prompt: dict[str, Any] = {"prompt_token_ids": job.ids}
        else:
            (embeds,) = await self._embeds(job.served, [job.ids], [job.text])
            prompt = {"prompt_embeds": embeds}
        stream = self.llm.generate(prompt, self._params(job), request_id=uuid.uuid4().hex)
        self._running += 1
        self.metrics.decoding.set(self._running)
        tokens, logprob = 0, 0.0
        try:
            async with contextlib.aclosing(stream):  # leaving early aborts the vLLM request
                async for out in stream:
                    if job.cancelled:
                        return
                    completion = out.outputs[0]
                    reported = self._reported(job, completion)
                    tokens += len(reported)
                    logprob += sum(t.logprob or 0.0 for t in reported)
                    self.metrics.tokens.inc(len(reported))
                    if completion.text or (reported and job.logprobs is not None):
                        shown = tuple(reported) if job.logprobs is not None else ()
                        job.deliver(Delta(completion.text, shown))
                    if completion.finish_reason is not None:
                        reason = "length" if completion.finish_reason == "length" else "stop"
                        job.deliver(Done(reason, len(job.ids), tokens, logprob))
        finally:
            self._running -= 1
            self.metrics.decoding.set(self._running)

    def _reported(self, job: GenerateJob, completion: Any) -> list[TokenLogprob]:
        """The new tokens of a streamed output with their log-probabilities and ``k`` most
        likely alternatives, less a final EOS (the own engine counts none)."""
        ids = list(completion.token_ids)
        steps = list(completion.logprobs or [{}] * len(ids))
        if completion.finish_reason == "stop" and ids and ids[-1] in self.eos:
            ids, steps = ids[:-1], steps[:-1]
        k = job.logprobs or 0
        out = []
        for token, step in zip(ids, steps, strict=True):
            chosen = step.get(token)
            top = [(t, lp) for t, lp in step.items() if lp.rank is not None and lp.rank <= k]
            ranked = sorted(top, key=lambda item: item[1].rank)
            out.append(TokenLogprob(token, chosen.logprob if chosen is not None else None,
                                    tuple((t, lp.logprob) for t, lp in ranked)))  # fmt: skip
        return out
