"""Training on a half-precision base, peak step memory and gradient checkpointing in the loop."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import safetensors.torch
import torch
from test_train import make_run

from lrpt.app.cli import main
from lrpt.app.training.loop import train
from lrpt.app.training.memory import RSS, StepMemory
from lrpt.app.training.outdir import CHECKPOINT
from lrpt.base_models import place

CPU = torch.device("cpu")
FIXTURES = Path(__file__).parent.parent / "fixtures"


pytestmark = pytest.mark.usefixtures("one_thread")


def _run(tmp_path: Path, dtype: torch.dtype | None = None, family: str = "causal", **cfg):
    run = make_run(tmp_path, family, **cfg)
    if dtype is not None:
        run.pm.model.to(CPU)
        for p in run.pm.model.parameters():
            if not p.requires_grad:  # the frozen base; an encoder's head stays float32
                p.data = p.data.to(dtype)
        if family == "encoder":
            from lrpt.model import keep_head_float32

            keep_head_float32(run.pm.model)
    return run


def test_float16_training_is_stable_with_loss_scaling(tmp_path: Path) -> None:
    run = _run(tmp_path, torch.float16, steps=4)
    before = run.pm.method.prompt_embeddings.detach().clone()
    results = train(run, progress=False)
    assert results["dtype"] == "float16" and results["device"] == "cpu"
    assert len(results["train_loss"]) == 4 and all(map(math.isfinite, results["train_loss"]))
    after = run.pm.method.prompt_embeddings.detach()
    assert after.dtype is torch.float32
    assert (after - before).abs().max() > 1e-3  # the prompt trained
    scale = results["loss_scale"]
    assert scale["skipped_steps"] == 0 and scale["final"] == 2.0**16  # GradScaler's start
    saved = torch.load(tmp_path / "out" / CHECKPOINT, weights_only=True)
    assert saved["scaler"]["scale"] == 2.0**16  # checkpointed for --resume
    reference = train(make_run(tmp_path / "f32", steps=4), progress=False)["train_loss"]
    # float16 keeps 11 significant bits: the first loss (same prompt, same batch) within 1e-3
    assert abs(results["train_loss"][0] - reference[0]) < 1e-3 * reference[0]


@pytest.mark.parametrize("family", ["causal", "encoder"])
def test_bf16_base_keeps_float32_parameters_optimizer_state_and_artifact(
    tmp_path: Path, family: str
) -> None:
    run = _run(tmp_path, torch.bfloat16, family, steps=2)
    results = train(run, progress=False)
    assert results["dtype"] == "bfloat16" and "loss_scale" not in results  # bf16 needs none
    saved = torch.load(tmp_path / "out" / CHECKPOINT, weights_only=True)
    states = [t for s in saved["optimizer"]["state"].values() for k, t in s.items() if k != "step"]
    assert len(states) == 2 * len(saved["trainable"])  # exp_avg and exp_avg_sq of each
    assert {t.dtype for t in states} == {torch.float32}
    assert {t.dtype for t in saved["trainable"].values()} == {torch.float32}
    stored = safetensors.torch.load_file(tmp_path / "out" / "prompt" / "prompt.safetensors")
    assert {t.dtype for t in stored.values()} == {torch.float32}
    assert any(n.startswith("head.") for n in stored) == (family == "encoder")


def test_results_record_device_dtype_and_step_memory(tmp_path: Path) -> None:
    results = train(make_run(tmp_path, steps=2), progress=False)
    assert results["device"] == "cpu" and results["dtype"] == "float32"
    memory = results["step_peak_memory"]
    assert memory.keys() == {"mb", "measure"} and memory["measure"] == RSS
    # a tiny model's step fits in memory the process already holds: it may add nothing
    assert memory["mb"] is not None and memory["mb"] >= 0 and memory["mb"] == round(memory["mb"], 1)


def test_step_memory_sees_what_a_step_allocates() -> None:
    memory = StepMemory(CPU)
    memory.start()
    block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
    added = memory.stop()
    assert block.sum() > 0 and added is not None
    assert 60 < added < 80  # MB: the block, within what else the process touched meanwhile
    del block
    memory.start()
    assert memory.stop() < 8  # freed: the next step starts from the lower mark


def test_gradient_checkpointing_trains_the_same(tmp_path: Path) -> None:
    plain = train(make_run(tmp_path / "a", steps=3), progress=False)
    run = make_run(tmp_path / "b", steps=3, gradient_checkpointing=True)
    checked = train(run, progress=False)
    assert checked["training"]["gradient_checkpointing"] is True
    assert checked["prompt_path"] == {"shared_prefix": True, "reason": None}
    # the replayed layers recompute the same numbers: the same losses, bit for bit on the CPU
    assert checked["train_loss"] == plain["train_loss"]
    a, b = (safetensors.torch.load_file(tmp_path / d / "out" / "prompt" / "prompt.safetensors")
            for d in ("a", "b"))  # fmt: skip
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_resume_refuses_another_dtype(tmp_path: Path) -> None:
    train(_run(tmp_path, torch.bfloat16, steps=2), progress=False)
    again = make_run(tmp_path, steps=2)  # the same run on a float32 base
    saved = r"the run's dtype differ from the checkpoint's \(saved dtype=bfloat16\)"
    with pytest.raises(ValueError, match=saved):
        train(again, resume=True, progress=False)


def _cli(out: Path, *extra: str) -> list[str]:
    return [
        "train", "--model", "tiny-llama", "--data", str(FIXTURES / "topics.jsonl"),
        "--method", "pt", "--num-tokens", "4", "--steps", "2", "--batch-size", "4",
        "--eval-every", "2", "--max-test-examples", "4", "--out", str(out), "--quiet", *extra,
    ]  # fmt: skip


def test_cli_dtype_device_and_checkpointing_flags(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(_cli(out, "--dtype", "bfloat16", "--device", "cpu",
                     "--gradient-checkpointing")) == 0  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    assert results["spec"]["model"]["device"] == "cpu"
    assert results["spec"]["model"]["dtype"] == "bfloat16"
    assert results["spec"]["training"]["gradient_checkpointing"] is True
    assert results["dtype"] == "bfloat16" and results["device"] == "cpu"
    rerun = tmp_path / "rerun"  # a flag overrides the recorded spec
    config = ["--config", str(out / "results.json"), "--no-gradient-checkpointing"]
    assert main(["train", *config, "--steps", "1", "--out", str(rerun), "--quiet"]) == 0
    again = json.loads((rerun / "results.json").read_text())
    assert again["training"]["gradient_checkpointing"] is False and again["dtype"] == "bfloat16"
    capsys.readouterr()
    # the bf16-trained prompt evaluates on the float32 model, and predicts on a bf16 one
    prompt = str(out / "prompt")
    data = str(FIXTURES / "topics.jsonl")
    assert main(["eval", "--prompt", prompt, "--data", data, "--json", "--dtype", "float32"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["examples"] == 3 and evaluated["metrics"].keys() == results["test"].keys()
    # on the bfloat16 model it was trained and tested on: the run's test metrics exactly
    assert main(["eval", "--prompt", prompt, "--data", data, "--json", "--dtype", "bfloat16"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"] == results["test"]
    assert main(["predict", "--prompt", prompt, "--dtype", "bfloat16", "a vote"]) == 0
    assert capsys.readouterr().out.strip() in results["task"]["labels"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cli_unavailable_device_is_one_line(tmp_path: Path, capsys) -> None:
    assert main(_cli(tmp_path / "x", "--device", "cuda")) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "device 'cuda' is not available on this machine" in err and "available: cpu" in err
    assert not (tmp_path / "x" / "results.json").exists()
    assert main(_cli(tmp_path / "y", "--device", "gpu")) == 2
    assert "device must be one of auto, cpu, cuda, cuda:N, mps; got 'gpu'" in (
        capsys.readouterr().err
    )


def test_place_moves_and_casts_in_place() -> None:
    from conftest import tiny

    loaded = tiny("causal")
    model = loaded.model
    assert place(loaded, CPU, torch.float16).model is model
    assert model.get_input_embeddings().weight.dtype is torch.float16


@pytest.mark.cuda
def test_cuda_bf16_run_records_its_placement_and_loads_on_the_cpu(tmp_path: Path, capsys) -> None:
    from lrpt.app.training.memory import CUDA

    out = tmp_path / "gpu"
    assert main(_cli(out, "--device", "cuda", "--dtype", "bfloat16")) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["device"] == "cuda:0" and results["dtype"] == "bfloat16"
    assert results["step_peak_memory"]["measure"] == CUDA
    assert results["step_peak_memory"]["mb"] > 0  # CUDA counts every tensor a step allocates
    capsys.readouterr()
    prompt, data = str(out / "prompt"), str(FIXTURES / "topics.jsonl")
    argv = ["eval", "--prompt", prompt, "--data", data, "--json", "--device", "cpu"]
    assert main([*argv, "--dtype", "float32"]) == 0
    assert json.loads(capsys.readouterr().out)["examples"] == 3  # the whole test split


def test_no_share_prefix_runs_every_row_and_trains_the_same(tmp_path: Path) -> None:
    shared = train(make_run(tmp_path / "a", steps=3), progress=False)
    naive = train(make_run(tmp_path / "b", steps=3, share_prefix=False), progress=False)
    assert naive["training"]["share_prefix"] is False
    assert naive["prompt_path"] == {
        "shared_prefix": False, "reason": "turned off (share_prefix=False)"
    }  # fmt: skip
    # the same sums in other shapes and orders: equal to float32 rounding, not bit for bit
    for a, b in zip(shared["train_loss"], naive["train_loss"], strict=True):
        assert abs(a - b) <= 1e-5 * abs(a)
    with pytest.raises(ValueError, match="share_prefix must be true or false, got 'no'"):
        make_run(tmp_path / "c", share_prefix="no")
