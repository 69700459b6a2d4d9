"""API keys never leak: not into an exception, a log record, a warning, an artifact or CLI output.

Each scenario is a way things go wrong (a bad type, bad YAML, a 401 whose body echoes the key,
an error text longer than the 500 characters kept, a missing key variable, a literal key that
starts with ``$``). Each is driven through the Python API and through ``gristmill models list``,
``models check`` and ``create``; everything they produce is searched for the key and for every
8-character piece of it.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

import gristmill as gm
from gristmill.cli.main import app
from gristmill.config.models import ModelProvider
from gristmill.llm import check_models
from gristmill.llm.openai import resolve_api_key
from gristmill.llm.registry import ModelRegistry
from gristmill.llm.secrets import clip, env_var_name, redact
from gristmill.testing import LLMTestServer

KEY = "sk-gm-SECRET-7f3a9c1e5b2d8f4a6c0e"
DOLLAR_KEY = "$sk-gm-SECRET-7f3a9c1e5b2d8f4a6c0e"  # a literal key that happens to start with '$'
# The server's echo of the credentials is appended to the message: with this much text before
# it, the key straddles the 500th character, where error messages are cut.
LONG_MESSAGE = "x" * 448
MODELS_YAML = "- {alias: default, model: test-model, provider: test}\n"
runner = CliRunner()


def fragments(secret: str, size: int = 8) -> set[str]:
    """Every ``size``-character piece of ``secret``: none of them may show up anywhere."""
    return {secret[i:i + size] for i in range(len(secret) - size + 1)}


def leaks(text: str, secret: str = KEY) -> list[str]:
    return sorted(piece for piece in fragments(secret) if piece in text)


def exception_texts(exc: BaseException | None) -> list[str]:
    """str and repr of an exception and of every exception a traceback would show with it."""
    texts = []
    while exc is not None:
        texts += [str(exc), repr(exc)]
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return texts


def artifact_texts(root: Path) -> list[str]:
    """Every file under ``root`` as text, and every parquet file's rows as text too (its pages may
    be compressed, so the raw bytes alone prove nothing)."""
    texts = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        texts.append(path.read_bytes().decode("utf-8", "replace"))
        if path.suffix == ".parquet":
            texts.append(str(pq.read_table(path).to_pylist()))
    return texts


@dataclass
class Scenario:
    """A providers.yaml (``{url}`` is the test server's), the server's behaviour, and what the user
    must still be told (a piece of the CLI output proving the scenario happened)."""

    providers: str
    server: dict[str, Any] = field(default_factory=dict)
    told: str = ""


SCENARIOS = {
    "bad type": Scenario(f"- name: test\n  endpoint: {{url}}\n  api_key: [{KEY}]\n", told="api_key"),
    "extra field": Scenario(f"- name: test\n  endpoint: {{url}}\n  apikey: {KEY}\n", told="apikey"),
    "bad yaml": Scenario(f"- name: test\n  endpoint: {{url}}\n  api_key: '{KEY}\n", told="line 3"),
    "bad yaml flow": Scenario(f"- name: test\n  api_key: {KEY}\n  endpoint: [{{url}}\n", told="line"),
    "401 echoing the key": Scenario(f"- name: test\n  endpoint: {{url}}\n  api_key: {KEY}\n",
                                    {"api_key": "the-right-key", "echo_headers": True}, told="***"),
    "long error text": Scenario(f"- name: test\n  endpoint: {{url}}\n  api_key: {KEY}\n",
                                {"fail_status": 400, "fail_message": LONG_MESSAGE, "echo_headers": True},
                                told="xxxxxxxx"),
    "header echoed": Scenario(f"- name: test\n  endpoint: {{url}}\n  extra_headers: {{{{X-Org: {KEY}}}}}\n",
                              {"fail_status": 400, "echo_headers": True}, told="x-org: ***"),
    "missing variable": Scenario("- name: test\n  endpoint: {url}\n  api_key: $GM_SECRETS_UNSET_KEY\n"
                                 f"- name: other\n  endpoint: {{url}}\n  api_key: {KEY}\n",
                                 told="GM_SECRETS_UNSET_KEY"),
    "$-literal refused": Scenario(f"- name: test\n  endpoint: {{url}}\n  api_key: '{DOLLAR_KEY}'\n",
                                  {"api_key": "the-right-key", "echo_headers": True}, told="***"),
}


@pytest.fixture()
def capture(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)
    yield caplog


def run_python_api(tmp_path: Path) -> list[str]:
    """A dataset with one LLM column, through the registry in the gristmill home."""
    cfg = (gm.ConfigBuilder()
           .add_column(name="id", column_type="sampler", sampler_type="uuid", params={})
           .add_column(name="text", column_type="llm_text", prompt="Describe {{ id }}.")
           .build())
    (tmp_path / "cfg.yaml").write_text(cfg.to_yaml())
    run_config = gm.RunConfig(batch_size=3, seed=1, show_progress=False, max_error_rate=1.0)
    try:
        with gm.Mill(tmp_path / "artifacts", run_config=run_config) as mill:
            mill.create(cfg, num_records=3, dataset_name="d")
    except (gm.GristmillError, ValidationError) as exc:
        return exception_texts(exc)
    return []


def run_cli(tmp_path: Path) -> list[str]:
    """``models list``, ``models check`` and ``create``: their output and any exception they raised."""
    texts = []
    for args in (["models", "list"], ["models", "check"],
                 ["create", str(tmp_path / "cfg.yaml"), "-n", "3", "--artifact-path", str(tmp_path / "cli")]):
        result = runner.invoke(app, args, terminal_width=400)
        texts += [result.output, *exception_texts(result.exception)]
    return texts


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_no_output_carries_the_key(name: str, tmp_path: Path, clean_environ: Path,
                                   capture: pytest.LogCaptureFixture) -> None:
    scenario = SCENARIOS[name]
    with LLMTestServer(**scenario.server) as server, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (clean_environ / "providers.yaml").write_text(scenario.providers.format(url=server.url))
        (clean_environ / "models.yaml").write_text(MODELS_YAML)
        texts = run_python_api(tmp_path) + run_cli(tmp_path)
    texts += [record.getMessage() for record in capture.records]
    texts += [str(record.exc_info[1]) for record in capture.records if record.exc_info]
    texts += [str(w.message) for w in caught]
    texts += artifact_texts(tmp_path / "artifacts") + artifact_texts(tmp_path / "cli")
    found = {piece for text in texts for piece in leaks(text)}
    assert not found, f"{name}: pieces of the key leaked: {sorted(found)}"
    assert scenario.told in "\n".join(texts)


def test_a_long_error_keeps_its_start_and_is_cut(tmp_path: Path, clean_environ: Path) -> None:
    with LLMTestServer(fail_status=400, fail_message=LONG_MESSAGE, echo_headers=True) as server:
        (clean_environ / "providers.yaml").write_text(f"- name: test\n  endpoint: {server.url}\n  api_key: {KEY}\n")
        (clean_environ / "models.yaml").write_text(MODELS_YAML)
        [check] = check_models()
    assert not check.ok and LONG_MESSAGE[:100] in check.detail
    assert len(check.detail) < 700 and not leaks(check.detail)


@pytest.mark.parametrize("make", [
    lambda: ModelProvider(name="p", api_key=[KEY]),  # type: ignore[arg-type]
    lambda: ModelProvider(name="p", api_key={"value": KEY}),  # type: ignore[arg-type]
    lambda: ModelProvider(name="p", extra_headers={"X-Token": [KEY]}),  # type: ignore[dict-item]
    lambda: ModelProvider(name="p", extra_headers=KEY),  # type: ignore[arg-type]
    lambda: ModelProvider(name="p", apikey=KEY),  # type: ignore[call-arg]
    lambda: ModelProvider.model_validate({"name": "p", "api_key": [KEY]}),
    lambda: ModelProvider.model_validate_json(f'{{"name": "p", "api_key": ["{KEY}"]}}'),
    lambda: setattr(ModelProvider(name="p"), "api_key", [KEY]),
    lambda: ModelRegistry.load(providers=[{"name": "p", "api_key": [KEY]}], models=[]),  # type: ignore[list-item]
])
def test_validation_errors_never_show_the_key(make: Any) -> None:
    with pytest.raises((ValidationError, gm.ConfigError)) as info:
        make()
    assert not [piece for text in exception_texts(info.value) for piece in leaks(text)]
    assert "api_key" in str(info.value) or "extra_headers" in str(info.value) or "apikey" in str(info.value)


def test_repr_and_str_never_show_the_key() -> None:
    provider = ModelProvider(name="p", endpoint="http://h/v1", api_key=KEY, extra_headers={"X": KEY})
    for text in (repr(provider), str(provider), repr([provider]), f"{provider!r}"):
        assert not leaks(text)


def test_yaml_errors_name_the_file_and_line_only(clean_environ: Path) -> None:
    (clean_environ / "providers.yaml").write_text(f"- name: test\n  api_key: '{KEY}\n")
    with pytest.raises(gm.ConfigError) as info:
        ModelRegistry.load()
    message = str(info.value)
    assert "providers.yaml" in message and "line 2" in message
    assert not [piece for text in exception_texts(info.value) for piece in leaks(text)]


# -- which api_key values name an environment variable -----------------------------------------

@pytest.mark.parametrize(("api_key", "variable"), [
    ("$OPENAI_API_KEY", "OPENAI_API_KEY"), ("${OPENAI_API_KEY}", "OPENAI_API_KEY"), ("$_k2", "_k2"),
    (DOLLAR_KEY, None), ("$2abc", None), ("${A-B}", None), ("$", None), ("${}", None), ("$A B", None),
    ("sk-plain", None), ("literal:$OPENAI_API_KEY", None),
])
def test_only_identifiers_name_a_variable(api_key: str, variable: str | None) -> None:
    assert env_var_name(api_key) == variable


def test_literal_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GM_SECRETS_VAR", "from-env")
    assert resolve_api_key(ModelProvider(name="p", api_key=DOLLAR_KEY)) == DOLLAR_KEY
    assert resolve_api_key(ModelProvider(name="p", api_key="literal:$GM_SECRETS_VAR")) == "$GM_SECRETS_VAR"
    assert resolve_api_key(ModelProvider(name="p", api_key="$GM_SECRETS_VAR")) == "from-env"
    with pytest.raises(gm.ModelAuthError, match="GM_SECRETS_UNSET"):
        resolve_api_key(ModelProvider(name="p", api_key="$GM_SECRETS_UNSET"))


def test_a_dollar_literal_is_sent_as_it_is(clean_environ: Path) -> None:
    with LLMTestServer(api_key=DOLLAR_KEY) as server:
        (clean_environ / "providers.yaml").write_text(
            f"- name: test\n  endpoint: {server.url}\n  api_key: '{DOLLAR_KEY}'\n"
            f"- name: explicit\n  endpoint: {server.url}\n  api_key: 'literal:{DOLLAR_KEY}'\n")
        (clean_environ / "models.yaml").write_text(
            MODELS_YAML + "- {alias: explicit, model: test-model, provider: explicit}\n")
        result = runner.invoke(app, ["models", "check"])
    assert result.exit_code == 0, result.output
    assert not leaks(result.output)


# -- redaction itself -----------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    f"Bearer {KEY}", f"Bearer {KEY[:12]}", f"key {KEY[5:20]} rejected", f"{KEY}{KEY}",
    f"a:{KEY[:8]} b:{KEY[-8:]}", f"Incorrect API key provided: {KEY[:9]}****{KEY[-4:]}",
])
def test_redact_removes_every_piece_of_eight_or_more(text: str) -> None:
    redacted = redact(text, [KEY])
    assert not leaks(redacted) and "***" in redacted


def test_redact_leaves_other_text_and_short_secrets_whole() -> None:
    assert redact("HTTP 401: bad key", [KEY]) == "HTTP 401: bad key"
    assert redact("token abcd1 here", ["abcd1", None, ""]) == "token *** here"


def test_clip_redacts_before_cutting() -> None:
    text = "y" * 490 + f" Bearer {KEY}"
    clipped = clip(text, [KEY], limit=500)
    assert not leaks(clipped) and len(clipped) <= 504 and clipped.startswith("y" * 490)
    assert clipped.endswith("***…")  # the cut fell inside the mask: the mask is kept whole
    assert clip("short", [KEY], limit=500) == "short"


def test_provider_secrets_are_the_key_as_sent_and_the_header_values() -> None:
    from gristmill.llm.secrets import provider_secrets

    provider = ModelProvider(name="p", api_key="literal:$abc-123", extra_headers={"X": "hdr-value"})
    assert sorted(provider_secrets(provider, "$abc-123")) == ["$abc-123", "$abc-123", "hdr-value"]
    assert provider_secrets(ModelProvider(name="p", api_key="wrong-key-123")) == ["wrong-key-123"]
