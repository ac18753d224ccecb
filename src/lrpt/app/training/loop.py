"""The training loop: AdamW on the method's parameter groups, checkpoints, resume, results.

One loop, top to bottom (:func:`train`):

1. AdamW over ``pm.param_groups(lr)`` (the method's groups, e.g. two learning rates, plus the
   encoder classifier's head), linear warmup over ``warmup`` × steps, then linear decay to 0.
2. Each optimizer step accumulates ``grad_accum`` micro-batches of ``batch_size`` examples (an
   effective batch of ``batch_size × grad_accum``), clips the gradient norm, steps.
3. Every ``eval_every`` steps (and at the last step) the validation metric is measured; the best
   trainable tensors so far are kept; ``patience`` evaluations without improvement stop early.
4. Every ``checkpoint_every`` steps the whole run state is written atomically (temp file, fsync,
   ``os.replace``) to ``OUT/checkpoint.pt``: trainable tensors, optimizer, scheduler, the torch /
   python / numpy RNG states, the data position, the best-so-far and the step. A run killed at
   any point resumes from its last checkpoint and ends bit-identical to an uninterrupted one.
5. The best checkpoint is restored and evaluated on the test set (unless ``evaluate_test`` is off:
   a selection run never reads the test split), the frozen model without prompt
   on the same test inputs (zero-shot), the prompt is saved to ``OUT/prompt/`` and the results to
   ``OUT/results.json``.

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
import json
import math
import pickle
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.optim.lr_scheduler import LambdaLR
from tqdm import tqdm

from lrpt.app.data.examples import Example, TaskData
from lrpt.app.data.objectives import Objective
from lrpt.app.train_config import TrainConfig
from lrpt.app.training.distributed import SINGLE, Dist, fingerprint
from lrpt.app.training.evaluate import Unprompted, evaluate, subset
from lrpt.app.training.memory import StepMemory
from lrpt.family import Family
from lrpt.fileio import atomic_write, atomic_write_text
from lrpt.methods import method_class
from lrpt.model import PromptedModel, embedding_weight
from lrpt.placement import dtype_name

CHECKPOINT = "checkpoint.pt"
RESULTS = "results.json"
PROMPT_DIR = "prompt"
CHECKPOINT_VERSION = 1


def method_defaults(method: str) -> dict[str, float]:
    """Training defaults (weight_decay, warmup, head_lr, lr) for ``method``: the
    ``training_defaults`` its class declares (docs/training.md); ValueError if unknown."""
    return dataclasses.asdict(method_class(method).training_defaults)


@dataclass
class Run:
    """Everything a training run uses.

    ``model``: ``name`` (the key or local path it was loaded from), ``family`` and ``encoder``
    (the input encoder's key, or None). ``init_seed``: the seed the method was built with
    (default: the training seed). ``dist``: this process's rank in a distributed run.
    """

    pm: PromptedModel
    objective: Objective
    task: TaskData
    cfg: TrainConfig
    out: Path
    model: dict[str, Any]
    init_seed: int | None = None
    dist: Dist = SINGLE


@dataclass
class RunState:
    """What changes while training; saved in every checkpoint."""

    step: int = 0
    position: int = 0  # training examples consumed (the data order is a function of it)
    losses: list[float] = field(default_factory=list)  # training loss per step
    history: list[dict[str, Any]] = field(default_factory=list)  # validation evaluations
    best: dict[str, Any] | None = None  # {"metric", "value", "step"}
    best_tensors: dict[str, torch.Tensor] | None = None
    bad_evals: int = 0  # evaluations since the best one
    stopped_early: bool = False
    train_seconds: float = 0.0  # optimizer steps only
    validation_seconds: float = 0.0
    step_peak_mb: float | None = None  # the most memory a step added (see memory.StepMemory)
    skipped_steps: int = 0  # float16: steps the loss scaler skipped for non-finite gradients


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


def seed_everything(seed: int) -> None:
    """Seed torch, python ``random`` and numpy's global generator."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def rng_states() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [kind, [int(k) for k in keys], int(pos), int(has_gauss), float(gauss)],
    }
    if torch.cuda.is_available():  # dropout on a CUDA device draws from its own generators
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def train_mode(pm: PromptedModel) -> None:
    """The method's modules in training mode; the frozen model and encoder in eval mode."""
    pm.train()
    pm.model.eval()
    if pm.encoder is not None:
        pm.encoder.eval()


def write_atomic(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)``, fsync, and rename onto ``path`` (never a half-written file)."""
    atomic_write(path, write)


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def run_identity(run: Run) -> dict[str, Any]:
    """What must match for ``--resume`` to continue a run (JSON-able)."""
    cfg = dataclasses.asdict(run.cfg)
    # may change between attempts (checkpointing and the prefix path change memory and speed;
    # the numbers only within float rounding; the test settings only what is evaluated after
    # the last step: a run trained without a test can be finished with one)
    free = ("checkpoint_every", "eval_batch_size", "gradient_checkpointing", "share_prefix")
    for key in (*free, "evaluate_test", "max_test_examples"):
        cfg.pop(key)
    identity = {
        "method": run.pm.method.key,
        "config": dataclasses.asdict(run.pm.method.config),
        "model": run.model,
        "task": run.objective.spec.to_dict() | {"sizes": run.task.sizes()},
        "training": cfg,
    }
    dtype = base_dtype(run.pm)
    if dtype != torch.float32:  # another precision, other numbers
        identity["dtype"] = dtype_name(dtype)
    return identity


def base_dtype(pm: PromptedModel) -> torch.dtype:
    """The frozen model's dtype (its input embeddings')."""
    return embedding_weight(pm.model).dtype


def base_device(pm: PromptedModel) -> torch.device:
    """The frozen model's device (its input embeddings')."""
    return embedding_weight(pm.model).device


def loss_scaler(pm: PromptedModel) -> torch.amp.GradScaler:
    """Loss scaling for a float16 base (its gradients underflow without it); a no-op otherwise.

    The prompt's parameters stay float32, so the scaler unscales float32 gradients and skips a
    step whose gradients are not finite (lowering the scale)."""
    return torch.amp.GradScaler(base_device(pm).type, enabled=base_dtype(pm) == torch.float16)


def check_out(out: Path, resume: bool) -> None:
    """Raise ``FileExistsError`` if ``out`` exists, is not empty and ``resume`` is False."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {str(out)!r} exists and is not a directory")
    if not resume and out.exists() and any(out.iterdir()):
        raise FileExistsError(
            f"output directory {str(out)!r} already exists: pass --resume to continue its run, "
            "or choose a new --out"
        )


def prepare_out(out: Path, resume: bool) -> bool:
    """Create ``out`` (see :func:`check_out`); → whether a checkpoint to resume from exists."""
    check_out(out, resume)
    out.mkdir(parents=True, exist_ok=True)
    return resume and (out / CHECKPOINT).is_file()


# --- checkpoints ---------------------------------------------------------------------------


def save_checkpoint(
    run: Run, optimizer: Any, scheduler: Any, state: RunState, scaler: Any = None
) -> None:
    """Write the whole run state atomically to ``OUT/checkpoint.pt``."""
    data: dict[str, Any] = {
        "version": CHECKPOINT_VERSION,
        "identity": json.dumps(run_identity(run), sort_keys=True),
        "trainable": run.pm.trainable_state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_states(),
        "state": dataclasses.asdict(state) | {"best_tensors": state.best_tensors},
    }
    if run.dist.active:
        data["world_size"] = run.dist.world
    if scaler is not None and scaler.is_enabled():
        data["scaler"] = scaler.state_dict()
    write_atomic(run.out / CHECKPOINT, lambda tmp: torch.save(data, tmp))


def load_checkpoint(run: Run, optimizer: Any, scheduler: Any, scaler: Any = None) -> RunState:
    """Restore a run from ``OUT/checkpoint.pt``; the run's settings must be the saved ones.

    The checkpoint loads on any device: tensors are read on the CPU and copied to the
    prompt's (the optimizer moves its state to its parameters' device)."""
    path = run.out / CHECKPOINT
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as err:
        raise ValueError(
            f"{path}: not a readable lrpt checkpoint ({err}); delete it to start over"
        ) from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not an lrpt checkpoint (a {type(data).__name__})")
    if data.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint format {data.get('version')}, expected 1")
    saved_world = data.get("world_size", 1)
    if saved_world != run.dist.world:
        raise ValueError(
            f"cannot resume {str(run.out)!r}: its checkpoint was written by a run of "
            f"{_processes(saved_world)}, this run has {_processes(run.dist.world)}; resume it "
            f"with {_processes(saved_world)} (with another number the per-rank batches, and so "
            "the float sums, would differ from the run's)"
        )
    saved, current = json.loads(data["identity"]), run_identity(run)
    if saved != current:
        differ = sorted(k for k in saved.keys() | current.keys() if saved.get(k) != current.get(k))
        raise ValueError(
            f"cannot resume {str(run.out)!r}: the run's {', '.join(differ)} differ from the "
            f"checkpoint's (saved {', '.join(f'{k}={saved.get(k)}' for k in differ)})"
        )
    run.pm.load_trainable_state_dict(data["trainable"])
    optimizer.load_state_dict(data["optimizer"])
    scheduler.load_state_dict(data["scheduler"])
    if scaler is not None and "scaler" in data:
        scaler.load_state_dict(data["scaler"])
    set_rng_states(data["rng"])
    return RunState(**data["state"])


def _processes(n: int) -> str:
    return "1 process" if n == 1 else f"{n} processes"


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
    return finish(run, state, len(validation), progress, spec, extra)


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
    metrics = evaluate(
        run.pm,
        run.objective,
        examples,
        batch_size=run.cfg.eval_batch_size,
        dist=run.dist.evaluation,
    )
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


def finish(
    run: Run,
    state: RunState,
    n_validation: int,
    progress: bool,
    spec: dict[str, Any] | None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Restore the best tensors, test, zero-shot, save the prompt and ``results.json``
    (``extra``: more entries for it, e.g. the steps' peak memory)."""
    cfg, pm = run.cfg, run.pm
    if state.best_tensors is not None:
        pm.load_trainable_state_dict(state.best_tensors)
    # a selection run never reads the test split: no test, no zero-shot
    test = subset(run.task.test, cfg.max_test_examples) if cfg.evaluate_test else []
    timing: dict[str, float] = {}
    test_metrics = None
    if test:
        t0 = time.perf_counter()
        desc = "test" if progress else None
        test_metrics = evaluate(
            pm,
            run.objective,
            test,
            batch_size=cfg.eval_batch_size,
            desc=desc,
            dist=run.dist.evaluation,
        )
        timing["test_seconds"] = time.perf_counter() - t0
    zero_shot, reason = zero_shot_test(run, test, progress, timing)
    results = {
        "method": pm.method.key,
        "config": dataclasses.asdict(pm.method.config),
        "model": run.model,
        "task": run.objective.spec.to_dict()
        | {"sizes": run.task.sizes(), "validation_used": n_validation, "test_used": len(test)},
        "seed": cfg.seed,
        "trainable_params": pm.num_trainable() | {"total": sum(pm.num_trainable().values())},
        "prompt_path": {"shared_prefix": pm.shares_prefix(), "reason": pm.unshared_reason()},
        "device": str(base_device(pm)),
        "dtype": dtype_name(base_dtype(pm)),
        "steps": state.step,
        "stopped_early": state.stopped_early,
        "train_seconds": round(state.train_seconds, 3),
        "seconds_per_step": round(state.train_seconds / max(state.step, 1), 4),
        "best_validation": state.best,
        "test": test_metrics,
        "zero_shot_test": zero_shot,
        "training": dataclasses.asdict(cfg),
        "validation_history": state.history,
        "train_loss": state.losses,
        "timing": {"validation_seconds": round(state.validation_seconds, 3)}
        | {k: round(v, 3) for k, v in timing.items()},
    }
    if reason is not None:
        results["zero_shot_reason"] = reason
    if run.dist.active:
        results["distributed"] = {
            "processes": run.dist.world,
            "backend": run.dist.backend,
            "per_rank_batch_size": run.dist.per_rank(cfg.batch_size),
            "fsdp": run.dist.fsdp,
        }
    results |= extra or {}
    if spec is not None:
        results["spec"] = spec
    if run.dist.main:
        save_artifact(run, state, test_metrics)
        write_json(run.out / RESULTS, results)
    run.dist.barrier("waiting for rank 0 to write the results")
    return results


def zero_shot_test(
    run: Run, test: Sequence[Example], progress: bool, timing: dict[str, float]
) -> tuple[dict[str, float] | None, str | None]:
    """The frozen model with the same template and no prompt on ``test``; or None and why."""
    if run.pm.family == Family.ENCODER:
        return (
            None,
            "an encoder classifier's head is newly initialised: there is no zero-shot model",
        )
    if not run.cfg.evaluate_test:
        return None, "test evaluation is off (--no-evaluate-test)"
    if not test:
        return None, "the task has no test examples"
    t0 = time.perf_counter()
    plain = Unprompted(run.pm.model, run.pm.family)
    desc = "zero-shot test" if progress else None
    metrics = evaluate(
        plain,
        run.objective,
        test,
        batch_size=run.cfg.eval_batch_size,
        desc=desc,
        dist=run.dist.evaluation,
    )
    timing["zero_shot_seconds"] = time.perf_counter() - t0
    return metrics, None


def save_artifact(run: Run, state: RunState, test_metrics: dict[str, float] | None) -> None:
    """The trained prompt (best tensors) as an artifact in ``OUT/prompt/``."""
    from lrpt.artifact import save_prompt

    training = {
        "task": run.objective.spec.to_dict(),
        "seed": run.cfg.seed,
        "steps": state.step,
        "best_validation": state.best,
        "test": test_metrics,
    }
    save_prompt(
        run.pm,
        run.out / PROMPT_DIR,
        model_name=run.model["name"],
        training=training,
        overwrite=True,
        init_seed=run.init_seed if run.init_seed is not None else run.cfg.seed,
        encoder_name=run.model.get("encoder"),
        model_revision=run.model.get("revision"),
    )
