"""Models by Hub id, for real: a tiny model laid out in a temporary Hub cache, loaded offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import tiny

import lrpt
from lrpt.app.cli import main

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"
DATA = str(Path(__file__).parent / "fixtures" / "topics.jsonl")


@pytest.fixture
def hub(tmp_path: Path, monkeypatch) -> Path:
    """A Hub cache holding ``lrpt-test/tiny-llama`` at two commits (``main`` → COMMIT, tag
    ``v0`` → OTHER, whose embeddings differ), as ``huggingface_hub`` lays it out; offline."""
    cache = tmp_path / "hub"
    repo = cache / "models--lrpt-test--tiny-llama"
    for commit, scale in ((COMMIT, 1.0), (OTHER, 2.0)):
        loaded = tiny("causal")
        with torch.no_grad():
            loaded.model.get_input_embeddings().weight.mul_(scale)
        loaded.model.save_pretrained(repo / "snapshots" / commit)
        loaded.tokenizer.save_pretrained(repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    (repo / "refs" / "v0").write_text(OTHER)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_hub_id_loads_offline_at_its_revision(hub: Path) -> None:
    loaded = lrpt.load_model("lrpt-test/tiny-llama")
    assert (loaded.name, loaded.revision, loaded.family) == (
        "lrpt-test/tiny-llama",
        COMMIT,
        "causal",
    )
    original = tiny("causal").model.get_input_embeddings().weight
    assert torch.equal(loaded.model.get_input_embeddings().weight, original)
    tagged = lrpt.load_model("lrpt-test/tiny-llama", revision="v0")
    assert tagged.revision == OTHER
    assert torch.equal(tagged.model.get_input_embeddings().weight, 2 * original)
    assert lrpt.load_model("lrpt-test/tiny-llama", revision=COMMIT).revision == COMMIT


def test_missing_hub_model_is_one_line(hub: Path) -> None:
    with pytest.raises(ValueError) as err:
        lrpt.load_model("lrpt-test/no-such-model")
    assert str(err.value) == (
        f"model 'lrpt-test/no-such-model' at revision 'main' is not in the Hub cache "
        f"{str(hub)!r} and HF_HUB_OFFLINE is set (LocalEntryNotFoundError)"
    )
    with pytest.raises(ValueError, match=r"at revision 'v9' is not in the Hub cache"):
        lrpt.load_model("lrpt-test/tiny-llama", revision="v9")


def test_revision_is_for_hub_ids(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=r"revision 'main' is for Hub ids; .* is a local directory"
    ):
        lrpt.load_model(tmp_path, revision="main")


def test_train_by_hub_id_records_id_and_commit(hub: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    argv = ["train", "--model", "lrpt-test/tiny-llama", "--revision", "main", "--data", DATA,
            "--method", "pt", "--num-tokens", "4", "--steps", "2", "--batch-size", "4",
            "--eval-every", "2", "--out", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["model"] == {
        "name": "lrpt-test/tiny-llama", "family": "causal", "encoder": None, "revision": COMMIT,
    }  # fmt: skip
    assert results["spec"]["model"]["revision"] == COMMIT  # a rerun takes the same commit
    meta = lrpt.read_artifact(out / "prompt")
    assert meta["model"]["name"] == "lrpt-test/tiny-llama"
    assert meta["model"]["revision"] == COMMIT
    capsys.readouterr()
    # eval loads the recorded id at the recorded commit, from the cache
    assert main(["eval", "--prompt", str(out / "prompt"), "--data", DATA, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"] == results["test"]


def test_unknown_hub_id_on_the_command_line(hub: Path, tmp_path: Path, capsys) -> None:
    argv = ["train", "--model", "lrpt-test/missing", "--data", DATA, "--method", "pt",
            "--out", str(tmp_path / "run")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lrpt: error: model 'lrpt-test/missing' at revision 'main' is not in")
    assert len(err.splitlines()) == 1


def test_placed_hub_model_keeps_its_revision(hub: Path) -> None:
    loaded = lrpt.load_model("lrpt-test/tiny-llama", revision="v0", dtype="bfloat16")
    assert (loaded.revision, loaded.name) == (OTHER, "lrpt-test/tiny-llama")
    weight = loaded.model.get_input_embeddings().weight
    original = tiny("causal").model.get_input_embeddings().weight
    assert weight.dtype == torch.bfloat16
    assert torch.equal(weight, (2 * original).to(torch.bfloat16))
