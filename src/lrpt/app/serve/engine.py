"""The batch scheduler: one thread runs the model, every request goes through it.

Each iteration of the model thread

1. classifies every waiting classification request at once: rows of prompts that share their
   prefix (static prompts) go through one mixed-prompt :class:`~lrpt.bank.PromptBank` forward
   whatever their prompts; the others (instance-dependent prompts) through their own
   prompted model;
2. admits waiting generation requests into the running batch, up to ``max_batch`` rows:
   shared-prefix prompts are prefilled together by :meth:`PromptBank.prefill`, the others (the
   base model, instance-dependent prompts) with the prompt inside their input; a request that
   asks for its prompt's tokens scored (``echo``) gets them first, from one forward over them;
3. advances every running row by one token (:meth:`lrpt.decoding.Running.step`), whatever its
   prompt, and lets finished rows leave.

So a request that arrives while others decode joins at the next step (iteration-level, or
continuous, batching) instead of waiting for the batch to finish. Requests wait in a bounded
queue: a full queue refuses new work (:class:`~lrpt.app.serve.errors.Overloaded`) instead of
growing without bound, and so does a queue longer than the request's timeout at the rate
requests recently finished (it would only time out waiting).

The engine speaks in :mod:`~lrpt.app.serve.jobs` (typed jobs in, typed events out) and
:mod:`~lrpt.app.serve.errors`; it knows nothing of HTTP.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from itertools import groupby
from typing import Any

import torch

from lrpt.app.data.examples import Example
from lrpt.app.data.objectives import ClassifyObjective, pad
from lrpt.app.serve.errors import Internal, Overloaded, TimedOut, Unavailable
from lrpt.app.serve.jobs import (
    FEATURES,
    ClassifyJob,
    Done,
    Failed,
    GenerateJob,
    Job,
    Labels,
    Scored,
    TokenLogprob,
)
from lrpt.app.serve.metrics import ServeMetrics
from lrpt.app.serve.rows import Row, token_logprobs
from lrpt.app.serve.store import PromptStore, Served
from lrpt.bank import PromptBank
from lrpt.decoding import Running, prefill
from lrpt.model import lead_token_id
from lrpt.prefix_cache import PrefixCache

log = logging.getLogger("lrpt.serve")
RATE_WINDOW = 30.0  # seconds of recent completions that estimate the service rate
SCORE_ELEMENTS = 1 << 27  # logits per forward that scores prompts (echo): 512 MB in float32


class Engine:
    """Runs the store's prompts (and the bare base model, by the store's ``model_key``) on one
    thread (a :class:`~lrpt.app.serve.jobs.ServingEngine` that implements every feature)."""

    name = "lrpt"
    supports = FEATURES

    def __init__(
        self,
        store: PromptStore,
        metrics: ServeMetrics,
        *,
        max_batch: int = 32,
        max_queue: int = 256,
        prefix_cache_bytes: int = 1 << 30,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.model = store.model
        tokenizer = store.tokenizer
        self.tokenizer = tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.lead = lead_token_id(tokenizer)
        eos = self.model.generation_config.eos_token_id
        self.eos = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self.cache = PrefixCache(prefix_cache_bytes)
        self.bank = PromptBank(prefix_cache=self.cache)
        self.lock = threading.Lock()  # held while the model runs and while prompts change
        self._retired: set[str] = set()  # bank keys of prompts replaced or deleted since
        self._cond = threading.Condition()
        self._pending: deque[Job] = deque()
        self._rows: list[Row] = []
        self._running: Running | None = None
        self._closing = False
        self._completed: deque[float] = deque(maxlen=4096)  # when recent requests finished
        self._thread = threading.Thread(target=self._loop, name="lrpt-engine", daemon=True)

    # ------------------------------------------------------------------ control
    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop taking work, finish what is queued and running, stop the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()

    def submit(self, *jobs: Job) -> None:
        """Queue every job of a request, or none: raises :class:`Overloaded` when the queue
        has no room for them all and :class:`Unavailable` when shutting down."""
        with self._cond:
            if self._closing:
                raise Unavailable("the server is shutting down")
            if len(self._pending) + len(jobs) > self.max_queue:
                raise Overloaded(f"the queue is full ({self.max_queue} requests waiting)")
            wait = self._expected_wait()
            if wait > min(job.deadline for job in jobs) - time.monotonic():
                raise Overloaded(
                    f"{len(self._pending)} requests are waiting, about {wait:.0f} s of work at "
                    "the recent rate: more than this request's timeout"
                )
            self._pending.extend(jobs)
            self.metrics.queue_depth.set(len(self._pending))
            self._cond.notify()

    def _expected_wait(self) -> float:
        """Seconds until a request queued now would start, at the rate requests finished in
        the last :data:`RATE_WINDOW` seconds (0 while the queue fits in one batch, or too few
        requests finished to tell): a request that would time out waiting is refused at once
        instead of occupying the queue."""
        waiting = len(self._pending)
        now = time.monotonic()
        recent = [t for t in self._completed if now - t <= RATE_WINDOW]
        if waiting < self.max_batch or len(recent) < 4:
            return 0.0
        return waiting / (len(recent) / RATE_WINDOW)

    def _completed_one(self) -> None:
        self._completed.append(time.monotonic())

    @property
    def queued(self) -> int:
        return len(self._pending)

    @property
    def decoding(self) -> int:
        return len(self._rows)

    # ------------------------------------------------------------------ prompts
    def install(self, served: Served) -> None:
        """Serve ``served`` (in place of a prompt of that name) from the next batch on."""
        with self.lock:
            self._retire(served.name)
            self.store.register(served)

    def uninstall(self, name: str) -> None:
        """Stop serving prompt ``name`` and delete it from the store."""
        with self.lock:
            self._retire(name)
            self.store.remove(name)

    def _retire(self, name: str) -> None:
        old = self.store.prompts.get(name)
        if old is not None:
            self._retired.add(old.key)

    def _bank_key(self, served: Served) -> str:
        """The mixed-prompt bank's name for ``served``, added on first use. Prompts enter the
        bank by load (a replaced prompt's requests already queued run the version they were
        accepted with) and retired ones leave it once no queued request needs them."""
        if served.key not in self.bank.prompts:
            self.bank.add(served.key, served.pm)
            if self.store.prompts.get(served.name) is not served:
                self._retired.add(served.key)
        return served.key

    def _sweep(self) -> None:
        if not self._retired:
            return
        needed = {job.served.key for job in self._pending if job.served is not None}
        for key in [k for k in self._retired if k not in needed]:
            self.bank.remove(key)
            self._retired.discard(key)

    # ------------------------------------------------------------------ the loop
    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and self._running is None:
                    if self._closing:
                        return
                    self._cond.wait(0.5)
            self.step()

    def step(self) -> None:
        """One iteration: classify what waits, admit generations, advance every running row
        one token (the model thread calls it in a loop; tests may call it directly)."""
        with self._cond:
            classify, generate = self._take()
            self.metrics.queue_depth.set(len(self._pending))
        try:
            with self.lock, torch.inference_mode():
                self._classify(classify)
                self._admit(generate)
                self._decode()
                with self._cond:
                    self._sweep()
        except Exception as err:  # a bug must not kill the thread: fail what it touched
            log.exception("the model thread failed an iteration")
            failure = Failed(Internal(f"internal error: {type(err).__name__}: {err}"))
            for job in [*classify, *generate, *(row.job for row in self._rows)]:
                job.deliver(failure)
            self._rows, self._running = [], None
        self.metrics.decoding.set(len(self._rows))

    def _take(self) -> tuple[list[ClassifyJob], list[GenerateJob]]:
        """The waiting jobs this iteration runs: every classification (up to ``max_batch``
        texts) and the generations that fit in the running batch. Expired jobs fail here."""
        classify: list[ClassifyJob] = []
        generate: list[GenerateJob] = []
        texts, room = 0, self.max_batch - len(self._rows)
        keep: deque[Job] = deque()
        now = time.monotonic()
        for job in self._pending:
            if job.cancelled:
                continue
            if now > job.deadline:
                job.deliver(Failed(TimedOut()))
            elif isinstance(job, ClassifyJob) and (
                not classify or texts + len(job.texts) <= self.max_batch
            ):
                classify.append(job)
                texts += len(job.texts)
            elif isinstance(job, GenerateJob) and len(generate) < room:
                generate.append(job)
            else:
                keep.append(job)
        self._pending = keep
        return classify, generate

    # ------------------------------------------------------------------ classification
    def _classify(self, jobs: list[ClassifyJob]) -> None:
        rows: list[list[int]] = []
        tails: list[list[int]] = []
        tasks: list[str] = []
        owners: list[tuple[ClassifyJob, ClassifyObjective, int]] = []  # first row per text
        for job in jobs:
            served, objective = job.served, job.objective
            if not served.batched:
                batch = objective.collate([Example(t, "") for t in job.texts], golds=False)
                scores = objective.scores(served.pm, batch)
                job.deliver(Labels(tuple(labelled(objective, s) for s in scores)))
                self._completed_one()
                self.metrics.batch("classify", len(job.texts))
                continue
            for text in job.texts:
                row = objective.encode(Example(text, ""))
                owners.append((job, objective, len(rows)))
                words = objective.words if objective.width > 1 else [objective.words[0][:1]]
                for word in words:
                    rows.append(row)
                    tails.append(word[:-1])
                    tasks.append(self._bank_key(served))
        if not rows:
            return
        width = 1 + max(len(t) for t in tails)
        ids, mask = pad(rows, self.pad_id, left=True, tails=tails)
        device = self.model.device
        logits = self.bank(ids.to(device), mask.to(device), tasks, logits_to_keep=width).logits
        logp = logits.float().log_softmax(-1)  # (N, width, V)
        self.metrics.batch("classify", len(owners))
        results: dict[int, list[dict[str, Any]]] = {}
        for job, objective, first in owners:
            scores = _scores(objective, logp, first)
            results.setdefault(id(job), []).append(labelled(objective, scores))
        for job in dict.fromkeys(job for job, _, _ in owners):
            job.deliver(Labels(tuple(results[id(job)])))
            self._completed_one()

    # ------------------------------------------------------------------ generation
    def _admit(self, jobs: list[GenerateJob]) -> None:
        """Score the prompts that ask for it (``score_prompt``), then prefill the rows that
        generate and let them join the running batch."""
        self._score([job for job in jobs if job.score_prompt])
        generate = []
        for job in jobs:
            if job.max_tokens > 0:
                generate.append(job)
            else:
                job.deliver(Done("length", len(job.ids), 0))
                self._completed_one()
        shared = [job for job in generate if job.served is not None and job.served.batched]
        for job in generate:
            if job.served is None or not job.served.batched:
                ids = torch.tensor([job.ids], device=self.model.device)
                embeds, mask, positions, _ = self._alone(job, ids)
                self._join(prefill(self.model, embeds, mask, positions), [job])
        for group in self._by_lead(shared):
            ids, mask = pad([job.ids for job in group], self.pad_id, left=True)
            device = self.model.device
            keys = [self._bank_key(job.served) for job in group if job.served is not None]
            self._join(self.bank.prefill(ids.to(device), mask.to(device), keys), group)
        if jobs:
            self.metrics.batch("prefill", len(jobs))

    def _alone(
        self, job: GenerateJob, ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Input embeddings, mask, positions and each token's slot of a row that runs by
        itself: the base model's tokens, or the tokens with an instance-dependent prompt."""
        mask = torch.ones_like(ids)
        slots = torch.arange(ids.shape[1], device=ids.device)[None]
        if job.served is None:
            return self.model.get_input_embeddings()(ids), mask, slots, slots
        ins = job.served.pm.insert(ids, mask, texts=[job.text])
        return ins.embeds, ins.attention_mask, ins.position_ids, ins.token_positions

    def _by_lead(self, jobs: list[GenerateJob]) -> list[list[GenerateJob]]:
        """``jobs`` in groups whose token ids all start with the lead BOS, or none do (a shared
        prefix batch needs one or the other)."""
        lead = sorted(jobs, key=lambda job: job.ids[0] == self.lead)
        return [list(group) for _, group in groupby(lead, key=lambda j: j.ids[0] == self.lead)]

    def _score(self, jobs: list[GenerateJob]) -> None:
        """Deliver each job's prompt tokens with their log-probabilities (:class:`Scored`)."""
        for job in jobs:
            if job.served is None or not job.served.batched:
                ids = torch.tensor([job.ids], device=self.model.device)
                embeds, mask, positions, slots = self._alone(job, ids)
                out = self.model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions)
                # each token after the first is predicted by the slot before its own
                self._scored(job, out.logits[0, slots[0, 1:] - 1])
        shared = [job for job in jobs if job.served is not None and job.served.batched]
        vocab = int(self.model.get_input_embeddings().weight.shape[0])
        for group in self._by_lead(shared):
            chunk: list[GenerateJob] = []
            for job in sorted(group, key=lambda j: len(j.ids)):
                if chunk and (len(chunk) + 1) * len(job.ids) * vocab > SCORE_ELEMENTS:
                    self._score_shared(chunk)
                    chunk = []
                chunk.append(job)
            self._score_shared(chunk)

    def _score_shared(self, jobs: list[GenerateJob]) -> None:
        """Score prompts of shared-prefix prompts in one mixed-prompt forward: a token after the
        lead BOS is predicted by the prompt's last slot, in the cached prefix."""
        ids, mask = pad([job.ids for job in jobs], self.pad_id, left=True)
        device = self.model.device
        keys = [self._bank_key(job.served) for job in jobs if job.served is not None]
        logits = self.bank(ids.to(device), mask.to(device), keys).logits  # (B, L, V)
        width = ids.shape[1]
        for b, (job, key) in enumerate(zip(jobs, keys, strict=True)):
            rows = logits[b, width - len(job.ids) : width - 1]
            if job.ids[0] == self.lead and len(job.ids) > 1:
                last = self.bank.prefix_state(key, True).last_logits[0]
                rows = torch.cat([last[None].to(rows.dtype), rows[1:]])
            self._scored(job, rows)

    def _scored(self, job: GenerateJob, logits: torch.Tensor) -> None:
        """Deliver ``job``'s prompt tokens scored by ``logits (L - 1, V)`` (the first one has
        no score)."""
        k = job.logprobs or 0
        first = TokenLogprob(job.ids[0], None, None)
        job.deliver(Scored((first, *token_logprobs(logits, job.ids[1:], k))))

    def _join(self, new: Running, jobs: list[GenerateJob]) -> None:
        self._running = new if self._running is None else self._running.join(new)
        self._rows.extend(Row(job, self.tokenizer) for job in jobs)

    def _decode(self) -> None:
        if self._running is None:
            return
        keep: list[int] = []
        tokens: list[int] = []
        now = time.monotonic()
        for i, row in enumerate(self._rows):
            job = row.job
            if job.cancelled:
                continue
            if now > job.deadline:
                job.deliver(Failed(TimedOut()))
                continue
            logits = self._running.logits[i]
            token = row.pick(logits)
            if token in self.eos:
                row.finish("stop")
            elif row.advance(logits, token) is None:
                keep.append(i)
                tokens.append(token)
                continue
            self._completed_one()
        self.metrics.batch("decode", len(self._rows))
        self.metrics.tokens.inc(len(tokens))
        if len(keep) < len(self._rows):
            self._rows = [self._rows[i] for i in keep]
            self._running = self._running.select(keep) if keep else None
        if self._running is not None:
            step = torch.tensor(tokens, device=self._running.mask.device)
            self._running = self._running.step(self.model, step)


def _scores(objective: ClassifyObjective, logp: torch.Tensor, first: int) -> torch.Tensor:
    """``(C,)`` label scores of the text whose rows start at ``first`` (see
    :meth:`ClassifyObjective.scores`: the summed log-probability of each answer's tokens)."""
    if objective.width == 1:
        return logp[first, 0, objective.targets[:, 0].to(logp.device)]
    scores = [
        sum(logp[first + c, k, token] for k, token in enumerate(word))
        for c, word in enumerate(objective.words)
    ]
    return torch.stack([torch.as_tensor(s) for s in scores])


def labelled(objective: ClassifyObjective, scores: torch.Tensor) -> dict[str, Any]:
    """The label and each label's score (summed log-probability) and probability."""
    labels = objective.spec.labels
    probs = scores.float().softmax(-1).tolist()
    values = scores.float().tolist()
    return {
        "label": labels[int(scores.argmax())],
        "scores": dict(zip(labels, values, strict=True)),
        "probabilities": dict(zip(labels, probs, strict=True)),
    }
