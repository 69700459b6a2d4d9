"""Every example in examples/configs/ runs through the real CLI (validate, then create or run)
against the project's OpenAI-compatible test server, which answers as model alias 'default'."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml

import gristmill as gm
from gristmill.testing import LLMTestServer, provider_and_model

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "configs"
Cli = Callable[..., subprocess.CompletedProcess[str]]
DATASETS = ["llm_text", "seed", "judge", "structured", "validation"]


@pytest.fixture(scope="module")
def server() -> Iterator[LLMTestServer]:
    with LLMTestServer() as instance:
        yield instance


@pytest.fixture()
def cli(server: LLMTestServer, tmp_path: Path, clean_environ: Path) -> Iterator[Cli]:
    """Run ``gristmill ARGS`` as a subprocess in a copy of examples/configs, with GRISTMILL_HOME
    naming the test server as model alias 'default'."""
    provider, model = provider_and_model(server.url)
    (clean_environ / "providers.yaml").write_text(yaml.safe_dump([provider.model_dump(mode="json", exclude_none=True)]))
    (clean_environ / "models.yaml").write_text(yaml.safe_dump([model.model_dump(mode="json", exclude_none=True)]))
    shutil.copytree(EXAMPLES, tmp_path / "configs")
    env = {**os.environ, "GRISTMILL_HOME": str(clean_environ), "COLUMNS": "200"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "gristmill.cli.main", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done

    yield run


def test_the_examples_directory_holds_what_the_docs_promise() -> None:
    names = sorted(p.stem for p in EXAMPLES.glob("*.yaml"))
    assert names == sorted([*DATASETS, "workflow"])
    assert (EXAMPLES / "seed_products.csv").is_file()


@pytest.mark.parametrize("name", DATASETS)
def test_each_dataset_example_validates_and_creates(cli: Cli, tmp_path: Path, name: str) -> None:
    run = cli
    assert "valid" in run("validate", f"configs/{name}.yaml").stdout
    run("create", f"configs/{name}.yaml", "-n", "6")
    frame = gm.DatasetResults(tmp_path / "artifacts" / name).load_dataset()
    config = gm.DatasetConfig.from_yaml(EXAMPLES / f"{name}.yaml")
    assert len(frame) == 6
    for column in config.columns:
        if column.skip is None:  # every generated cell holds a value: nothing failed
            assert frame[column.name].notna().all(), (name, column.name, frame[column.name].tolist())
    _check_shape(name, frame)


def _check_shape(name: str, frame: pd.DataFrame) -> None:
    """What each example promises beyond 'every cell has a value'."""
    if name == "seed":  # the CSV beside the config, in order
        assert frame["product"].tolist()[:2] == ["Trail running shoes", "Espresso machine"]
        assert frame["listing"][1] == "Espresso machine (kitchen): 249.0 EUR"
    elif name == "judge":
        assert set(frame["rating"][0]) == {"helpfulness", "tone"}
        assert frame["rating"][0]["tone"]["score"] in {"rude", "neutral", "polite"}
    elif name == "structured":
        assert {"title", "minutes", "ingredients"} <= set(frame["recipe"][0])
    elif name == "validation":
        assert frame["code_check"].map(lambda v: v["is_valid"]).all()  # the server's snippets parse and lint
        assert frame["explanation"].notna().all()


def test_the_workflow_example_validates_plans_runs_and_reuses(cli: Cli, tmp_path: Path) -> None:
    run = cli
    assert "is a workflow file" in run("validate", "configs/workflow.yaml").stdout
    run("plan", "configs/workflow.yaml")
    run("run", "configs/workflow.yaml")
    directory = tmp_path / "configs" / "artifacts" / "support-eval"
    assert (directory / "workflow-metadata.json").is_file()
    again = run("plan", "configs/workflow.yaml")
    assert again.stdout.count("REUSE") == 3, again.stdout
    exported = tmp_path / "chat.jsonl"
    run("export", str(directory), str(exported))
    first = yaml.safe_load(exported.read_text(encoding="utf-8").splitlines()[0])
    assert [m["role"] for m in first["messages"]] == ["user", "assistant"]


def _init(directory: Path) -> subprocess.CompletedProcess[str]:
    """``gristmill init DIR`` through ``gristmill.cli.init.register`` on a typer app, as cli/main.py mounts it."""
    script = ("import typer\nfrom gristmill.cli import init\napp = typer.Typer()\n"
              "@app.callback()\ndef main() -> None: pass\ninit.register(app)\napp()\n")
    return subprocess.run([sys.executable, "-c", script, "init", str(directory)], capture_output=True, text=True,
                          timeout=60)


def test_init_writes_a_starter_that_runs_and_never_overwrites(cli: Cli, tmp_path: Path) -> None:
    first = _init(tmp_path / "starter")
    assert first.returncode == 0, first.stderr
    written = sorted(p.name for p in (tmp_path / "starter").iterdir())
    assert written == ["NEXT-STEPS.md", "dataset.yaml", "workflow.yaml"]
    (tmp_path / "starter" / "dataset.yaml").write_text("# mine\n", encoding="utf-8")
    (tmp_path / "starter" / "workflow.yaml").unlink()
    again = _init(tmp_path / "starter")
    assert again.returncode == 1 and "not overwriting" in again.stderr and "dataset.yaml" in again.stderr
    assert (tmp_path / "starter" / "dataset.yaml").read_text(encoding="utf-8") == "# mine\n"
    assert not (tmp_path / "starter" / "workflow.yaml").exists()  # nothing written when one file exists

    assert _init(tmp_path / "fresh").returncode == 0
    cli("validate", "fresh/dataset.yaml")
    cli("create", "fresh/dataset.yaml", "-n", "5")
    assert gm.DatasetResults(tmp_path / "artifacts" / "dataset").load_dataset()["question"].notna().all()
    cli("run", "fresh/workflow.yaml")
    exported = tmp_path / "answers.jsonl"
    cli("export", str(tmp_path / "fresh" / "artifacts" / "starter"), str(exported))
    assert len(exported.read_text(encoding="utf-8").splitlines()) == 10
    steps = (tmp_path / "fresh" / "NEXT-STEPS.md").read_text(encoding="utf-8")
    assert "gristmill create dataset.yaml" in steps and "gristmill run workflow.yaml" in steps


def test_show_record_prints_one_record_in_full_as_a_panel(cli: Cli, tmp_path: Path, server: LLMTestServer) -> None:
    cli("create", "configs/llm_text.yaml", "-n", "6")
    frame = gm.DatasetResults(tmp_path / "artifacts" / "llm_text").load_dataset()
    shown = cli("show", "artifacts/llm_text", "--record", "4").stdout
    assert "record 4 of 6" in shown and "4 fields" not in shown and "3 fields" in shown
    assert frame["customer"][4]["email_address"] in shown  # the whole person struct, not cut
    assert frame["question"][4][:60] in shown.replace("\n", " ").replace("│", " ")
    assert "╭" in shown and "╰" in shown
    out_of_range = subprocess.run([sys.executable, "-m", "gristmill.cli.main", "show", "artifacts/llm_text",
                                   "--record", "6"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out_of_range.returncode == 1 and "record 6 is out of range" in out_of_range.stderr

    server.configure(fail_marker="returns")  # the rows about returns fail their LLM cell
    try:
        cli("create", "configs/llm_text.yaml", "-n", "6", "--name", "failing")
    finally:
        server.configure(fail_marker="")
    failing = gm.DatasetResults(tmp_path / "artifacts" / "failing").load_dataset()
    row = next(i for i, topic in enumerate(failing["topic"]) if topic == "returns")
    panel = cli("show", "artifacts/failing", "--record", str(row)).stdout
    assert "problem: question: failed" in panel and "1 problems" in panel


def test_show_record_of_a_workflow_reads_the_stage_output(cli: Cli, tmp_path: Path) -> None:
    cli("run", "configs/workflow.yaml")
    directory = "configs/artifacts/support-eval"
    panel = cli("show", directory, "--record", "0", "--stage", "answers").stdout
    assert "stage 'answers'" in panel and "answer" in panel and "question" in panel
    final = cli("show", directory, "--record", "0").stdout  # the last stage's output: the chat processor
    assert "stage 'judged'" in final and "messages" in final
