"""Prompt artifacts: a bit-identical round trip through a fresh process for every method, the
exact files and stored tensor names, sizes, atomic writes, and one test per kind of bad input
(error class, message content, and the CLI's one-line error with exit code 2)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch
from conftest import TINY, tiny, tiny_encoder
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.utils import logging as hf_logging

import lrpt
from lrpt import artifact
from lrpt.app.cli import main
from lrpt.artifact import (
    ArtifactNotFound,
    ConfigMismatch,
    CorruptArtifact,
    FormatVersionError,
    FrozenStateMismatch,
    ModelMismatch,
    NotAnArtifact,
    ProjectionMismatch,
    TensorMismatch,
    UnknownMethodError,
)
from lrpt.errors import LrptError

TESTS = Path(__file__).resolve().parent
TEXTS = ["a quiet film", "loud and very long"]
INIT_SEED = 7
CASES = [(key, "causal") for key in sorted(lrpt.METHODS)] + [
    ("ulpt", "seq2seq"),
    ("pt", "encoder"),
    ("lopa", "encoder"),
]


# --------------------------------------------------------------------------- helpers
def build(key: str, family: str = "causal", **options) -> lrpt.PromptedModel:
    loaded = tiny(family)
    encoder = None if lrpt.METHODS[key].static else tiny_encoder()
    return lrpt.prompt_model(
        key, loaded.model, loaded.tokenizer, encoder=encoder, seed=INIT_SEED, **options
    )


def perturb(pm: lrpt.PromptedModel, seed: int = 0) -> lrpt.PromptedModel:
    """Move every trainable tensor (method and head) off its initial value, as training would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in [*pm.method.parameters(), *pm.head_parameters()]:
            if p.requires_grad:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    return pm


def outputs(pm: lrpt.PromptedModel) -> dict[str, torch.Tensor]:
    """The prompt (materialised, or per input) and the logits on a fixed batch, in eval mode."""
    pm.eval()
    batch = pm.tokenizer(TEXTS, return_tensors="pt", padding=True)
    kwargs = {}
    if pm.family == "seq2seq":
        kwargs["labels"] = pm.tokenizer(["yes", "no"], return_tensors="pt", padding=True)[
            "input_ids"
        ]
    with torch.no_grad():
        if pm.method.static:
            prompt = pm.method.materialise()
        else:
            prompt = pm.prompt_rows(batch["input_ids"], TEXTS)
        logits = pm(batch["input_ids"], batch["attention_mask"], texts=TEXTS, **kwargs).logits
    return {"prompt": prompt.detach().contiguous(), "logits": logits.detach().contiguous()}


def reload_outputs(manifest: str, out: str) -> None:
    """Run in a fresh process: load every artifact of ``manifest`` and write its outputs."""
    results = {}
    for case in json.loads(Path(manifest).read_text()):
        family = case["family"]
        loaded = tiny(family)
        encoder = None if lrpt.METHODS[case["key"]].static else tiny_encoder()
        pm = lrpt.load_prompt(
            case["path"], loaded.model, loaded.tokenizer, encoder=encoder, model_name=TINY[family]
        )
        for name, tensor in outputs(pm).items():
            results[f"{case['id']}.{name}"] = tensor
    safetensors.torch.save_file(results, out)


def save(pm: lrpt.PromptedModel, path: Path, family: str = "causal", **kwargs) -> Path:
    return lrpt.save_prompt(pm, path, model_name=TINY[family], init_seed=INIT_SEED, **kwargs)


def edit_json(path: Path, change) -> None:
    meta = json.loads((path / "prompt.json").read_text())
    change(meta)
    (path / "prompt.json").write_text(json.dumps(meta))


def rewrite_tensor(path: Path, name: str, tensor: torch.Tensor, *, listing: bool = True) -> None:
    """Replace one stored tensor (and, if ``listing``, its entry in prompt.json)."""
    tensors = safetensors.torch.load_file(path / "prompt.safetensors")
    tensors[name] = tensor
    safetensors.torch.save_file(tensors, path / "prompt.safetensors")
    if listing:
        spec = {"shape": list(tensor.shape), "dtype": str(tensor.dtype).removeprefix("torch.")}
        edit_json(path, lambda m: m["tensors"].__setitem__(name, spec))


def fails(error: type[Exception], path: Path, *fragments: str, load=None) -> None:
    """Loading ``path`` raises ``error`` naming the path and every fragment."""
    loaded = tiny("causal")
    with pytest.raises(error) as info:
        if load is None:
            lrpt.load_prompt(path, loaded.model, loaded.tokenizer)
        else:
            load()
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message
    assert isinstance(info.value, artifact.ArtifactError)


def cli_fails(capsys, argv: list[str], *fragments: str) -> None:
    """The CLI prints one ``lrpt: error:`` line naming every fragment and exits with 2."""
    capsys.readouterr()
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert err.startswith("lrpt: error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err
    assert captured.out == ""


def entries(directory: Path) -> set[str]:
    return set(os.listdir(directory))


@pytest.fixture
def pt_artifact(tmp_path) -> Path:
    return save(perturb(build("pt", num_tokens=4)), tmp_path / "pt")


# --------------------------------------------------------------------------- round trip
@pytest.fixture(scope="module")
def round_trip(tmp_path_factory) -> dict:
    """Save a perturbed prompt for every case, reload them all in one fresh process."""
    root = tmp_path_factory.mktemp("round_trip")
    cases, before = [], {}
    for key, family in CASES:
        case_id = f"{key}-{family}"
        pm = perturb(build(key, family))
        path = save(pm, root / case_id, family)
        before[case_id] = outputs(pm)
        cases.append({"id": case_id, "key": key, "family": family, "path": str(path)})
    manifest, out = root / "manifest.json", root / "after.safetensors"
    manifest.write_text(json.dumps(cases))
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import test_artifact; "
        "test_artifact.reload_outputs(sys.argv[2], sys.argv[3])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(TESTS), str(manifest), str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"before": before, "after": safetensors.torch.load_file(out), "root": root}


@pytest.mark.parametrize(("key", "family"), CASES)
def test_round_trip_in_a_fresh_process_is_bit_identical(round_trip, key: str, family: str) -> None:
    case_id = f"{key}-{family}"
    before, after = round_trip["before"][case_id], round_trip["after"]
    assert torch.equal(before["prompt"], after[f"{case_id}.prompt"])
    assert torch.equal(before["logits"], after[f"{case_id}.logits"])
    fresh = outputs(build(key, family))  # the load really restored the trained tensors
    assert not torch.equal(fresh["prompt"], after[f"{case_id}.prompt"])


@pytest.mark.parametrize(("key", "family"), CASES)
def test_exact_files_and_tensor_names(round_trip, key: str, family: str) -> None:
    path = round_trip["root"] / f"{key}-{family}"
    assert entries(path) == {"prompt.json", "prompt.safetensors"}
    stored = set(safetensors.torch.load_file(path / "prompt.safetensors"))
    pm = build(key, family)
    trainable = {f"method.{n}" for n, p in pm.method.named_parameters() if p.requires_grad}
    head = {f"head.{n}" for n in pm.named_head_parameters()}
    assert stored == trainable | head
    assert (len(head) > 0) == (family == "encoder")
    frozen = {f"method.{n}" for n in artifact.frozen_tensors(pm.method)}
    assert not stored & frozen  # frozen tensors are regenerated, never stored
    meta = lrpt.read_artifact(path)
    assert set(meta["tensors"]) == stored
    assert meta["extra"] == json.loads(json.dumps(pm.method.extra_state()))


def test_pinned_tensor_names(round_trip) -> None:
    def names(case_id: str) -> set[str]:
        return set(safetensors.torch.load_file(round_trip["root"] / case_id / "prompt.safetensors"))

    assert names("pt-causal") == {"method.prompt_embeddings"}
    assert names("ulpt-causal") == {"method.latent", "method.scale", "method.shift"}
    assert names("pt-encoder") == {
        "method.prompt_embeddings",
        "head.classifier.weight",
        "head.classifier.bias",
    }


def test_metadata(round_trip) -> None:
    meta = lrpt.read_artifact(round_trip["root"] / "ulpt-causal")
    model = tiny("causal").model
    weight = model.get_input_embeddings().weight
    assert meta["format_version"] == 1
    assert meta["method"] == "ulpt"
    assert meta["config"] == json.loads(json.dumps(dataclasses.asdict(lrpt.make_config("ulpt"))))
    assert meta["init_seed"] == INIT_SEED
    assert meta["model"] == {
        "name": "tiny-llama",
        "family": "causal",
        "hidden_size": 64,
        "vocab_size": int(weight.shape[0]),
        "embedding_sha256": artifact.embedding_fingerprint(weight),
    }
    assert set(meta["extra"]) >= {"projection_sha256"}
    assert set(meta["frozen"]) == {"projection"}  # regenerated from the seed, never stored
    assert meta["encoder"] is None and meta["training"] is None
    lopa = lrpt.read_artifact(round_trip["root"] / "lopa-causal")
    assert lopa["encoder"]["hidden_size"] == 64 and lopa["dims"]["encoder_dim"] == 64


@pytest.mark.parametrize("key", sorted(k for k, c in lrpt.METHODS.items() if c.static))
def test_artifact_bytes_is_exact(round_trip, key: str) -> None:
    path = round_trip["root"] / f"{key}-causal"
    meta = lrpt.read_artifact(path)
    config = lrpt.make_config(key, **meta["config"])
    computed = artifact.artifact_bytes(
        key, lrpt.ModelDims(**meta["dims"]), config, model_name="tiny-llama",
        vocab_size=meta["model"]["vocab_size"],
    )  # fmt: skip
    assert computed == artifact.artifact_size(path)["total"]


def test_training_summary_is_stored(tmp_path) -> None:
    summary = {"steps": 30, "best": {"accuracy": 0.75}, "task": "sst2"}
    path = save(build("pt", num_tokens=2), tmp_path / "a", training=summary)
    assert lrpt.read_artifact(path)["training"] == summary


def test_ulpt_artifact_is_tiny(tmp_path) -> None:
    """ULPT n=100, r=2 on a d=576 model (SmolLM2-135M's width): 1,352 floats, ≤ 8 KB on disk."""
    tokenizer = tiny("causal").tokenizer
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=576, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    pm = lrpt.prompt_model("ulpt", model, tokenizer, num_tokens=100, rank=2)
    assert pm.method.num_trainable() == 1352
    path = lrpt.save_prompt(pm, tmp_path / "ulpt", model_name="smollm2-135m")
    total = sum(f.stat().st_size for f in path.iterdir())
    assert total <= 8192
    assert artifact.artifact_size(path)["total"] == total
    computed = artifact.artifact_bytes(
        "ulpt", lrpt.ModelDims(576), lrpt.make_config("ulpt", num_tokens=100, rank=2),
        model_name="smollm2-135m", vocab_size=len(tokenizer),
    )  # fmt: skip
    assert computed == total


def test_check_model_false_loads_on_other_embeddings(pt_artifact) -> None:
    loaded = tiny("causal")
    with torch.no_grad():
        loaded.model.get_input_embeddings().weight.add_(1e-3)
    pm = lrpt.load_prompt(pt_artifact, loaded.model, loaded.tokenizer, check_model=False)
    stored = safetensors.torch.load_file(pt_artifact / "prompt.safetensors")
    assert torch.equal(pm.method.prompt_embeddings, stored["method.prompt_embeddings"])


def test_load_method_without_the_model(round_trip) -> None:
    """Static prompts materialise from the artifact alone unless frozen tensors need the model."""
    for key in ("pt", "ulpt", "dpt"):
        path = round_trip["root"] / f"{key}-causal"
        method = artifact.load_method(path)
        assert torch.equal(method.materialise(), round_trip["before"][f"{key}-causal"]["prompt"])
    path = round_trip["root"] / "lopt2-causal"
    with pytest.raises(artifact.ModelRequired, match="derives from the base model 'tiny-llama'"):
        artifact.load_method(path)
    loaded = tiny("causal")
    method = artifact.load_method(path, model=loaded.model, tokenizer=loaded.tokenizer)
    assert torch.equal(method.materialise(), round_trip["before"]["lopt2-causal"]["prompt"])


# --------------------------------------------------------------------------- writes
def test_existing_target_is_refused_and_left_alone(pt_artifact, capsys) -> None:
    before = (pt_artifact / "prompt.json").read_bytes()
    listing = entries(pt_artifact.parent)
    with pytest.raises(FileExistsError, match="already exists; pass overwrite=True"):
        save(build("pt", num_tokens=2), pt_artifact)
    assert (pt_artifact / "prompt.json").read_bytes() == before
    assert entries(pt_artifact.parent) == listing  # no temporary directory left behind


def test_overwrite_replaces_atomically(pt_artifact) -> None:
    save(build("pt", num_tokens=2), pt_artifact, overwrite=True)
    assert lrpt.read_artifact(pt_artifact)["config"]["num_tokens"] == 2
    assert entries(pt_artifact.parent) == {"pt"}
    assert entries(pt_artifact) == {"prompt.json", "prompt.safetensors"}


def test_overwrite_refuses_a_directory_that_is_not_an_artifact(tmp_path) -> None:
    other = tmp_path / "data"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="is not an lrpt prompt artifact"):
        save(build("pt", num_tokens=2), other, overwrite=True)
    assert entries(other) == {"keep.txt"}


def test_failed_write_leaves_nothing(tmp_path, monkeypatch) -> None:
    def broken(path: Path, data: bytes) -> None:
        path.write_bytes(data[:3])
        raise OSError("disk full")

    monkeypatch.setattr(artifact, "_write", broken)
    with pytest.raises(OSError, match="disk full"):
        save(build("pt", num_tokens=2), tmp_path / "a")
    assert entries(tmp_path) == set()


def test_non_json_training_summary_is_refused_before_writing(tmp_path) -> None:
    with pytest.raises(LrptError, match="not plain JSON"):
        save(build("pt", num_tokens=2), tmp_path / "a", training={"loss": torch.tensor(1.0)})
    assert entries(tmp_path) == set()


def test_non_finite_training_numbers_become_null(tmp_path) -> None:
    summary = {"pearson": float("nan"), "curve": [1.0, float("inf")], "steps": 3}
    path = save(build("pt", num_tokens=2), tmp_path / "a", training=summary)
    stored = lrpt.read_artifact(path)["training"]
    assert stored == {"pearson": None, "curve": [1.0, None], "steps": 3}


def test_wrong_init_seed_is_refused_at_save(tmp_path) -> None:
    """lopt2's frozen X0 derives from the init seed: a seed that does not rebuild it is caught."""
    pm = build("lopt2")
    with pytest.raises(FrozenStateMismatch, match=r"X0 does not regenerate from init_seed=8"):
        lrpt.save_prompt(pm, tmp_path / "a", model_name="tiny-llama", init_seed=INIT_SEED + 1)
    assert entries(tmp_path) == set()


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("name", "damage", "message"),
    [("prompt.safetensors", lambda data: data[:-10], "is not a readable safetensors file"),
     ("prompt.safetensors", lambda data: b"", "is not a readable safetensors file (0 bytes)"),
     ("prompt.json", lambda data: data[:-20], "is not valid JSON")],
    ids=["truncated-safetensors", "empty-safetensors", "invalid-json"],
)  # fmt: skip
def test_damaged_file(pt_artifact, capsys, name: str, damage, message: str) -> None:
    """Loading and ``lrpt inspect`` both name the damaged file and what is wrong with it."""
    file = pt_artifact / name
    file.write_bytes(damage(file.read_bytes()))
    fails(CorruptArtifact, pt_artifact, name, message)
    cli_fails(capsys, ["inspect", str(pt_artifact)], name, message)


def test_config_edit_that_changes_a_shape(pt_artifact, capsys) -> None:
    edit_json(pt_artifact, lambda m: m["config"].__setitem__("num_tokens", 5))
    message = "'method.prompt_embeddings' has shape (4, 64), but method 'pt' with this config"
    fails(TensorMismatch, pt_artifact, message, "builds (5, 64)")
    cli_fails(capsys, ["inspect", str(pt_artifact)], message)


def test_unknown_config_field(pt_artifact, capsys) -> None:
    edit_json(pt_artifact, lambda m: m["config"].__setitem__("colour", "red"))
    fails(ConfigMismatch, pt_artifact, "config of method 'pt' has unknown field(s) colour")
    cli_fails(capsys, ["inspect", str(pt_artifact)], "unknown field(s) colour")


@pytest.mark.parametrize(
    ("key", "old"),
    [("ept", {"svd_init": "sqrt_sigma", "expert_init": "linear"}),
     ("idpg", {"bias_init": "vocab", "dropout": 0.0}),
     ("residual", {"norm_init": "ones"})],
)  # fmt: skip
def test_artifact_saved_before_a_field_existed(tmp_path, key: str, old: dict) -> None:
    """An artifact saved with the earlier reading, before its field existed (prompt.json without
    it), loads with the field's legacy value: the same config, prompt and logits bit for bit."""
    pm = perturb(build(key, **old))
    path = save(pm, tmp_path / key)
    new_fields = set(lrpt.METHODS[key].config_class.legacy_values)
    edit_json(path, lambda m: [m["config"].pop(name) for name in new_fields])
    assert new_fields.isdisjoint(json.loads((path / "prompt.json").read_text())["config"])
    loaded = tiny("causal")
    encoder = None if lrpt.METHODS[key].static else tiny_encoder()
    again = lrpt.load_prompt(path, loaded.model, loaded.tokenizer, encoder=encoder)
    assert again.method.config == pm.method.config
    assert {name: getattr(again.method.config, name) for name in old} == old
    want, got = outputs(pm), outputs(again)
    assert all(torch.equal(want[name], got[name]) for name in want)
    assert artifact.load_method(path).config == pm.method.config


def test_missing_config_field_without_a_legacy_value(pt_artifact, capsys) -> None:
    edit_json(pt_artifact, lambda m: m["config"].pop("init"))
    fails(ConfigMismatch, pt_artifact, "config of method 'pt' has missing field(s) init")


def test_invalid_config_value(pt_artifact, capsys) -> None:
    edit_json(pt_artifact, lambda m: m["config"].__setitem__("num_tokens", 0))
    fails(ConfigMismatch, pt_artifact, "invalid config", "num_tokens must be an integer ≥ 1, got 0")
    cli_fails(capsys, ["inspect", str(pt_artifact)], "num_tokens must be an integer ≥ 1, got 0")


def test_unknown_format_version(pt_artifact, capsys) -> None:
    edit_json(pt_artifact, lambda m: m.__setitem__("format_version", 2))
    fails(FormatVersionError, pt_artifact, "format_version 2 is not supported", "reads version 1")
    cli_fails(capsys, ["inspect", str(pt_artifact)], "format_version 2 is not supported")


def test_unknown_method(pt_artifact, capsys) -> None:
    edit_json(pt_artifact, lambda m: m.__setitem__("method", "nope"))
    fails(UnknownMethodError, pt_artifact, "unknown method 'nope'; known methods: pt")
    cli_fails(capsys, ["inspect", str(pt_artifact)], "unknown method 'nope'")


def test_tensor_of_wrong_shape(pt_artifact, capsys) -> None:
    rewrite_tensor(pt_artifact, "method.prompt_embeddings", torch.zeros(3, 64))
    message = "'method.prompt_embeddings' has shape (3, 64), but method 'pt'"
    fails(TensorMismatch, pt_artifact, message, "builds (4, 64)")
    cli_fails(capsys, ["inspect", str(pt_artifact)], message)


def test_tensor_list_disagrees_with_the_file(pt_artifact, capsys) -> None:
    rewrite_tensor(pt_artifact, "method.prompt_embeddings", torch.zeros(3, 64), listing=False)
    fails(CorruptArtifact, pt_artifact, "holds tensors", "but prompt.json lists")
    cli_fails(capsys, ["inspect", str(pt_artifact)], "but prompt.json lists")


def test_tensor_of_wrong_dtype(pt_artifact, capsys) -> None:
    rewrite_tensor(pt_artifact, "method.prompt_embeddings", torch.zeros(4, 64, dtype=torch.float64))
    message = "'method.prompt_embeddings' has dtype float64, but method 'pt'"
    fails(TensorMismatch, pt_artifact, message, "builds float32")
    cli_fails(capsys, ["inspect", str(pt_artifact)], message)


def test_missing_tensor(pt_artifact, capsys) -> None:
    safetensors.torch.save_file({}, pt_artifact / "prompt.safetensors")
    edit_json(pt_artifact, lambda m: m.__setitem__("tensors", {}))
    fails(TensorMismatch, pt_artifact, "missing ['method.prompt_embeddings']")
    cli_fails(capsys, ["inspect", str(pt_artifact)], "missing ['method.prompt_embeddings']")


def test_model_with_other_embeddings(pt_artifact, tmp_path, capsys) -> None:
    other = tiny("causal")
    with torch.no_grad():
        other.model.get_input_embeddings().weight.mul_(1.01)
    fails(
        ModelMismatch, pt_artifact, "was trained on model 'tiny-llama'", "embedding_sha256",
        load=lambda: lrpt.load_prompt(pt_artifact, other.model, other.tokenizer),
    )  # fmt: skip
    other.model.save_pretrained(tmp_path / "perturbed")
    other.tokenizer.save_pretrained(tmp_path / "perturbed")
    argv = ["inspect", str(pt_artifact), "--model", str(tmp_path / "perturbed")]
    hf_logging.disable_progress_bar()  # transformers draws a bar when loading a local model
    try:
        cli_fails(capsys, argv, "was trained on model 'tiny-llama'", "embedding_sha256")
    finally:
        hf_logging.enable_progress_bar()


def test_model_of_another_family(pt_artifact, capsys) -> None:
    t5 = tiny("seq2seq")
    fails(
        ModelMismatch, pt_artifact, "family: trained on 'causal', got 'seq2seq'",
        load=lambda: lrpt.load_prompt(pt_artifact, t5.model, t5.tokenizer),
    )  # fmt: skip
    argv = ["inspect", str(pt_artifact), "--model", "tiny-t5"]
    cli_fails(capsys, argv, "family: trained on 'causal', got 'seq2seq'")


def test_model_name_is_checked_when_given(pt_artifact) -> None:
    loaded = tiny("causal")
    fails(
        ModelMismatch, pt_artifact, "name: trained on 'tiny-llama', got 'smollm2-135m'",
        load=lambda: lrpt.load_prompt(
            pt_artifact, loaded.model, loaded.tokenizer, model_name="smollm2-135m"
        ),
    )  # fmt: skip


def test_instance_dependent_prompt_needs_its_encoder(tmp_path) -> None:
    path = save(build("lopa", num_tokens=2, hidden=4), tmp_path / "lopa")
    loaded = tiny("causal")
    fails(
        ModelMismatch, path, "method 'lopa' is instance-dependent: pass encoder=",
        load=lambda: lrpt.load_prompt(path, loaded.model, loaded.tokenizer),
    )  # fmt: skip


def test_missing_path(tmp_path, capsys) -> None:
    missing = tmp_path / "nowhere"
    fails(ArtifactNotFound, missing, "no prompt artifact at", "no such file or directory")
    cli_fails(capsys, ["inspect", str(missing)], "no prompt artifact at")


def test_directory_that_is_not_an_artifact(tmp_path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    fails(NotAnArtifact, tmp_path, "is not a prompt artifact: it has no prompt.json")
    cli_fails(capsys, ["inspect", str(tmp_path)], "it has no prompt.json")


def test_missing_safetensors_file(pt_artifact, capsys) -> None:
    (pt_artifact / "prompt.safetensors").unlink()
    fails(CorruptArtifact, pt_artifact, "prompt.safetensors is missing")
    cli_fails(capsys, ["inspect", str(pt_artifact)], "prompt.safetensors is missing")


def test_edited_projection_fingerprint(tmp_path, capsys) -> None:
    path = save(perturb(build("ulpt", num_tokens=4)), tmp_path / "ulpt")
    edit_json(path, lambda m: m["extra"].__setitem__("projection_sha256", "0" * 64))
    fails(ProjectionMismatch, path, "projection_sha256: stored '0000", "the prompt would silently")
    cli_fails(capsys, ["inspect", str(path)], "projection_sha256: stored '0000")


def test_edited_init_seed_breaks_a_model_derived_buffer(tmp_path, capsys) -> None:
    path = save(perturb(build("lopt2", num_tokens=4)), tmp_path / "lopt2")
    edit_json(path, lambda m: m.__setitem__("init_seed", INIT_SEED + 1))
    fails(FrozenStateMismatch, path, "regenerates frozen", "the prompt would silently differ")
    cli_fails(capsys, ["inspect", str(path)], "regenerates frozen")


def test_errors_are_value_errors() -> None:
    for name in artifact.__all__:
        obj = getattr(artifact, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, LrptError), name


def test_save_prompt_uses_the_seed_build_method_recorded(tmp_path) -> None:
    """lopt2's frozen X0 derives from the init seed; save_prompt needs no init_seed by hand."""
    from conftest import tiny

    loaded = tiny("causal")
    pm = lrpt.prompt_model("lopt2", loaded.model, loaded.tokenizer, seed=5, num_tokens=4)
    lrpt.save_prompt(pm, tmp_path / "p", model_name="tiny-llama")
    again = lrpt.load_prompt(tmp_path / "p", loaded.model, loaded.tokenizer)
    assert torch.equal(again.method.materialise(), pm.method.materialise())
