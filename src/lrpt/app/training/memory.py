"""Peak memory of a training step: what one step adds on top of the memory in use before it.

On CUDA: ``torch.cuda.max_memory_allocated`` over the step (its peak statistics reset before
it) minus the memory allocated before it: tensors only, not the allocator's cache. Elsewhere
(Linux): the process's resident-set high-water mark (``VmHWM`` in ``/proc/self/status``, reset
through ``/proc/self/clear_refs`` before the step) minus its resident set before it: everything
the process touched, allocator caches included. Where neither is available, nothing is measured.
"""

from __future__ import annotations

from pathlib import Path

import torch

CUDA = "cuda max_memory_allocated over the step, minus the memory allocated before it"
RSS = "process peak RSS over the step (Linux VmHWM, reset before it), minus the RSS before it"
NONE = "not measured: no CUDA device and no /proc/self/clear_refs (Linux) here"


def rss_reset() -> bool:
    """Reset this process's resident-set high-water mark; False where it cannot (not Linux)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def rss_mb(kind: str) -> float:
    """``VmRSS`` (current) or ``VmHWM`` (high-water mark) of this process in MB; NaN if unknown."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return float("nan")
    for line in lines:
        if line.startswith(kind + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


class StepMemory:
    """Measures the peak memory steps on ``device`` add (:meth:`start` before a step,
    :meth:`stop` after it → MB, or None where nothing is measured); :attr:`measure` says how."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.measure = CUDA if self.cuda else RSS
        self._before = 0.0

    def start(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
            self._before = torch.cuda.memory_allocated(self.device) / 2**20
        elif rss_reset():
            self._before = rss_mb("VmRSS")
        else:
            self.measure = NONE

    def stop(self) -> float | None:
        if self.cuda:
            return torch.cuda.max_memory_allocated(self.device) / 2**20 - self._before
        if self.measure == NONE:
            return None
        return rss_mb("VmHWM") - self._before
