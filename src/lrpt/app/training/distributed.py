"""Data-parallel training across processes that ``torchrun`` or ``accelerate launch`` started.

A launcher sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` in each process's environment;
:func:`from_environment` then builds accelerate's :class:`~accelerate.Accelerator` (which joins
the process group: gloo on the CPU, NCCL on CUDA devices, each rank on ``cuda:LOCAL_RANK``) with
a timeout on every collective, so a rank that hangs or dies ends the run instead of stalling it.
Without a launcher it returns :data:`SINGLE`, whose operations do nothing: the single-process
path is the one it always was.

What the training loop asks of a :class:`Dist`:

* :meth:`Dist.shard`: this rank's share of a global batch (``--batch-size`` is the global batch;
  each rank takes ``batch_size / world`` consecutive examples of it);
* :meth:`Dist.average`: after the backward passes, one all-reduce of the prompt's flattened
  gradients (and the loss), divided by the world size. The prompt's few thousand parameters are
  one bucket; the frozen model is never communicated. (DDP's hooks only see ``forward``, and a
  prompt also runs through the shared prefix, so the loop averages the gradients itself.) Every
  rank then clips and steps on identical gradients and holds an identical prompt;
* :meth:`Dist.gather`: evaluation batches are dealt round-robin to the ranks and the predictions
  gathered on every rank, so each rank computes the same metrics (and the same early-stopping
  decision);
* :meth:`Dist.check_same`: all ranks must agree on a value (the run spec, the prompt's bytes),
  else every rank raises :class:`DistributedError` naming where they differ.

With ``fsdp`` the frozen base's transformer blocks are sharded over the ranks with FSDP2's
``fully_shard`` (:func:`shard_base`): each rank keeps ``1/world`` of every block and gathers a
block's weights while it runs (forward, and again in the backward pass). The input embeddings
(and a head tied to them) stay replicated, so the prompt's vocabulary initialisation, its
insertion and the artifact's embedding fingerprint read them as in one process. A sharded
block's forward is a collective, so under ``fsdp`` every rank runs every evaluation batch
(:attr:`Dist.evaluation`); the prompt runs with every row (no shared prefix: the prefix's
keys and values reach the rows through the cache, a path FSDP's backward hooks do not see).

Rank 0 (:attr:`Dist.main`) alone writes checkpoints, the artifact and ``results.json`` and shows
progress. A collective that fails (a rank died, or did not answer within the timeout) raises
:class:`DistributedError`, a one-line error on every rank still running.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import torch

from lrpt.errors import LrptError

DEFAULT_TIMEOUT = 600.0  # seconds a collective may wait for the other ranks
ONE_PROCESS_HINT = (
    "accelerate launch --cpu runs one process whatever --num_processes says: use torchrun "
    "--nproc_per_node N or accelerate launch --multi_gpu --num_processes N"
)
log = logging.getLogger(__name__)
T = TypeVar("T")


class DistributedError(LrptError):
    """The processes of a distributed run disagree, or one of them stopped answering."""


@dataclass(frozen=True)
class Dist:
    """This process's place in the run: ``rank`` of ``world`` processes (1: no process group)."""

    rank: int = 0
    world: int = 1
    device: torch.device | None = None  # the rank's device (None: as the run spec says)
    backend: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    fsdp: bool = False  # the frozen base's blocks sharded over the ranks (shard_base)
    accelerator: Any = field(default=None, repr=False, compare=False)

    @property
    def main(self) -> bool:
        """Whether this process writes the outputs and shows progress (rank 0)."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def evaluation(self) -> Dist:
        """How evaluation is split: round-robin over the ranks, or (``fsdp``: every forward is a
        collective) every rank runs every batch."""
        return SINGLE if self.fsdp else self

    def per_rank(self, batch_size: int) -> int:
        """The examples each rank takes of a global batch of ``batch_size``."""
        if batch_size % self.world:
            raise ValueError(
                f"--batch-size is the global batch, split evenly over the {self.world} "
                f"processes: {batch_size} is not a multiple of {self.world}"
            )
        return batch_size // self.world

    def shard(self, index: Sequence[int]) -> list[int]:
        """This rank's consecutive share of the global batch ``index``."""
        size = self.per_rank(len(index))
        return list(index[self.rank * size : (self.rank + 1) * size])

    def average(self, grads: Sequence[torch.Tensor], loss: float) -> float:
        """Average ``grads`` (in place) and ``loss`` over the ranks; → the averaged loss."""
        if not self.active:
            return loss
        flat = torch.cat([g.reshape(-1).float() for g in grads])
        flat = torch.cat([flat, flat.new_tensor([loss])])
        self._collective("averaging the gradients", torch.distributed.all_reduce, flat)
        flat /= self.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()
        return float(flat[-1])

    def gather(self, items: list[T]) -> list[T]:
        """Every rank's ``items``, concatenated in rank order, on every rank."""
        if not self.active:
            return items
        out: list[list[T] | None] = [None] * self.world
        self._collective("gathering results", torch.distributed.all_gather_object, out, items)
        return [item for part in out for item in part or []]

    def check_same(self, what: str, value: Any) -> None:
        """Raise :class:`DistributedError` on every rank unless all ranks' ``value`` are equal
        (a JSON-able value; its differences are named)."""
        if not self.active:
            return
        values = self.gather([value])
        if all(v == values[0] for v in values):
            return
        rank = next(r for r, v in enumerate(values) if v != values[0])
        raise DistributedError(
            f"the {self.world} processes disagree on {what}: rank {rank} has "
            f"{describe_difference(values[0], values[rank])} (rank 0's first); "
            "every rank must run the same command"
        )

    def barrier(self, what: str) -> None:
        if self.active:
            self._collective(what, torch.distributed.barrier)

    def close(self) -> None:
        """Leave the process group (at the end of the run)."""
        if self.active and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

    def lost(self, what: str, err: BaseException) -> DistributedError:
        """The one-line error of a collective that failed (``what`` was being done)."""
        return DistributedError(
            f"rank {self.rank} of {self.world}: {what} failed, another process died or "
            f"did not answer within {self.timeout:g} s ({first_line(err)})"
        )

    def _collective(self, what: str, op: Any, *args: Any) -> None:
        try:
            op(*args)
        except RuntimeError as err:  # DistBackendError, a timeout, a peer that closed
            raise self.lost(what, err) from None


SINGLE = Dist()


def describe_difference(a: Any, b: Any, path: str = "") -> str:
    """The first place where JSON-able ``b`` differs from ``a``: ``key.sub = b's (not a's)``."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(a.keys() | b.keys(), key=str):
            if a.get(key) != b.get(key):
                return describe_difference(a.get(key), b.get(key), f"{path}{key}.")
    where = path.rstrip(".") or "the value"
    return f"{where} = {json.dumps(b, default=str)} (not {json.dumps(a, default=str)})"


def first_line(err: BaseException) -> str:
    """The first line of ``err``'s message (or its type's name)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def fingerprint(tensors: dict[str, torch.Tensor]) -> str:
    """A hash of ``tensors``' names, shapes and bytes (ranks compare their prompts with it)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        value = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}{tuple(value.shape)}{value.dtype}".encode())
        digest.update(value.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def launched_world() -> int:
    """The number of processes the launcher said it started (``WORLD_SIZE``; 1 without one)."""
    value = os.environ.get("WORLD_SIZE", "1")
    try:
        world = int(value)
    except ValueError:
        raise ValueError(f"WORLD_SIZE must be an integer ≥ 1, got {value!r}") from None
    if world < 1:
        raise ValueError(f"WORLD_SIZE must be an integer ≥ 1, got {value!r}")
    return world


def launch_check(processes: int | None) -> int:
    """The number of processes the launcher started, checked against ``processes`` (if given);
    sharding launches (accelerate's FSDP, DeepSpeed) are refused."""
    if processes is not None and (not isinstance(processes, int) or processes < 1):
        raise ValueError(f"--processes must be an integer ≥ 1, got {processes!r}")
    for engine in ("FSDP", "DEEPSPEED"):
        if os.environ.get(f"ACCELERATE_USE_{engine}", "").lower() == "true":
            raise DistributedError(
                f"accelerate launch with {engine.replace('DEEPSPEED', 'DeepSpeed')}: lrpt "
                "shards the frozen base itself (lrpt train --fsdp); launch without an FSDP or "
                "DeepSpeed configuration"
            )
    world = launched_world()
    accelerate_cpu = world == 1 and os.environ.get("ACCELERATE_USE_CPU", "").lower() == "true"
    if processes is not None and processes != world:
        hint = f" ({ONE_PROCESS_HINT.replace(' N', f' {processes}')})" if accelerate_cpu else ""
        raise DistributedError(
            f"--processes {processes}: the launcher started {world} process"
            f"{'es' if world > 1 else ''}{hint}"
        )
    if accelerate_cpu and processes is None:
        log.warning("lrpt: training in one process (%s)", ONE_PROCESS_HINT)
    return world


def shard_base(model: torch.nn.Module, device: torch.device, world: int) -> int:
    """Shard each transformer block of the frozen ``model`` (loaded on the CPU) over the
    ``world`` ranks onto ``device`` (FSDP2 ``fully_shard``; a block at a time, so the whole
    model never sits on the device), then move the rest (embeddings, norms, head) there;
    → the number of blocks sharded."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from lrpt.checkpointing import checkpointable_layers

    blocks = checkpointable_layers(model)
    if not blocks:
        raise ValueError(f"--fsdp: {type(model).__name__} has no transformer blocks to shard")
    mesh = init_device_mesh(device.type, (world,))
    for block in blocks:
        fully_shard(block, mesh=mesh, reshard_after_forward=True)
    model.to(device)
    return len(blocks)


def from_environment(
    device: str = "auto",
    *,
    processes: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    fsdp: bool = False,
) -> Dist:
    """This process's :class:`Dist`: a rank of the process group the launcher's environment
    describes, or :data:`SINGLE` without a launcher.

    ``device``: the run spec's (``auto``, ``cpu`` or ``cuda``; each rank takes the device its
    local rank names). ``processes``: the number of processes the run must have; a launcher
    that started another number is an error (``accelerate launch --cpu`` runs one process
    whatever ``--num_processes`` says). ``timeout``: seconds any collective may wait.
    ``fsdp``: shard the frozen base's blocks over the ranks (:func:`shard_base`).
    """
    if not timeout > 0:
        raise ValueError(f"--dist-timeout must be > 0 seconds, got {timeout}")
    world = launch_check(processes)
    if world == 1:
        if fsdp:
            raise ValueError("--fsdp shards the base over several processes: launch with torchrun")
        return SINGLE
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(
            f"--device {device!r} under a launcher of {world} processes: pass auto, cpu or "
            "cuda (each rank takes cuda:LOCAL_RANK)"
        )
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    cpu = device == "cpu" or not torch.cuda.is_available()
    handler = InitProcessGroupKwargs(timeout=timedelta(seconds=timeout))
    try:
        accelerator = Accelerator(cpu=cpu, kwargs_handlers=[handler])
    except (RuntimeError, ValueError) as err:
        raise DistributedError(
            f"cannot join the process group of {world} processes: {first_line(err)}"
        ) from None
    got = accelerator.num_processes
    if got != world:
        raise DistributedError(
            f"the launcher set WORLD_SIZE={world} but the process group has {got} process"
            f"{'es' if got > 1 else ''}"
        )
    dist = Dist(
        rank=accelerator.process_index,
        world=got,
        device=torch.device("cpu") if cpu else accelerator.device,
        backend=torch.distributed.get_backend(),
        timeout=timeout,
        fsdp=fsdp,
        accelerator=accelerator,
    )
    if not dist.main:  # one copy of the warnings, from rank 0
        for name in ("lrpt", "transformers"):
            logging.getLogger(name).setLevel(logging.ERROR)
    return dist
