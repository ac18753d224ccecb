"""The training loop: AdamW on the method's parameter groups, validation, early stopping.

One loop, top to bottom (:func:`train`):

1. AdamW over ``pm.param_groups(lr)`` (the method's groups, e.g. two learning rates, plus the
   encoder classifier's head), linear warmup over ``warmup`` × steps, then linear decay to 0.
2. Each optimizer step accumulates ``grad_accum`` micro-batches of ``batch_size`` examples (an
   effective batch of ``batch_size × grad_accum``), clips the gradient norm, steps.
3. Every ``eval_every`` steps (and at the last step) the validation metric is measured; the best
   trainable tensors so far are kept; ``patience`` evaluations without improvement stop early.
4. Every ``checkpoint_every`` steps the whole run state is written to ``OUT/checkpoint.pt``
   (:mod:`~lrpt.app.training.checkpoint`): a run killed at any point resumes from its last
   checkpoint and ends bit-identical to an uninterrupted one.
5. The best checkpoint is restored and evaluated on the test set (unless ``evaluate_test`` is off:
   a selection run never reads the test split), the frozen model without prompt
   on the same test inputs (zero-shot), the prompt is saved to ``OUT/prompt/`` and the results to
   ``OUT/results.json`` (:mod:`~lrpt.app.training.results`).

The data order is a function of (seed, position): epoch ``e`` is the permutation drawn by
``numpy.random.default_rng([seed, e])``, so a resumed run needs only the position. The frozen
model (and the input encoder) stay in eval mode (no dropout); only the method's modules train.

Devices and precision: the loop runs where the frozen model is, in its dtype. The prompt's
parameters and the optimizer's state stay float32 (master weights) and the loss is taken in
float32; on a float16 base the loss is scaled (``torch.amp.GradScaler``) so that gradients
do not underflow, and a step whose gradients overflow is skipped. ``results.json`` records the
device and dtype, and the most memory one step added (:mod:`~lrpt.app.training.memory`).
``gradient_checkpointing`` recomputes the frozen model's layer activations in the backward pass
(:mod:`lrpt.checkpointing`); the shared prefix still runs once per batch.

Several processes (``torchrun``, ``accelerate launch``; :mod:`~lrpt.app.training.distributed`):
``batch_size`` is the global micro-batch and each rank takes its share of it; the prompt's
gradients are averaged over the ranks before clipping, so every rank steps identically. Rank 0
alone writes checkpoints (with the world size: a resume must use the same number of processes),
the artifact and ``results.json``; evaluation is sharded and gathered.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.optim.lr_scheduler import LambdaLR
from tqdm import tqdm

from lrpt.app.data.examples import Example
from lrpt.app.data.objectives import Runnable
from lrpt.app.train_config import TrainConfig
from lrpt.app.training.checkpoint import load_checkpoint, save_checkpoint, seed_everything
from lrpt.app.training.distributed import fingerprint
from lrpt.app.training.evaluate import Unprompted, evaluate, subset
from lrpt.app.training.memory import StepMemory
from lrpt.app.training.outdir import prepare_out
from lrpt.app.training.results import Outcome, results, write_results
from lrpt.app.training.state import Run, RunState, base_device, base_dtype
from lrpt.family import Family
from lrpt.methods import method_class
from lrpt.model import PromptedModel


def method_defaults(method: str) -> dict[str, float]:
    """Training defaults (weight_decay, warmup, head_lr, lr) for ``method``: the
    ``training_defaults`` its class declares (docs/training.md); ValueError if unknown."""
    return dataclasses.asdict(method_class(method).training_defaults)


# --- helpers -------------------------------------------------------------------------------


def lr_lambda(cfg: TrainConfig) -> Any:
    """Linear warmup over ``warmup·steps`` steps, then linear decay to 0 at ``steps``."""
    warmup = int(cfg.value("warmup") * cfg.steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (cfg.steps - step) / max(1, cfg.steps - warmup))

    return factor


def batch_indices(n: int, seed: int, position: int, size: int) -> list[int]:
    """Indices of the ``size`` training examples from ``position`` on, in the seeded order."""
    out: list[int] = []
    while len(out) < size:
        epoch, offset = divmod(position, n)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        take = min(size - len(out), n - offset)
        out.extend(int(i) for i in perm[offset : offset + take])
        position += take
    return out


def train_mode(pm: PromptedModel) -> None:
    """The method's modules in training mode; the frozen model and encoder in eval mode."""
    pm.train()
    pm.model.eval()
    if pm.encoder is not None:
        pm.encoder.eval()


def loss_scaler(pm: PromptedModel) -> torch.amp.GradScaler:
    """Loss scaling for a float16 base (its gradients underflow without it); a no-op otherwise.

    The prompt's parameters stay float32, so the scaler unscales float32 gradients and skips a
    step whose gradients are not finite (lowering the scale)."""
    return torch.amp.GradScaler(base_device(pm).type, enabled=base_dtype(pm) == torch.float16)


# --- the loop ------------------------------------------------------------------------------


def train(
    run: Run, *, resume: bool = False, progress: bool = True, spec: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Train ``run`` (resuming from its checkpoint if asked and present); → the results dict.

    Training options left unset take the method's defaults (:meth:`TrainConfig.resolved`).
    ``spec``: the run spec that built ``run`` (:mod:`lrpt.app.spec`), recorded in the results.
    """
    head = bool(run.pm.head_parameters())
    run = dataclasses.replace(
        run, cfg=run.cfg.resolved(method_defaults(run.pm.method.key), head=head)
    )
    cfg, pm, dist = run.cfg, run.pm, run.dist
    if not run.task.train:
        raise ValueError(f"task {run.task.name!r} has no training examples")
    dist.per_rank(cfg.batch_size)  # a global batch the ranks cannot split evenly is refused
    progress = progress and dist.main
    has_checkpoint = prepare_out(run.out, resume)
    optimizer = torch.optim.AdamW(
        pm.param_groups(cfg.value("lr"), cfg.head_lr), weight_decay=cfg.value("weight_decay")
    )
    scheduler = LambdaLR(optimizer, lr_lambda(cfg))
    scaler = loss_scaler(pm)
    if has_checkpoint:
        state = load_checkpoint(run, optimizer, scheduler, scaler)
    else:
        state = RunState()
        seed_everything(cfg.seed)
    if dist.active:
        start = {"step": state.step, "prompt": fingerprint(pm.trainable_state_dict())}
        dist.check_same("where the run starts (checkpoint step, prompt hash)", start)
    validation = subset(run.task.validation, cfg.max_eval_examples)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    examples_per_step = cfg.batch_size * cfg.grad_accum
    pm.gradient_checkpointing = cfg.gradient_checkpointing
    if not cfg.share_prefix:
        pm.share_prefix = False
    memory = StepMemory(base_device(pm))
    train_mode(pm)
    bar = tqdm(
        total=cfg.steps,
        initial=state.step,
        desc="train",
        unit="step",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    while state.step < cfg.steps and not state.stopped_early:
        memory.start()
        t0 = time.perf_counter()
        loss = train_step(run, state, params, optimizer, scheduler, scaler)
        state.train_seconds += time.perf_counter() - t0
        added = memory.stop()
        if added is not None:
            state.step_peak_mb = max(added, state.step_peak_mb or 0.0)
        state.step += 1
        state.losses.append(loss)
        bar.update()
        speed = examples_per_step * len(state.losses) / max(state.train_seconds, 1e-9)
        bar.set_postfix(loss=f"{loss:.4f}", ex_s=f"{speed:.1f}")
        if validation and (state.step % cfg.eval_every == 0 or state.step == cfg.steps):
            validate(run, state, validation, bar if progress else None)
        last = state.step == cfg.steps or state.stopped_early
        if state.step % cfg.checkpoint_every == 0 or last:
            if dist.active:
                prompt = fingerprint(pm.trainable_state_dict())
                dist.check_same(f"the prompt after step {state.step} (its hash)", prompt)
            if dist.main:
                save_checkpoint(run, optimizer, scheduler, state, scaler)
    bar.close()
    peak = state.step_peak_mb
    extra: dict[str, Any] = {
        "step_peak_memory": {
            "mb": None if peak is None else round(peak, 1),
            "measure": memory.measure,
        }
    }
    if scaler.is_enabled():
        extra["loss_scale"] = {"final": scaler.get_scale(), "skipped_steps": state.skipped_steps}
    data = results(run, state, test_best(run, state, len(validation), progress), spec, extra)
    write_results(run, state, data)
    dist.barrier("waiting for rank 0 to write the results")
    return data


def train_step(
    run: Run,
    state: RunState,
    params: Sequence[torch.nn.Parameter],
    optimizer: Any,
    scheduler: Any,
    scaler: Any = None,
) -> float:
    """One optimizer step over ``grad_accum`` micro-batches; → the step's mean loss.

    With an enabled loss ``scaler`` (a float16 base) the loss is scaled before backward and the
    gradients unscaled before clipping; a step with non-finite gradients is skipped."""
    cfg, train = run.cfg, run.task.train
    total = 0.0
    for _ in range(cfg.grad_accum):
        index = batch_indices(len(train), cfg.seed, state.position, cfg.batch_size)
        if run.dist.active:  # this rank's share of the global batch
            index = run.dist.shard(index)
        state.position += cfg.batch_size
        batch = run.objective.collate([train[i] for i in index])
        loss = run.objective.loss(run.pm, batch) / cfg.grad_accum
        if scaler is not None and scaler.is_enabled():
            scaler.scale(loss).backward()
        else:
            loss.backward()
        total += loss.item()
    if run.dist.active:  # the mean over the ranks: every rank steps on the same gradients
        total = run.dist.average([p.grad for p in params if p.grad is not None], total)
    if not math.isfinite(total):
        raise ValueError(f"the training loss is {total} at step {state.step + 1}: lower --lr")
    if scaler is not None and scaler.is_enabled():
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        scale = scaler.get_scale()
        scaler.step(optimizer)
        scaler.update()
        state.skipped_steps += int(scaler.get_scale() < scale)  # the scale drops on a skip
    else:
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return total


def validate(run: Run, state: RunState, examples: Sequence[Example], bar: Any) -> None:
    """Evaluate on validation; keep the best tensors; count evaluations without improvement."""
    t0 = time.perf_counter()
    metrics = run_evaluation(run, run.pm, examples)
    state.validation_seconds += time.perf_counter() - t0
    train_mode(run.pm)
    metric = run.objective.spec.metric
    value = metrics[metric]
    state.history.append({"step": state.step} | metrics)
    if state.best is None or value > state.best["value"]:
        state.best = {"metric": metric, "value": value, "step": state.step}
        state.best_tensors = {k: v.clone() for k, v in run.pm.trainable_state_dict().items()}
        state.bad_evals = 0
    else:
        state.bad_evals += 1
        state.stopped_early = run.cfg.patience is not None and state.bad_evals >= run.cfg.patience
    if bar is not None:
        best = state.best
        bar.write(
            f"step {state.step}: validation {metric} {value:.4f} "
            f"(best {best['value']:.4f} at step {best['step']})",
            file=sys.stderr,
        )


def test_best(run: Run, state: RunState, n_validation: int, progress: bool) -> Outcome:
    """Restore the best tensors; evaluate them, and the frozen model without a prompt
    (zero-shot), on the test set (``n_validation``: the validation examples used)."""
    cfg = run.cfg
    if state.best_tensors is not None:
        run.pm.load_trainable_state_dict(state.best_tensors)
    # a selection run never reads the test split: no test, no zero-shot
    test = subset(run.task.test, cfg.max_test_examples) if cfg.evaluate_test else []
    outcome = Outcome(n_validation, len(test))
    if test:
        t0 = time.perf_counter()
        outcome.test = run_evaluation(run, run.pm, test, "test" if progress else None)
        outcome.timing["test_seconds"] = time.perf_counter() - t0
    outcome.zero_shot_reason = no_zero_shot(run, test)
    if outcome.zero_shot_reason is None:
        t0 = time.perf_counter()
        plain = Unprompted(run.pm.model, run.pm.family)
        desc = "zero-shot test" if progress else None
        outcome.zero_shot = run_evaluation(run, plain, test, desc)
        outcome.timing["zero_shot_seconds"] = time.perf_counter() - t0
    return outcome


def no_zero_shot(run: Run, test: Sequence[Example]) -> str | None:
    """Why the frozen model without a prompt is not evaluated on ``test``; None if it is."""
    if run.pm.family == Family.ENCODER:
        return "an encoder classifier's head is newly initialised: there is no zero-shot model"
    if not run.cfg.evaluate_test:
        return "test evaluation is off (--no-evaluate-test)"
    if not test:
        return "the task has no test examples"
    return None


def run_evaluation(
    run: Run, model: Runnable, examples: Sequence[Example], desc: str | None = None
) -> dict[str, float]:
    """The task's metrics of ``model`` on ``examples``, in the run's evaluation batches and
    processes."""
    return evaluate(
        model, run.objective, examples, batch_size=run.cfg.eval_batch_size, desc=desc,
        dist=run.dist.evaluation,
    )  # fmt: skip
