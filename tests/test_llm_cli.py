"""``gristmill models`` and ``gristmill cache`` commands."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

import gristmill as gm
from gristmill.cli.main import app
from gristmill.testing import LLMTestServer, provider_and_model

runner = CliRunner()


def write_registry(home: Path, url: str, *, api_key: str | None = None) -> None:
    key = f"\n  api_key: {api_key}" if api_key else ""
    (home / "providers.yaml").write_text(f"- name: test\n  endpoint: {url}{key}\n")
    (home / "models.yaml").write_text("- {alias: default, model: test-model, provider: test}\n"
                                      "- {alias: other, model: test-model, provider: test}\n")


def test_models_list_never_shows_keys(clean_environ: Path) -> None:
    write_registry(clean_environ, "http://127.0.0.1:9/v1", api_key="sk-literal-secret")
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0, result.output
    assert "default" in result.output and "other" in result.output
    assert "sk-literal-secret" not in result.output


def one_line(output: str) -> str:
    return " ".join(output.split())


def test_models_list_says_where_its_models_came_from(clean_environ: Path, tmp_path: Path) -> None:
    write_registry(clean_environ, "http://127.0.0.1:9/v1")
    listed = one_line(runner.invoke(app, ["models", "list"], terminal_width=300).output)
    assert f"read {clean_environ / 'providers.yaml'} and {clean_environ / 'models.yaml'}" in listed
    assert "embedded" not in listed
    (clean_environ / "models.yaml").unlink()
    listed = one_line(runner.invoke(app, ["models", "list"], terminal_width=300).output)
    assert f"read {clean_environ / 'providers.yaml'}; no models.yaml in {clean_environ}" in listed
    given = tmp_path / "mine.yaml"
    given.write_text("- {alias: mine, model: m, provider: test}\n")
    listed = one_line(runner.invoke(app, ["models", "list", "--models", str(given)], terminal_width=300).output)
    assert f"read {clean_environ / 'providers.yaml'} and {given}" in listed and "mine" in listed


def test_models_list_without_a_home_folder_names_the_embedded_model(clean_environ: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    missing = clean_environ / "not-there"
    monkeypatch.setenv("GRISTMILL_HOME", str(missing))
    result = runner.invoke(app, ["models", "list"], terminal_width=300)
    assert result.exit_code == 0, result.output
    listed = one_line(result.output)
    assert f"from {missing}" not in listed
    assert (f"{missing} does not exist: no providers.yaml or models.yaml read; alias 'default' is the embedded "
            "local model SmolLM2-135M") in listed
    empty = runner.invoke(app, ["models", "list"], env={"GRISTMILL_HOME": str(clean_environ)}, terminal_width=300)
    assert (f"no providers.yaml or models.yaml in {clean_environ}; alias 'default' is the embedded local model"
            in one_line(empty.output))


def test_models_check_reports_latency_or_the_exact_error(clean_environ: Path) -> None:
    with LLMTestServer() as server:
        write_registry(clean_environ, server.url)
        ok = runner.invoke(app, ["models", "check"])
        assert ok.exit_code == 0, ok.output
        assert ok.output.count("ok") >= 2 and " ms" in ok.output
        server.configure(fail_status=404, fail_message="model 'test-model' does not exist")
        failed = runner.invoke(app, ["models", "check", "default"])
    assert failed.exit_code == 1
    assert "model 'test-model' does not exist" in failed.output


def test_models_list_shows_a_model_with_an_unknown_provider_as_an_error_row(clean_environ: Path) -> None:
    write_registry(clean_environ, "http://127.0.0.1:9/v1")
    with (clean_environ / "models.yaml").open("a") as f:
        f.write("- {alias: orphan, model: m, provider: nowhere}\n")
    result = runner.invoke(app, ["models", "list"], terminal_width=300)
    assert result.exit_code == 0, result.output
    assert result.exception is None
    assert "orphan" in result.output and "'nowhere'" in result.output and "default" in result.output


def test_models_check_sends_max_tokens_only_when_configured(clean_environ: Path) -> None:
    # Newer OpenAI models refuse 'max_tokens'; the check must not add it on its own.
    with LLMTestServer(unsupported_params="max_tokens") as server:
        write_registry(clean_environ, server.url)
        result = runner.invoke(app, ["models", "check", "default"])
    assert result.exit_code == 0, result.output


def test_models_check_names_a_missing_key_variable(clean_environ: Path) -> None:
    write_registry(clean_environ, "http://127.0.0.1:9/v1", api_key="$GM_CLI_API_KEY")
    result = runner.invoke(app, ["models", "check", "default"])
    assert result.exit_code == 1 and "GM_CLI_API_KEY" in result.output


def test_public_functions_behind_the_models_commands(clean_environ: Path) -> None:
    # The CLI uses only these (gristmill.llm's public names); scripts can too.
    from gristmill.llm import check_models, describe_models, gristmill_home

    assert gristmill_home() == clean_environ
    with LLMTestServer() as server:
        write_registry(clean_environ, server.url, api_key="sk-literal-secret")
        summaries = describe_models()
        assert [m.alias for m in summaries] == ["default", "other"]
        assert summaries[0].endpoint == server.url and summaries[0].error is None
        assert "sk-literal-secret" not in repr(summaries)
        checks = check_models(["default"])
    assert [(c.alias, c.ok) for c in checks] == [("default", True)]
    assert checks[0].latency_ms is not None and checks[0].latency_ms >= 0


def test_cache_stats_and_clear(tmp_path: Path) -> None:
    with LLMTestServer() as server:
        provider, model = provider_and_model(server.url)
        cfg = gm.ConfigBuilder().add_column(name="t", column_type="llm_text", prompt="hi").build()
        with gm.Mill(tmp_path, model_providers=[provider], model_configs=[model],
                     run_config=gm.RunConfig(show_progress=False)) as mill:
            mill.create(cfg, num_records=4, dataset_name="d")
    stats = runner.invoke(app, ["cache", "stats", str(tmp_path / "d")])
    assert stats.exit_code == 0, stats.output
    assert "4 responses" in stats.output
    cleared = runner.invoke(app, ["cache", "clear", str(tmp_path / "d"), "--yes"])
    assert cleared.exit_code == 0 and "removed 4" in cleared.output
    missing = runner.invoke(app, ["cache", "stats", str(tmp_path / "nowhere")])
    assert missing.exit_code == 1 and "no response cache" in missing.output


def test_cache_commands_refuse_foreign_files_with_one_line(tmp_path: Path) -> None:
    text = tmp_path / "notes.sqlite"
    text.write_text("just some text, not a database " * 50)
    foreign = tmp_path / "other.sqlite"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE people (name TEXT)")
    foreign_bytes = foreign.read_bytes()
    for path, message in ((text, "not a SQLite file"), (foreign, "not a gristmill response cache")):
        for args in (["cache", "stats", str(path)], ["cache", "clear", str(path), "--yes"]):
            result = runner.invoke(app, args, terminal_width=300)
            assert result.exit_code == 1, result.output
            assert result.exception is None or isinstance(result.exception, SystemExit)
            assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert foreign.read_bytes() == foreign_bytes  # no table was created in it
    with sqlite3.connect(foreign) as db:
        assert [r[0] for r in db.execute("SELECT name FROM sqlite_master")] == ["people"]
