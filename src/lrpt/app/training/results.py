"""What a run leaves behind: ``OUT/results.json`` and the trained prompt in ``OUT/prompt/``.

:func:`results` assembles the results of a finished run (its settings, the best validation, the
test and zero-shot metrics, losses, timings, placement); :func:`write_results`, on rank 0, saves
the prompt's best tensors as an artifact and writes ``results.json`` atomically.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from lrpt.app.training.outdir import PROMPT_DIR, RESULTS
from lrpt.app.training.state import Run, RunState, base_device, base_dtype
from lrpt.fileio import atomic_write_text
from lrpt.placement import dtype_name


@dataclass
class Outcome:
    """What the loop measured after training: the examples used and the test metrics."""

    n_validation: int  # validation examples evaluated
    n_test: int  # test examples evaluated (0: test evaluation off)
    test: dict[str, float] | None = None
    zero_shot: dict[str, float] | None = None
    zero_shot_reason: str | None = None  # why there is no zero-shot test
    timing: dict[str, float] = field(default_factory=dict)  # test and zero-shot seconds


def results(
    run: Run,
    state: RunState,
    outcome: Outcome,
    spec: dict[str, Any] | None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The results of a finished run, as ``results.json`` holds them (``extra``: more entries,
    e.g. the steps' peak memory; ``spec``: the run spec that built the run)."""
    cfg, pm = run.cfg, run.pm
    used = {"validation_used": outcome.n_validation, "test_used": outcome.n_test}
    out: dict[str, Any] = {
        "method": pm.method.key,
        "config": dataclasses.asdict(pm.method.config),
        "model": run.model,
        "task": run.objective.spec.to_dict() | {"sizes": run.task.sizes()} | used,
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
        "test": outcome.test,
        "zero_shot_test": outcome.zero_shot,
        "training": dataclasses.asdict(cfg),
        "validation_history": state.history,
        "train_loss": state.losses,
        "timing": {"validation_seconds": round(state.validation_seconds, 3)}
        | {k: round(v, 3) for k, v in outcome.timing.items()},
    }
    if outcome.zero_shot_reason is not None:
        out["zero_shot_reason"] = outcome.zero_shot_reason
    if run.dist.active:
        out["distributed"] = {
            "processes": run.dist.world,
            "backend": run.dist.backend,
            "per_rank_batch_size": run.dist.per_rank(cfg.batch_size),
            "fsdp": run.dist.fsdp,
        }
    out |= extra or {}
    if spec is not None:
        out["spec"] = spec
    return out


def write_results(run: Run, state: RunState, data: dict[str, Any]) -> None:
    """On rank 0: the prompt (best tensors) in ``OUT/prompt/`` and ``data`` (the run's
    :func:`results`) in ``OUT/results.json``; nothing on the other ranks."""
    if run.dist.main:
        save_artifact(run, state, data["test"])
        atomic_write_text(run.out / RESULTS, json.dumps(data, indent=2) + "\n")


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
