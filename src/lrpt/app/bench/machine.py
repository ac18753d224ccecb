"""The machine a measurement ran on: its description, and its device's dense matmul throughput.

Every benchmark names its machine from here: the suites' ``run.json`` records :func:`machine`,
and ``summary.md`` and the other reports (``lrpt bench --speed``, ``bench/*.py``) give it in
words (:func:`machine_line`). The scripts that compare a measured rate with the hardware's limit
take that limit from :func:`matmul_peak`.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def machine() -> dict[str, Any]:
    """The machine this process runs on: CPU (its model name where ``/proc/cpuinfo`` gives it),
    core count, OS, Python and torch versions."""
    import torch

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        cpu = names[0].strip() if names else cpu
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def machine_line(info: Mapping[str, Any] | None = None, *, threads: bool = False) -> str:
    """``AMD EPYC, 2 CPUs, Linux-…, Python 3.11.7, torch 2.13.0+cpu``: ``info`` (a recorded
    :func:`machine`; default this one) in words; ``threads``: with torch's thread count here."""
    m = machine() if info is None else info
    line = f"{m['cpu']}, {m['cpus']} CPUs, {m['os']}, Python {m['python']}, torch {m['torch']}"
    if threads:
        import torch

        line += f", {torch.get_num_threads()} threads"
    return line


def matmul_peak(dtype: torch.dtype, device: torch.device | str = "cpu", *, reps: int = 10) -> float:
    """Median FLOP/s of an ``n × n`` matmul in ``dtype`` on ``device`` (n = 8192 on CUDA, else
    2048) over ``reps`` products, after two warm-up ones: the practical ceiling of a
    transformer's forward pass there."""
    import torch

    where = torch.device(device)
    n = 8192 if where.type == "cuda" else 2048
    a = torch.randn(n, n, device=where).to(dtype)
    b = torch.randn(n, n, device=where).to(dtype)
    times = []
    for i in range(reps + 2):
        if where.type == "cuda":
            torch.cuda.synchronize(where)
        start = time.perf_counter()
        a @ b
        if where.type == "cuda":  # the product has only been queued
            torch.cuda.synchronize(where)
        if i >= 2:
            times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times)
