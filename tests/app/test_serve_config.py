"""``lrpt serve``'s options are declared once: the flags, the checks and the docs table all come
from :class:`~lrpt.app.serve.config.ServeConfig`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lrpt.app.cli import build_parser
from lrpt.app.serve.config import ServeConfig, from_arguments, options_table

DOCS = Path(__file__).parents[2] / "docs" / "serving.md"


def _parse(*argv: str) -> ServeConfig:
    args = build_parser().parse_args(["serve", "--model", "tiny-llama", "--prompts", "store",
                                      *argv])  # fmt: skip
    return from_arguments(vars(args))


def test_the_docs_table_is_generated_from_the_config() -> None:
    block = re.search(r"<!-- serve-options -->\n(.*?)\n<!-- /serve-options -->",
                      DOCS.read_text(), re.S)  # fmt: skip
    assert block is not None, "docs/serving.md has no serve-options block"
    assert block.group(1) == options_table()


def test_flags_give_the_config_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LRPT_API_KEY", raising=False)
    monkeypatch.setenv("LRPT_ADMIN_KEY", "from-env")
    config = _parse()
    assert config == ServeConfig("tiny-llama", Path("store"), admin_key="from-env")
    assert (config.max_batch, config.max_queue, config.max_tokens, config.timeout) == (
        32, 256, 256, 60.0
    )  # fmt: skip
    assert config.prefix_cache_bytes == 1 << 30
    given = _parse("--max-batch", "4", "--timeout", "2.5", "--dtype", "float32", "--api-key", "")
    assert (given.max_batch, given.timeout, given.dtype, given.api_key) == (4, 2.5, "float32", None)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-batch", "0"], "--max-batch must be ≥ 1, got 0"),
        (["--max-input-tokens", "-3"], "--max-input-tokens must be ≥ 1, got -3"),
        (["--timeout", "0"], "--timeout must be > 0 seconds, got 0.0"),
        (["--prefix-cache-mb", "-1"], "--prefix-cache-mb must be ≥ 0, got -1.0"),
        (["--device", "gpu"], "device must be one of"),
        (["--host", "0.0.0.0"], "--host 0.0.0.0 is not a loopback address: give --api-key"),
    ],
)
def test_bad_options_are_refused_by_name(
    argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LRPT_API_KEY", raising=False)
    with pytest.raises(ValueError, match=re.escape(message)):
        _parse(*argv)


def test_a_public_address_with_a_key_and_a_file_as_store(tmp_path: Path) -> None:
    assert ServeConfig("m", tmp_path, host="0.0.0.0", api_key="k").host == "0.0.0.0"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a directory"):
        ServeConfig("m", tmp_path / "file")
