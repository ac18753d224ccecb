"""``lrpt train`` on 2 ranks (torchrun, gloo, the tiny model): the one-process result, identical
ranks, one writer, resume after SIGKILL of every rank, and loud failures instead of hangs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from lrpt.app.cli import main
from lrpt.app.training.distributed import (
    SINGLE,
    Dist,
    DistributedError,
    describe_difference,
    from_environment,
)

STEPS = ["--steps", "40", "--checkpoint-every", "2", "--eval-every", "20", "--lr", "0.03"]
TOLERANCE = 1e-5  # |2 ranks − 1 process| on the prompt after 40 steps (measured: 8e-7)
LAUNCH_TIMEOUT = 240  # seconds: a hang fails the test instead of stalling the suite


pytestmark = pytest.mark.usefixtures("one_thread")


def write_data(where: Path) -> list[str]:
    """A separable toy task (the label is the review's last word) in three JSONL files; → the
    flags naming them."""
    words = {"pos": "great", "neg": "awful"}
    splits = {"train": range(64), "validation": range(64, 96), "test": range(96, 140)}
    for split, ids in splits.items():
        rows = [{"text": f"review {i} was {words['pos' if i % 3 else 'neg']}",
                 "label": "pos" if i % 3 else "neg"} for i in ids]  # fmt: skip
        (where / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return ["--data", str(where / "train.jsonl"), "--validation-data",
            str(where / "validation.jsonl"), "--test-data", str(where / "test.jsonl")]  # fmt: skip


DATA: list[str] = []  # the data flags (set by the data fixture)


@pytest.fixture(scope="module", autouse=True)
def data(tmp_path_factory: pytest.TempPathFactory) -> None:
    DATA[:] = write_data(tmp_path_factory.mktemp("data"))


def train_args(out: Path, *extra: str) -> list[str]:
    return [
        "train", "--model", "tiny-llama", *DATA, "--method", "pt", "--num-tokens", "4",
        "--batch-size", "4", "--eval-batch-size", "8", "--out", str(out), "--quiet", *STEPS,
        *extra,
    ]  # fmt: skip


def torchrun(*args: str, nproc: int = 2) -> list[str]:
    """A torchrun command line (``--standalone``: a free local port)."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--nproc_per_node", str(nproc), *args,
    ]  # fmt: skip


ENV = os.environ | {"OMP_NUM_THREADS": "1"}


def launch(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)


# Trains through the application's API on each rank and saves that rank's prompt and results.
RANK_DRIVER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import torch
    from lrpt.app.cli import build_parser
    from lrpt.app.cli.train import run_spec
    from lrpt.app.runs import prepare
    from lrpt.app.training.distributed import from_environment
    from lrpt.app.training.loop import train

    args = build_parser().parse_args(sys.argv[1:])
    spec = run_spec(args)
    dist = from_environment(spec.model.device, fsdp=args.fsdp)
    out = Path(spec.out)
    run = prepare(spec, out, dist)
    results = train(run, progress=False)
    weight = run.pm.model.model.layers[0].mlp.up_proj.weight  # (dff, d), sharded by rows
    local = weight.to_local() if hasattr(weight, "to_local") else weight
    results["block_rows"] = [local.shape[0], weight.shape[0]]
    torch.save(run.pm.trainable_state_dict(), out.parent / f"rank{dist.rank}.pt")
    (out.parent / f"rank{dist.rank}.json").write_text(json.dumps(results))
    dist.close()
    """
)


def driven(where: Path, *extra: str) -> Path:
    """An uninterrupted 2-rank run; → its directory (``out/``, ``rank{0,1}.{pt,json}``)."""
    driver = where / "driver.py"
    driver.write_text(RANK_DRIVER)
    done = launch(torchrun(str(driver), *train_args(where / "out", *extra)))
    assert done.returncode == 0, done.stderr[-3000:]
    return where


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory, data: None) -> Path:
    return driven(tmp_path_factory.mktemp("two-ranks"))


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory, data: None) -> Path:
    """The same run in one process (this one)."""
    out = tmp_path_factory.mktemp("one-process") / "out"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(train_args(out)) == 0
    finally:
        torch.set_num_threads(threads)
    return out


def kill_all(pid: int) -> None:
    """SIGKILL ``pid`` and its descendants (torchrun starts each rank in its own session)."""
    import psutil

    try:
        parent = psutil.Process(pid)
        family = [*parent.children(recursive=True), parent]
    except psutil.NoSuchProcess:
        return
    for proc in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGKILL)
    psutil.wait_procs(family, timeout=30)


def read_prompt(out: Path) -> dict[str, torch.Tensor]:
    import safetensors.torch

    return safetensors.torch.load_file(out / "prompt" / "prompt.safetensors")


def test_two_ranks_give_the_one_process_prompt(two_ranks: Path, one_process: Path) -> None:
    compare_with_one_process(two_ranks, one_process)
    results = json.loads((two_ranks / "rank1.json").read_text())
    assert results["distributed"] == {
        "processes": 2, "backend": "gloo", "per_rank_batch_size": 2, "fsdp": False,
    }  # fmt: skip
    assert results["block_rows"] == [128, 128]  # every rank holds the whole model


def compare_with_one_process(two_ranks: Path, one_process: Path) -> None:
    ranks = [torch.load(two_ranks / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for name in ranks[0]:  # every rank holds the same prompt, bit for bit
        assert torch.equal(ranks[0][name], ranks[1][name]), name
    one, two = read_prompt(one_process), read_prompt(two_ranks / "out")
    assert torch.equal(two["method.prompt_embeddings"], ranks[0]["method.prompt_embeddings"])
    diff = (one["method.prompt_embeddings"] - two["method.prompt_embeddings"]).abs().max().item()
    print(f"max |2 ranks − 1 process| = {diff:.3g}")
    assert 0 <= diff < TOLERANCE, diff  # float reduction order only
    single = json.loads((one_process / "results.json").read_text())
    results = [json.loads((two_ranks / f"rank{r}.json").read_text()) for r in (0, 1)]
    for key in ("test", "zero_shot_test", "validation_history", "best_validation"):
        assert results[0][key] == results[1][key] == single[key], key
    losses = torch.tensor(results[0]["train_loss"])
    torch.testing.assert_close(losses, torch.tensor(single["train_loss"]), rtol=1e-5, atol=1e-5)
    assert "distributed" not in single


def test_fsdp_shards_the_blocks_and_gives_the_same_prompt(
    tmp_path: Path, one_process: Path
) -> None:
    """The frozen model's blocks sharded over 2 ranks (FSDP2 on gloo): the same prompt."""
    driven(tmp_path, "--fsdp")
    compare_with_one_process(tmp_path, one_process)
    for rank in (0, 1):
        results = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert results["distributed"]["fsdp"] is True
        assert results["block_rows"] == [64, 128]  # each rank holds half of every block
        assert results["prompt_path"]["shared_prefix"] is False


def test_one_writer(two_ranks: Path) -> None:
    out = two_ranks / "out"
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "prompt", "results.json"]
    written = json.loads((out / "results.json").read_text())
    rank0 = json.loads((two_ranks / "rank0.json").read_text())
    assert written["train_loss"] == rank0["train_loss"]
    assert torch.load(out / "checkpoint.pt", weights_only=True)["world_size"] == 2


def test_resume_after_sigkill_of_every_rank(two_ranks: Path, tmp_path: Path) -> None:
    killed = tmp_path / "killed"
    cmd = torchrun("-m", "lrpt", *train_args(killed))
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoint = killed / "checkpoint.pt"
    deadline = time.monotonic() + LAUNCH_TIMEOUT
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    kill_all(proc.pid)  # torchrun and both ranks
    _, err = proc.communicate(timeout=60)
    step = torch.load(checkpoint, weights_only=True)["state"]["step"]
    assert 0 < step < 40 and not (killed / "results.json").exists(), err.decode()[-2000:]

    done = launch(torchrun("-m", "lrpt", *train_args(killed, "--resume")))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("test accuracy") == 1  # the summary, printed once
    resumed, full = read_prompt(killed), read_prompt(two_ranks / "out")
    assert torch.equal(resumed["method.prompt_embeddings"], full["method.prompt_embeddings"])
    mine = json.loads((killed / "results.json").read_text())
    theirs = json.loads((two_ranks / "out" / "results.json").read_text())
    for key in ("train_loss", "validation_history", "test", "zero_shot_test"):
        assert mine[key] == theirs[key], key


def test_resume_with_another_number_of_processes_is_refused(
    two_ranks: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(train_args(two_ranks / "out", "--resume")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "its checkpoint was written by a run of 2 processes, this run has 1 process" in err


def test_mismatched_arguments_fail_on_every_rank(tmp_path: Path) -> None:
    wrapper = tmp_path / "seed_by_rank.py"
    wrapper.write_text(
        "import os, sys\nfrom lrpt.app.cli import main\n"
        "sys.exit(main(sys.argv[1:] + ['--seed', os.environ['RANK']]))\n"
    )
    done = launch(torchrun(str(wrapper), *train_args(tmp_path / "out")))
    assert done.returncode != 0
    line = (
        "lrpt: error: the 2 processes disagree on the run's arguments: rank 1 has "
        "spec.training.seed = 1 (not 0)"
    )
    assert done.stderr.count(line) == 2, done.stderr[-3000:]  # one line from each rank
    assert not (tmp_path / "out" / "results.json").exists()


def test_a_rank_that_dies_ends_the_run(tmp_path: Path) -> None:
    import psutil

    out = tmp_path / "out"
    proc = subprocess.Popen(
        torchrun("-m", "lrpt", *train_args(out, "--steps", "400")),
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + LAUNCH_TIMEOUT
        while not (out / "checkpoint.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        workers = psutil.Process(proc.pid).children()
        rank1 = next(w for w in workers if w.environ().get("RANK") == "1")
        t0 = time.monotonic()
        rank1.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=120)  # never a hang
    finally:
        kill_all(proc.pid)
    assert proc.returncode != 0 and time.monotonic() - t0 < 120
    assert not (out / "results.json").exists(), err.decode()[-2000:]


def test_a_launcher_that_started_one_process(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert main([*train_args(tmp_path / "out"), "--processes", "2"]) == 2
    assert capsys.readouterr().err == "lrpt: error: --processes 2: the launcher started 1 process\n"
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")  # what accelerate launch --cpu sets
    assert main([*train_args(tmp_path / "out"), "--processes", "2"]) == 2
    err = capsys.readouterr().err
    assert "accelerate launch --cpu runs one process" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
    with caplog.at_level("WARNING"):
        assert from_environment("cpu") is SINGLE  # no --processes: one process, a warning
    assert "training in one process (accelerate launch --cpu runs one process" in caplog.text


@pytest.mark.parametrize("engine", ["FSDP", "DEEPSPEED"])
def test_sharding_engines_are_refused(monkeypatch: pytest.MonkeyPatch, engine: str) -> None:
    monkeypatch.setenv(f"ACCELERATE_USE_{engine}", "true")  # accelerate launch --use_fsdp …
    with pytest.raises(
        DistributedError, match=r"shards the frozen base itself \(lrpt train --fsdp\)"
    ):
        from_environment("cpu")


def test_the_global_batch_must_split_evenly() -> None:
    assert Dist(rank=1, world=2).shard([5, 6, 7, 8]) == [7, 8]
    with pytest.raises(ValueError, match="4 is not a multiple of 3"):
        Dist(rank=0, world=3).per_rank(4)


def test_differences_are_named() -> None:
    a = {"spec": {"training": {"seed": 0, "lr": 1}}, "out": "x"}
    b = {"spec": {"training": {"seed": 0, "lr": 2}}, "out": "x"}
    assert describe_difference(a, b) == "spec.training.lr = 2 (not 1)"
    assert issubclass(DistributedError, ValueError)  # the CLI prints it as one line
