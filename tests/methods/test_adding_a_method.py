"""docs/adding-a-method.md, followed to the letter: its example method, written as one module and
registered through the registry, is picked up by the generic contract checks, the CLI
(``lrpt params``, ``lrpt train``, ``lrpt methods``), artifacts and the methods table, with no
other edit."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import test_errors
import test_model
import test_prefix
import torch
from conftest import tiny
from guides import forget_after_test, load_example

import lrpt
from lrpt import artifact
from lrpt.app.cli import main
from lrpt.app.cli.methods import table
from lrpt.app.training.loop import method_defaults
from lrpt.artifact import FrozenStateMismatch
from lrpt.methods import METHODS, TrainingDefaults, register
from lrpt.methods.base import PromptMethod

GUIDE = Path(__file__).parents[2] / "docs" / "adding-a-method.md"
TOPICS = str(Path(__file__).parents[1] / "fixtures" / "topics.jsonl")
KEY = "basis"


@pytest.fixture
def basis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> type[PromptMethod]:
    """The example written as ``<tmp>/basis.py`` and registered as the registry line does;
    monkeypatch removes it from the registry afterwards."""
    cls = load_example(GUIDE, tmp_path, KEY, monkeypatch).BasisPrompt
    assert cls.key == KEY
    forget_after_test(METHODS, KEY, monkeypatch)
    assert register(cls) is cls
    assert METHODS[KEY] is cls and lrpt.METHODS[KEY] is cls
    return cls


# --------------------------------------------------------------------------- contract checks
@pytest.mark.parametrize("family", ["causal", "seq2seq", "encoder"])
def test_generic_contract_checks(basis, family: str) -> None:
    test_model.test_contract(KEY, family)
    test_model.test_materialise_equals_inserted_rows(KEY, family)


@pytest.mark.parametrize("side", ["left", "right"])
def test_shared_prefix_check(basis, side: str) -> None:
    test_prefix.test_shared_prefix_equals_naive(KEY, side)


def test_validation_checks(basis) -> None:
    test_errors.test_num_tokens_below_one(KEY)
    test_errors.test_rank_below_one(KEY)


def test_init_is_what_the_guide_says(basis) -> None:
    """``F`` = vocab init of r rows, ``Z[i, i mod r] = 1``: the prompt is F's rows cycled."""
    loaded = tiny("causal")
    method = lrpt.build_method(KEY, loaded.model, loaded.tokenizer, seed=4, num_tokens=5, rank=2)
    assert method.init_seed == 4
    assert method.trainable_tensors() == {"Z": (5, 2)}
    assert method.num_trainable() == 10
    f = method.F.detach()
    assert torch.equal(method.materialise().detach(), f[torch.tensor([0, 1, 0, 1, 0])])


# --------------------------------------------------------------------------- CLI
def test_lrpt_params(basis, capsys) -> None:
    assert main(["params", "--method", KEY, "--embed-dim", "8"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"method {KEY}  d=8\nconfig {{'num_tokens': 20, 'rank': 8}}\n")
    assert re.search(r"^  Z\s+20×8\s+160$", out, re.M)
    assert "trainable parameters: 160\n" in out
    assert main(["params", "--method", KEY, "--embed-dim", "8", "--rank", "3", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["trainable_params"] == 60 and info["tensors"] == {"Z": [20, 3]}
    assert info["artifact_bytes"] > 0


def test_lrpt_train_uses_the_declared_defaults(basis, tmp_path: Path, capsys) -> None:
    assert basis.training_defaults == TrainingDefaults(lr=3e-2)
    defaults = {"weight_decay": 1e-5, "warmup": 0.1, "head_lr": 1e-3, "lr": 3e-2}
    assert method_defaults(KEY) == defaults
    out = tmp_path / "run"
    argv = ["train", "--model", "tiny-llama", "--data", TOPICS, "--method", KEY,
            "--num-tokens", "4", "--rank", "2", "--steps", "4", "--batch-size", "4",
            "--eval-every", "2", "--out", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    used = {k: results["training"][k] for k in ("lr", "weight_decay", "warmup")}
    assert used == {"lr": 3e-2, "weight_decay": 1e-5, "warmup": 0.1}  # no head: no head_lr
    assert lrpt.read_artifact(out / "prompt")["method"] == KEY
    capsys.readouterr()
    assert main(["eval", "--prompt", str(out / "prompt"), "--data", TOPICS, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"] == results["test"]


def test_methods_table(basis, capsys) -> None:
    row = f"| `{KEY}` | Basis (example) | P = Z F | n·r | static | num_tokens=20, rank=8 |"
    assert table().splitlines()[-1] == row
    assert main(["methods", "--markdown"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == row


# --------------------------------------------------------------------------- artifacts
def test_artifact_round_trip(basis, tmp_path: Path) -> None:
    """Saved without naming the seed: init_weights recorded it. Only Z is stored; F is rebuilt
    from the seed on load and checked against its fingerprint."""
    loaded = tiny("causal")
    pm = lrpt.prompt_model(KEY, loaded.model, loaded.tokenizer, seed=9, num_tokens=6, rank=3)
    with torch.no_grad():
        pm.method.Z.add_(0.1 * torch.randn(6, 3, generator=torch.Generator().manual_seed(0)))
    path = lrpt.save_prompt(pm, tmp_path / "a", model_name="tiny-llama")
    assert sorted(p.name for p in path.iterdir()) == ["prompt.json", "prompt.safetensors"]
    meta = lrpt.read_artifact(path)
    assert (meta["method"], meta["init_seed"]) == (KEY, 9)
    assert meta["config"] == {"num_tokens": 6, "rank": 3}
    assert list(meta["tensors"]) == ["method.Z"] and list(meta["frozen"]) == ["F"]
    computed = artifact.artifact_bytes(
        KEY, lrpt.ModelDims(**meta["dims"]), lrpt.make_config(KEY, **meta["config"]),
        model_name="tiny-llama", vocab_size=meta["model"]["vocab_size"],
    )  # fmt: skip
    assert computed == artifact.artifact_size(path)["total"]

    fresh = tiny("causal")
    again = lrpt.load_prompt(path, fresh.model, fresh.tokenizer)
    assert torch.equal(again.method.materialise(), pm.method.materialise())
    batch = pm.tokenizer(["a quiet film", "loud"], return_tensors="pt", padding=True)
    with torch.no_grad():
        want = pm(batch["input_ids"], batch["attention_mask"]).logits
        got = again(batch["input_ids"], batch["attention_mask"]).logits
    assert torch.equal(got, want)

    meta["init_seed"] = 10  # F no longer regenerates
    (path / "prompt.json").write_text(json.dumps(meta))
    with pytest.raises(FrozenStateMismatch, match=r"F"):
        lrpt.load_prompt(path, fresh.model, fresh.tokenizer)


# --------------------------------------------------------------------------- the registry
def test_register_checks_the_declarations(basis) -> None:
    with pytest.raises(ValueError, match=r"method key 'basis' is taken by BasisPrompt"):
        register(basis)

    class NoDefaults(basis):
        key = "no-defaults"
        training_defaults = None

    with pytest.raises(ValueError, match=r"NoDefaults must declare training_defaults"):
        register(NoDefaults)

    class NoKey(PromptMethod):
        config_class = basis.config_class
        training_defaults = TrainingDefaults(lr=1e-2)

    with pytest.raises(ValueError, match=r"NoKey must declare key"):
        register(NoKey)
    assert "no-defaults" not in METHODS
