"""Helpers for the ``lrpt serve`` tests: a prompt store of tiny-llama artifacts and a real
server process on a free loopback port."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import httpx
import torch
from conftest import tiny, tiny_encoder

import lrpt
from lrpt.app.data.task_format import TaskSpec

MR = TaskSpec(
    "mr", ("negative", "positive"), "accuracy", "Review: {text}\nSentiment:",
    {"negative": "terrible", "positive": "great"},
)  # fmt: skip
# a verbalizer with a two-word answer: scored by teacher forcing, several rows per text
MR_LONG = TaskSpec(
    "mr", ("negative", "positive"), "accuracy", "{text} It was",
    {"negative": "terrible movie", "positive": "great"},
)  # fmt: skip
# name → (method, options, task format)
PROMPTS: dict[str, tuple[str, dict[str, Any], TaskSpec]] = {
    "sent-ulpt": ("ulpt", {"num_tokens": 8, "rank": 2}, MR),
    "sent-pt": ("pt", {"num_tokens": 5}, MR_LONG),
    "topic-dpt": ("dpt", {"num_tokens": 6, "rank": 2}, MR),
    "sent-idpg": ("idpg", {"num_tokens": 4}, MR),
}


def save(
    root: Path, name: str, seed: int = 0, *, task: TaskSpec | None = None, to: str | None = None
) -> Path:
    """Save prompt ``name`` of :data:`PROMPTS` (random, seeded) on tiny-llama under ``root``
    (as ``to``, with another ``task`` format if given)."""
    key, options, spec = PROMPTS[name]
    spec = task or spec
    base = tiny("causal")
    encoder = None if lrpt.METHODS[key].static else tiny_encoder()
    pm = lrpt.prompt_model(key, base.model, base.tokenizer, encoder=encoder, seed=seed, **options)
    with torch.no_grad():  # move away from the initialisation so prompts differ clearly
        for p in pm.method.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(seed)) * 0.5)
    return lrpt.save_prompt(
        pm, root / (to or name), model_name="tiny-llama", training={"task": spec.to_dict()},
        encoder_name=None if encoder is None else "tiny-bert", overwrite=True,
    )  # fmt: skip


def save_foreign(root: Path) -> Path:
    """A prompt trained on another model than tiny-llama (its embeddings perturbed)."""
    base = tiny("causal")
    with torch.no_grad():
        base.model.get_input_embeddings().weight.add_(0.01)
    pm = lrpt.prompt_model("pt", base.model, base.tokenizer, num_tokens=3)
    return lrpt.save_prompt(pm, root / "foreign", model_name="tiny-llama",
                            training={"task": MR.to_dict()})  # fmt: skip


def tar_of(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path in sorted(directory.iterdir()):
            archive.add(path, arcname=path.name)
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``lrpt serve --model tiny-llama --prompts STORE ARGS…`` in a subprocess."""

    def __init__(
        self, store: Path, *args: str, log: Path | None = None, start_timeout: float = 120
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log or store.parent / f"server-{self.port}.log"
        command = [sys.executable, "-m", "lrpt", "serve", "--model", "tiny-llama",
                   "--prompts", str(store), "--port", str(self.port), "--log-level", "warning",
                   *args]  # fmt: skip
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                         env=os.environ.copy())  # fmt: skip
        self._wait(start_timeout)

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"the server did not start in {timeout:g} s")

    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> bool:
        """SIGTERM (graceful shutdown); → whether it exited by it (uvicorn re-raises the signal
        once it has shut down, so the exit status is −SIGTERM, or 0)."""
        self.proc.terminate()
        return self.proc.wait(timeout=60) in (0, -signal.SIGTERM)

    def kill(self) -> None:
        self.proc.kill()  # SIGKILL: no clean-up at all
        self.proc.wait(timeout=30)
