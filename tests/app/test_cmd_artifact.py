"""``lrpt inspect`` and ``lrpt export``: the report, the spectrum's pinned effective ranks, the
plot, PEFT adapters that reproduce lrpt's logits, and refusals as one-line errors (exit 2)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path

import pytest
import safetensors.torch
import torch
from conftest import tiny, tiny_encoder

import lrpt
from lrpt.app.cli import main
from lrpt.app.inspection import spectrum

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
SAME_LENGTH = ["abc def", "xyz uvw"]  # equal token counts: no padding, identical position ids


def _saved(tmp_path: Path, key: str, family: str = "causal", **options) -> tuple[Path, object]:
    loaded = tiny(family)
    encoder = None if lrpt.METHODS[key].static else tiny_encoder()
    pm = lrpt.prompt_model(key, loaded.model, loaded.tokenizer, encoder=encoder, seed=3, **options)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in [*pm.method.parameters(), *pm.head_parameters()]:
            if p.requires_grad:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    path = lrpt.save_prompt(pm, tmp_path / key, model_name=loaded.name, init_seed=3)
    return path, pm


def _run(capsys, *argv: str) -> str:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def _fails(capsys, argv: list[str], *fragments: str) -> None:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("lrpt: error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err


def _rank2_prompt(n: int = 6, d: int = 64) -> torch.Tensor:
    """``U diag(3, 1) Vᵀ`` with orthonormal columns: singular values exactly 3, 1, 0, …"""
    g = torch.Generator().manual_seed(0)
    u = torch.linalg.qr(torch.randn(n, 2, generator=g, dtype=torch.float64))[0]
    v = torch.linalg.qr(torch.randn(d, 2, generator=g, dtype=torch.float64))[0]
    return (u @ torch.diag(torch.tensor([3.0, 1.0], dtype=torch.float64)) @ v.T).float()


# --------------------------------------------------------------------------- inspect
def test_spectrum_pinned_ranks() -> None:
    spec = spectrum(_rank2_prompt())
    assert spec["shape"] == [6, 64]
    assert spec["effective_rank"] == 2
    # p = (3/4, 1/4): exp(−(¾ ln ¾ + ¼ ln ¼)) = 1.7548…
    assert spec["entropy_effective_rank"] == pytest.approx(1.754765, abs=1e-5)
    assert spec["singular_values"][:2] == pytest.approx([3.0, 1.0], abs=1e-5)
    assert spectrum(torch.zeros(3, 4))["effective_rank"] == 0
    assert spectrum(torch.eye(4))["entropy_effective_rank"] == pytest.approx(4.0)


def test_inspect_reports_everything(tmp_path, capsys) -> None:
    path, pm = _saved(tmp_path, "pt", num_tokens=6)
    with torch.no_grad():
        pm.method.prompt_embeddings.copy_(_rank2_prompt())
    lrpt.save_prompt(pm, path, model_name="tiny-llama", init_seed=3, overwrite=True,
                     training={"steps": 12})  # fmt: skip
    out = _run(capsys, "inspect", str(path))
    size = sum(f.stat().st_size for f in path.iterdir())
    assert f"({size:,} bytes on disk" in out
    assert f"method    pt  ({lrpt.METHODS['pt'].paper}: P)" in out
    assert "model     tiny-llama  (causal, d=64, vocab 259" in out
    assert "trainable 384 method + 0 head parameters" in out
    assert "method.prompt_embeddings" in out and "6×64" in out
    assert 'training  {"steps": 12}' in out
    assert "effective rank 2 (σ > 0.001·σ₁), entropy effective rank 1.755" in out

    info = json.loads(_run(capsys, "inspect", str(path), "--json"))
    assert info["method"] == "pt" and info["static"] is True
    assert info["bytes"]["total"] == size
    assert info["trainable_params"] == {"method": 384, "head": 0}
    assert info["spectrum"]["effective_rank"] == 2
    assert info["spectrum"]["entropy_effective_rank"] == pytest.approx(1.754765, abs=1e-5)
    assert info["model_loaded"] is None  # pt materialises without the base model


def test_inspect_counts_the_head_separately(tmp_path, capsys) -> None:
    path, pm = _saved(tmp_path, "pt", "encoder", num_tokens=3)
    info = json.loads(_run(capsys, "inspect", str(path), "--json"))
    head = sum(p.numel() for p in pm.head_parameters())
    assert info["trainable_params"] == {"method": 3 * 64, "head": head}
    assert head == 64 * 2 + 2


def test_inspect_loads_the_model_only_for_model_derived_frozen_tensors(tmp_path, capsys) -> None:
    path, pm = _saved(tmp_path, "lopt2", num_tokens=4, rank=2)
    info = json.loads(_run(capsys, "inspect", str(path), "--json"))
    assert info["model_loaded"] == "tiny-llama"
    expected = spectrum(pm.method.materialise())
    assert info["spectrum"]["singular_values"] == pytest.approx(expected["singular_values"])
    out = _run(capsys, "inspect", str(path))
    assert "rebuilt the frozen tensors with base model 'tiny-llama'" in out

    path, _ = _saved(tmp_path, "ulpt", num_tokens=4)
    assert json.loads(_run(capsys, "inspect", str(path), "--json"))["model_loaded"] is None


def test_inspect_instance_dependent(tmp_path, capsys) -> None:
    path, _ = _saved(tmp_path, "lopa", num_tokens=2, hidden=4)
    out = _run(capsys, "inspect", str(path))
    assert "spectrum  none: method 'lopa' is instance-dependent" in out
    assert "encoder   " in out and "(k=64)" in out
    info = json.loads(_run(capsys, "inspect", str(path), "--json"))
    assert info["spectrum"] is None and info["static"] is False


@pytest.mark.skipif(HAS_MATPLOTLIB, reason="matplotlib is installed")
def test_plot_without_matplotlib_is_one_line(tmp_path, capsys) -> None:
    path, _ = _saved(tmp_path, "pt", num_tokens=3)
    png = tmp_path / "s.png"
    _fails(capsys, ["inspect", str(path), "--plot", str(png)], "--plot needs matplotlib",
           "lrpt[plot]")  # fmt: skip
    assert not png.exists()


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="needs matplotlib (the plot extra)")
def test_plot_writes_a_png(tmp_path, capsys) -> None:
    path, _ = _saved(tmp_path, "dpt", num_tokens=5)
    png = tmp_path / "s.png"
    _run(capsys, "inspect", str(path), "--plot", str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lopa, _ = _saved(tmp_path, "lopa", num_tokens=2, hidden=4)
    _fails(capsys, ["inspect", str(lopa), "--plot", str(png)], "instance-dependent")


# --------------------------------------------------------------------------- export
def _peft_logits(adapter: Path, family: str, batch: dict) -> torch.Tensor:
    peft = pytest.importorskip("peft")
    base = tiny(family).model
    model = peft.PeftModel.from_pretrained(base, str(adapter)).eval()
    with torch.no_grad():
        return model(**batch).logits


@pytest.mark.parametrize("key", ["pt", "ulpt", "dpt", "lopt2"])
def test_peft_adapter_reproduces_lrpt_logits(tmp_path, capsys, key: str) -> None:
    """lrpt puts the prompt after BOS, PEFT before everything: compare on inputs without BOS."""
    pytest.importorskip("peft")
    path, pm = _saved(tmp_path, key)
    out = tmp_path / "adapter"
    _run(capsys, "export", str(path), "--format", "peft", "--out", str(out))
    assert sorted(os.listdir(out)) == ["adapter_config.json", "adapter_model.safetensors"]
    weights = safetensors.torch.load_file(out / "adapter_model.safetensors")
    n = pm.method.num_tokens
    assert set(weights) == {"prompt_embeddings"}
    assert torch.equal(weights["prompt_embeddings"], pm.method.materialise().detach())
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "PROMPT_TUNING" and config["task_type"] == "CAUSAL_LM"
    assert config["num_virtual_tokens"] == n and config["token_dim"] == 64
    assert config["num_transformer_submodules"] == 1 and config["inference_mode"] is True
    assert config["base_model_name_or_path"] == "tiny-llama"

    batch = dict(pm.tokenizer(SAME_LENGTH, add_special_tokens=False, return_tensors="pt"))
    pm.eval()
    with torch.no_grad():
        ours = pm(batch["input_ids"], batch["attention_mask"]).logits  # (B, L, V)
    theirs = _peft_logits(out, "causal", batch)[:, n:]  # PEFT keeps the prompt rows' logits
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)


def test_peft_adapter_seq2seq(tmp_path, capsys) -> None:
    """T5: the prompt goes before the encoder input only (num_transformer_submodules=1)."""
    pytest.importorskip("peft")
    path, pm = _saved(tmp_path, "pt", "seq2seq", num_tokens=5)
    out = tmp_path / "adapter"
    _run(capsys, "export", str(path), "--format", "peft", "--out", str(out))
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["task_type"] == "SEQ_2_SEQ_LM" and config["num_transformer_submodules"] == 1
    batch = dict(pm.tokenizer(SAME_LENGTH, return_tensors="pt"))
    batch["labels"] = pm.tokenizer(["yes", "no!"], return_tensors="pt")["input_ids"]
    pm.eval()
    with torch.no_grad():
        ours = pm(**batch).logits
    torch.testing.assert_close(_peft_logits(out, "seq2seq", batch), ours, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("key", "family", "options", "message"),
    [
        ("lopa", "causal", {"num_tokens": 2, "hidden": 4}, "method 'lopa' is instance-dependent"),
        ("idpg", "causal", {"num_tokens": 2, "hidden": 4}, "method 'idpg' is instance-dependent"),
        ("dept", "causal", {"num_tokens": 2, "rank": 2}, "update to the input token embeddings"),
        ("ept", "causal", {"num_tokens": 2, "rank": 2}, "update to the input token embeddings"),
        ("pt", "encoder", {"num_tokens": 2}, "trained on a encoder model"),
    ],
)  # fmt: skip
def test_export_refusals(tmp_path, capsys, key, family, options, message) -> None:
    path, _ = _saved(tmp_path, key, family, **options)
    out = tmp_path / "adapter"
    _fails(capsys, ["export", str(path), "--format", "peft", "--out", str(out)],
           "cannot export", message)  # fmt: skip
    assert not out.exists()


def test_export_to_an_existing_directory_writes_nothing(tmp_path, capsys) -> None:
    path, _ = _saved(tmp_path, "pt", num_tokens=2)
    out = tmp_path / "adapter"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    listing = sorted(os.listdir(tmp_path))
    _fails(capsys, ["export", str(path), "--format", "peft", "--out", str(out)], "already exists")
    assert os.listdir(out) == ["mine.txt"]
    assert sorted(os.listdir(tmp_path)) == listing  # no temporary directory left behind


def test_export_bad_format_is_one_line(tmp_path, capsys) -> None:
    path, _ = _saved(tmp_path, "pt", num_tokens=2)
    with pytest.raises(SystemExit) as info:
        main(["export", str(path), "--format", "onnx", "--out", str(tmp_path / "o")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("lrpt: error: ") and "invalid choice: 'onnx'" in err


# --------------------------------------------------------------------------- params
def test_params_reports_artifact_bytes(capsys) -> None:
    argv = ["params", "--method", "ulpt", "--embed-dim", "576", "--num-tokens", "100",
            "--rank", "2"]  # fmt: skip
    info = json.loads(_run(capsys, *argv, "--json"))
    assert info["trainable_params"] == 1352
    floats = 1352 * 4
    assert floats < info["artifact_bytes"] <= 8192
    assert f"artifact size: {info['artifact_bytes']:,} bytes" in _run(capsys, *argv)
    assert math.isfinite(info["artifact_bytes"])
