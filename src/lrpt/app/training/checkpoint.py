"""Checkpoints: the whole run state in ``OUT/checkpoint.pt``, written atomically, and resume.

Every ``checkpoint_every`` steps the loop writes (temp file, fsync, ``os.replace``) the trainable
tensors, the optimizer, the scheduler (and a float16 run's loss scaler), the torch / python /
numpy (and CUDA) RNG states, the :class:`~lrpt.app.training.state.RunState` (data position,
best-so-far, step) and the run's identity (:func:`run_identity`). A run killed at any point
resumes from its last checkpoint and ends bit-identical to an uninterrupted one; a resume whose
settings differ from the checkpoint's, or whose number of processes does, is refused.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import random
from typing import Any

import numpy as np
import torch

from lrpt.app.training.outdir import CHECKPOINT
from lrpt.app.training.state import Run, RunState, base_dtype
from lrpt.fileio import atomic_write
from lrpt.placement import dtype_name

CHECKPOINT_VERSION = 1


def seed_everything(seed: int) -> None:
    """Seed torch, python ``random`` and numpy's global generator."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def rng_states() -> dict[str, Any]:
    """The torch, python, numpy (and CUDA) generators' states, as a checkpoint stores them."""
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
    """Restore the generators' states :func:`rng_states` saved."""
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


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
    atomic_write(run.out / CHECKPOINT, lambda tmp: torch.save(data, tmp))


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
        raise ValueError(
            f"{path}: checkpoint format {data.get('version')}, expected {CHECKPOINT_VERSION}"
        )
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
