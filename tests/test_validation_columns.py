"""Validation columns through real parts: ruff and sqlglot really run, real DuckDB and SQLite files,
snippets in real subprocesses, and a loopback HTTP server for the remote validator."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import gristmill as gm
from gristmill.config.validation import ValidationColumn
from gristmill.engine.generators.base import BatchFrame, EngineContext
from gristmill.engine.generators.validation import ValidationGenerator
from gristmill.engine.validators import RESULT_TYPE


def config(values: dict[str, list[Any]], **column: Any) -> gm.DatasetConfig:
    """A seed of ``values`` and one validation column ``check`` over it."""
    return (gm.ConfigBuilder()
            .with_seed_dataset(pd.DataFrame(values))
            .add_column(name="check", column_type="validation", **column)
            .build())


def run_table(mill: gm.Mill, cfg: gm.DatasetConfig, num_records: int, name: str = "dataset") -> pa.Table:
    """What a real run wrote, read back from its parquet files."""
    result = mill.create(cfg, num_records=num_records, dataset_name=name)
    return pa.concat_tables(pq.read_table(path) for path in result.batch_files())


def run(mill: gm.Mill, cfg: gm.DatasetConfig, num_records: int, name: str = "dataset") -> list[dict[str, Any] | None]:
    """The ``check`` cells of a real run."""
    return run_table(mill, cfg, num_records, name).column("check").to_pylist()  # type: ignore[no-any-return]


def errors(table: pa.Table) -> list[list[tuple[str, str]]]:
    """(column, kind) of each row's ``__errors`` (written by the engine for cells that failed)."""
    return [[(e["column"], e["kind"]) for e in row or []] for row in table.column("__errors").to_pylist()]


def found(cell: dict[str, Any] | None) -> list[tuple[str | None, int | None, str | None]]:
    """(target, line, code) of a cell's messages."""
    assert cell is not None
    return [(m["target"], m["line"], m["code"]) for m in cell["messages"]]


# ------------------------------------------------------------------------------------------- python

def test_python_validator_reports_ruff_rules_and_syntax_errors_with_lines(mill: gm.Mill) -> None:
    code = [
        "x = 1\nprint(x)\n",
        "import os\n\nprint(os.sep, undefined_name)\n",
        "def f(:\n    pass\n",
        "```python\nprint(fenced_name)\n```",
        None,
    ]
    cells = run(mill, config({"code": code}, target_columns=["code"], validator="python"), 5)
    assert cells[0] == {"is_valid": True, "messages": [], "score": None, "rows": None}
    assert cells[1]["is_valid"] is False and found(cells[1]) == [("code", 3, "F821")]
    assert "undefined_name" in cells[1]["messages"][0]["message"]
    assert cells[2]["is_valid"] is False and found(cells[2]) == [("code", 1, "syntax-error")]
    assert found(cells[3]) == [("code", 2, "F821")]  # the line of the cell, fence included
    assert found(cells[4]) == [("code", None, "no-value")]


def test_python_ruff_select_chooses_the_rules(mill: gm.Mill) -> None:
    code = ["import os\n", "print(1)\n"]
    cells = run(mill, config({"code": code}, target_columns=["code"], validator="python",
                             params={"ruff_select": ["F401"]}), 2)
    assert found(cells[0]) == [("code", 1, "F401")]
    assert cells[1]["is_valid"] is True


def test_python_execute_runs_each_snippet_with_a_timeout_and_an_output_cap(mill: gm.Mill,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    code = [
        "print('fine')\n",
        "import time\ntime.sleep(60)\n",
        "x = 1\n1 / 0\n",
        "print('x' * 5000)\n",
        "import os\nassert 'SECRET_FOR_TEST' not in os.environ\n",
        "print(undefined)\n",  # lint finds it: never run
    ]
    cfg = config({"code": code}, target_columns=["code"], validator="python",
                 params={"execute": True, "timeout": 1, "max_output_bytes": 1000})
    monkeypatch.setenv("SECRET_FOR_TEST", "1")
    cells = run(mill, cfg, len(code))
    assert cells[0]["is_valid"] is True
    assert found(cells[1]) == [("code", None, "timeout")]
    assert found(cells[2]) == [("code", 2, "exit-status")]
    assert "ZeroDivisionError" in cells[2]["messages"][0]["message"]
    assert found(cells[3]) == [("code", None, "output-limit")]
    assert cells[4]["is_valid"] is True  # the parent's environment is not passed on
    assert found(cells[5]) == [("code", 1, "F821")]


def test_python_without_execute_never_runs_code(mill: gm.Mill, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    code = [f"open({str(marker)!r}, 'w').write('x')\n"]
    cells = run(mill, config({"code": code}, target_columns=["code"], validator="python"), 1)
    assert cells[0]["is_valid"] is True
    assert not marker.exists()


# ------------------------------------------------------------------------------------------- sql

def test_sql_parse_only_with_sqlglot(mill: gm.Mill) -> None:
    sql = ["SELECT a FROM t WHERE b > 1", "SELEC * FROM t", "SELECT (1", "   ", "```sql\nSELECT 1\n```"]
    cells = run(mill, config({"sql": sql}, target_columns=["sql"], validator="sql", params={"dialect": "duckdb"}), 5)
    assert [c["is_valid"] for c in cells] == [True, False, False, False, True]
    assert found(cells[1]) == [("sql", 1, "parse-error")]
    assert found(cells[3]) == [("sql", None, "empty")]
    assert cells[0]["rows"] is None  # nothing ran


@pytest.fixture()
def shop_duckdb(tmp_path: Path) -> Path:
    path = tmp_path / "shop.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE orders (id INTEGER, total DOUBLE)")
        con.execute("INSERT INTO orders VALUES (1, 9.5), (2, 20.0), (3, 4.25)")
    return path


def test_sql_runs_against_a_read_only_duckdb_file(mill: gm.Mill, shop_duckdb: Path) -> None:
    sql = ["SELECT * FROM orders", "SELECT * FROM missing_table", "SELECT * FROM orders WHERE id > 100",
           "INSERT INTO orders VALUES (4, 1.0)"]
    cells = run(mill, config({"sql": sql}, target_columns=["sql"], validator="sql",
                             params={"dialect": "duckdb", "database": str(shop_duckdb)}), 4)
    assert cells[0] == {"is_valid": True, "messages": [], "score": None, "rows": 3}
    assert found(cells[1]) == [("sql", None, "execution-error")]
    assert "missing_table" in cells[1]["messages"][0]["message"]
    assert cells[2]["is_valid"] is True and cells[2]["rows"] == 0
    assert found(cells[3]) == [("sql", None, "execution-error")]  # read-only
    with duckdb.connect(str(shop_duckdb), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM orders").fetchone() == (3,)


def test_sql_require_rows(mill: gm.Mill, shop_duckdb: Path) -> None:
    sql = ["SELECT * FROM orders WHERE total > 10", "SELECT * FROM orders WHERE id > 100"]
    cells = run(mill, config({"sql": sql}, target_columns=["sql"], validator="sql",
                             params={"dialect": "duckdb", "database": str(shop_duckdb), "engine": "duckdb",
                                     "require_rows": True}), 2)
    assert cells[0]["is_valid"] is True and cells[0]["rows"] == 1
    assert found(cells[1]) == [("sql", None, "no-rows")] and cells[1]["rows"] == 0


def test_sql_against_sqlite_with_a_timeout(mill: gm.Mill, tmp_path: Path) -> None:
    path = tmp_path / "people.sqlite"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE people (name TEXT)")
        con.executemany("INSERT INTO people VALUES (?)", [("ada",), ("bob",)])
    con.close()
    endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    sql = ["SELECT name FROM people", "SELECT nope FROM people", endless, "DELETE FROM people"]
    cells = run(mill, config({"sql": sql}, target_columns=["sql"], validator="sql",
                             params={"dialect": "sqlite", "database": str(path), "timeout": 0.3}), 4)
    assert cells[0]["is_valid"] is True and cells[0]["rows"] == 2
    assert found(cells[1]) == [("sql", None, "execution-error")] and "nope" in cells[1]["messages"][0]["message"]
    assert found(cells[2]) == [("sql", None, "timeout")]
    assert found(cells[3]) == [("sql", None, "execution-error")]  # read-only
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT count(*) FROM people").fetchone() == (2,)
    con.close()


def test_several_targets_are_all_checked(mill: gm.Mill) -> None:
    cfg = config({"a": ["SELECT 1", "SELECT 1"], "b": ["SELECT 2", "SELECT (1"]}, target_columns=["a", "b"],
                 validator="sql", params={"dialect": "sqlite"})
    cells = run(mill, cfg, 2)
    assert cells[0]["is_valid"] is True
    assert [m["target"] for m in cells[1]["messages"]] == ["b"]


# ------------------------------------------------------------------------------------------- json_schema

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
          "required": ["name", "age"]}


def test_json_schema_on_json_strings_and_on_dicts(mill: gm.Mill, tmp_path: Path) -> None:
    texts = ['{"name": "ada", "age": 36}', '{"name": "bob"}', '{"name": "cy",\n "age": }', '{"name": "di", "age": -1}']
    cells = run(mill, config({"doc": texts}, target_columns=["doc"], validator="json_schema",
                             params={"json_schema": SCHEMA}), 4)
    assert [c["is_valid"] for c in cells] == [True, False, False, False]
    assert "missing required property 'age'" in cells[1]["messages"][0]["message"]
    assert found(cells[2]) == [("doc", 2, "json")]
    assert found(cells[3]) == [("doc", None, "schema")]

    schema_file = tmp_path / "person.json"
    schema_file.write_text(json.dumps(SCHEMA), encoding="utf-8")
    dicts = (gm.ConfigBuilder()
             .with_seed_dataset(pd.DataFrame({"i": [36, -1]}))
             .add_column(name="doc", column_type="custom", function=lambda row: {"name": "x", "age": row["i"]},
                         reads=["i"])
             .add_column(name="check", column_type="validation", target_columns=["doc"], validator="json_schema",
                         params={"schema_file": str(schema_file)})
             .build())
    cells = run(mill, dicts, 2, name="dicts")
    assert [c["is_valid"] for c in cells] == [True, False]


def test_an_edited_schema_file_changes_the_fingerprint(tmp_path: Path) -> None:
    schema_file = tmp_path / "s.json"
    schema_file.write_text(json.dumps(SCHEMA), encoding="utf-8")
    cfg = config({"doc": ["{}"]}, target_columns=["doc"], validator="json_schema",
                 params={"schema_file": str(schema_file)})
    before = cfg.fingerprint()
    schema_file.write_text(json.dumps({**SCHEMA, "required": ["name"]}), encoding="utf-8")
    assert cfg.fingerprint() != before


# ------------------------------------------------------------------------------------------- callable

def every_other(df: pd.DataFrame) -> list[bool]:
    return [i % 2 == 0 for i in df["v"]]


def test_callable_returning_bools_sees_each_chunk(mill: gm.Mill) -> None:
    sizes: list[int] = []

    def judge(df: pd.DataFrame) -> pd.Series:
        sizes.append(len(df))
        assert list(df.columns) == ["v"]
        return df["v"] % 2 == 0

    cells = run(mill, config({"v": list(range(60))}, target_columns=["v"], validator="callable",
                             params={"function": judge}, batch_size=20), 60)
    assert [c["is_valid"] for c in cells] == [v % 2 == 0 for v in range(60)]
    assert sizes == [20, 20, 10, 10]  # run batches of 50, validator calls of up to 20


def test_callable_returning_messages_and_scores(mill: gm.Mill) -> None:
    def judge(df: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({
            "is_valid": df["v"] > 1,
            "messages": [None if v > 1 else [{"message": "too small", "code": "min", "line": 1}] for v in df["v"]],
            "score": df["v"] / 10,
        })

    cells = run(mill, config({"v": [1, 5]}, target_columns=["v"], validator="callable", params={"function": judge}), 2)
    assert cells[0] == {"is_valid": False, "score": 0.1, "rows": None,
                        "messages": [{"target": "v", "message": "too small", "line": 1, "code": "min"}]}
    assert cells[1] == {"is_valid": True, "messages": [], "score": 0.5, "rows": None}


def test_callable_by_name_follows_the_trust_rules(mill: gm.Mill, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config({"v": [1, 2]}, target_columns=["v"], validator="callable",
                 params={"function": f"{__name__}:every_other", "version": "1"})
    with pytest.raises(gm.ConfigError, match="allow_modules"):
        mill.create(cfg, num_records=2)
    monkeypatch.setenv("GRISTMILL_ALLOW_MODULES", __name__)
    assert [c["is_valid"] for c in run(mill, cfg, 2, name="allowed")] == [False, True]


def test_a_callable_that_raises_fails_its_cells(mill: gm.Mill) -> None:
    def broken(df: pd.DataFrame) -> list[bool]:
        raise RuntimeError("validator service down")

    table = run_table(mill, config({"v": [1, 2]}, target_columns=["v"], validator="callable",
                                   params={"function": broken}), 2)
    assert table.column("check").to_pylist() == [None, None]
    assert errors(table) == [[("check", "failed")]] * 2
    assert "RuntimeError: validator service down" in table.column("__errors").to_pylist()[0][0]["reason"]


def test_a_callable_result_of_the_wrong_length_stops_the_run(mill: gm.Mill) -> None:
    cfg = config({"v": [1, 2, 3]}, target_columns=["v"], validator="callable",
                 params={"function": lambda df: [True]})
    with pytest.raises(gm.GenerationError, match="returned 1 values for 'is_valid' for 3 rows"):
        mill.create(cfg, num_records=3)


# ------------------------------------------------------------------------------------------- remote

class Judge(BaseHTTPRequestHandler):
    """Valid when the value is even; answers 503 to the first ``server.failures`` requests."""

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server: Any = self.server
        with server.lock:
            server.requests.append(body)
            fail = len(server.requests) <= server.failures
        if fail:
            self._answer(503, b"busy")
            return
        results = [{"is_valid": row["values"]["v"] % 2 == 0, "score": row["row"] / 100,
                    "messages": [] if row["values"]["v"] % 2 == 0 else ["odd"]} for row in body["rows"]]
        self._answer(200, json.dumps({"results": results}).encode())

    def _answer(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        pass


@pytest.fixture()
def judge_server() -> Iterator[Any]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), Judge)
    server.lock, server.requests, server.failures = threading.Lock(), [], 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture()
def silent_url() -> Iterator[str]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/validate"
    sock.close()


def remote(url: str, **params: Any) -> dict[str, Any]:
    return {"target_columns": ["v"], "validator": "remote", "batch_size": 10,
            "params": {"url": url, "retry_backoff": 0.01, **params}}


def test_remote_retries_503s_then_judges_every_row(mill: gm.Mill, judge_server: Any) -> None:
    judge_server.failures = 2
    url = f"http://127.0.0.1:{judge_server.server_address[1]}/validate?key=1"
    cells = run(mill, config({"v": list(range(25))}, **remote(url, max_retries=3, max_parallel=1)), 25)
    assert [c["is_valid"] for c in cells] == [v % 2 == 0 for v in range(25)]
    assert cells[3]["messages"] == [{"target": "v", "message": "odd", "line": None, "code": None}]
    assert cells[7]["score"] == 0.07
    assert len(judge_server.requests) == 2 + 3  # two refused, then one per chunk of 10 rows
    first = judge_server.requests[-3]
    assert first["column"] == "check" and first["targets"] == ["v"]
    assert first["rows"][0] == {"row": 0, "values": {"v": 0}}


def test_remote_parallel_requests_answer_every_chunk(mill: gm.Mill, judge_server: Any) -> None:
    url = f"http://127.0.0.1:{judge_server.server_address[1]}/"
    cells = run(mill, config({"v": list(range(50))}, **{**remote(url, max_parallel=4), "batch_size": 5}), 50)
    assert [c["is_valid"] for c in cells] == [v % 2 == 0 for v in range(50)]
    assert sorted(row["row"] for body in judge_server.requests for row in body["rows"]) == list(range(50))


def test_remote_that_never_answers_fails_the_cells(mill: gm.Mill, silent_url: str) -> None:
    table = run_table(mill, config({"v": [1, 2, 3]}, **remote(silent_url, timeout=0.2, max_retries=1)), 3)
    assert table.column("check").to_pylist() == [None, None, None]
    assert errors(table) == [[("check", "failed")]] * 3
    assert [e[0]["attempts"] for e in table.column("__errors").to_pylist()] == [2, 2, 2]


def test_a_failed_target_cell_is_not_sent_for_validation(mill: gm.Mill, judge_server: Any) -> None:
    def half(row: dict[str, Any]) -> int:
        if row["i"] % 2:
            raise ValueError("odd input")
        return int(row["i"])

    url = f"http://127.0.0.1:{judge_server.server_address[1]}/"
    cfg = (gm.ConfigBuilder()
           .with_seed_dataset(pd.DataFrame({"i": range(6)}))
           .add_column(name="v", column_type="custom", function=half, reads=["i"])
           .add_column(name="check", column_type="validation", **remote(url))
           .build())
    table = run_table(mill, cfg, 6)
    assert [None if c is None else c["is_valid"] for c in table.column("check").to_pylist()] == [
        True, None, True, None, True, None]
    assert [row["row"] for body in judge_server.requests for row in body["rows"]] == [0, 2, 4]
    assert errors(table)[1] == [("v", "failed"), ("check", "skipped")]


def test_remote_4xx_is_not_retried(judge_server: Any) -> None:
    class Refuse(Judge):
        def do_POST(self) -> None:  # noqa: N802
            self.server.requests.append(None)  # type: ignore[attr-defined]
            self._answer(400, b"bad request")

    judge_server.RequestHandlerClass = Refuse
    url = f"http://127.0.0.1:{judge_server.server_address[1]}/"
    frame = frame_of({"v": [1, 2]})
    values = generate(ValidationColumn(name="check", **remote(url, max_retries=3)), frame)
    assert values.to_pylist() == [None, None]
    assert len(judge_server.requests) == 1
    assert [(p.reason.split(":")[-2].strip(), p.attempts) for p in frame.problems[0]] == [("HTTP 400", 1)]


# ------------------------------------------------------------------------------------------- the generator

def frame_of(values: dict[str, list[Any]], *, active: list[bool] | None = None, row_offset: int = 0) -> BatchFrame:
    frame = BatchFrame(batch_index=0, row_offset=row_offset, num_rows=len(next(iter(values.values()))), run_seed=1)
    for name, column in values.items():
        frame.set(name, column)
    frame.active = None if active is None else np.array(active)
    frame.current = "check"
    return frame


def generate(column: ValidationColumn, frame: BatchFrame) -> pa.Array:
    context = EngineContext(config=gm.DatasetConfig(), run_config=gm.RunConfig())
    values = asyncio.run(ValidationGenerator(column, context).generate(frame))
    assert list(values) == ["check"]
    array = values["check"]
    assert isinstance(array, pa.Array) and array.type == RESULT_TYPE and len(array) == frame.num_rows
    return array


def test_only_active_rows_are_sent_and_the_rest_are_null(judge_server: Any) -> None:
    url = f"http://127.0.0.1:{judge_server.server_address[1]}/"
    frame = frame_of({"v": [10, 11, 12, 13]}, active=[True, False, True, False], row_offset=100)
    values = generate(ValidationColumn(name="check", **remote(url)), frame)
    assert [None if c is None else c["is_valid"] for c in values.to_pylist()] == [True, None, True, None]
    assert [row["row"] for body in judge_server.requests for row in body["rows"]] == [100, 102]


def test_no_active_rows_means_no_request_and_a_typed_null_column(judge_server: Any) -> None:
    url = f"http://127.0.0.1:{judge_server.server_address[1]}/"
    values = generate(ValidationColumn(name="check", **remote(url)), frame_of({"v": [1, 2]}, active=[False, False]))
    assert values.null_count == 2 and judge_server.requests == []


def test_failed_cells_are_recorded_on_the_frame(silent_url: str) -> None:
    frame = frame_of({"v": [1, 2, 3]}, active=[True, True, False])
    values = generate(ValidationColumn(name="check", **remote(silent_url, timeout=0.2, max_retries=1)), frame)
    assert values.to_pylist() == [None, None, None]
    assert sorted(frame.problems) == [0, 1]
    problem = frame.problems[0][0]
    assert (problem.column, problem.kind, problem.attempts) == ("check", "failed", 2)
    assert "no answer after 2 attempt(s)" in problem.reason and "HTTPTimeout" in problem.reason


def test_the_struct_type_is_the_same_in_every_batch_file(mill: gm.Mill) -> None:
    def judge(df: pd.DataFrame) -> list[bool]:
        if df["v"].iloc[0] >= 50:
            raise RuntimeError("second batch fails")  # a batch whose every cell is null
        return [True] * len(df)

    result = mill.create(config({"v": list(range(120))}, target_columns=["v"], validator="callable",
                                params={"function": judge}), num_records=120)
    types = [pq.read_schema(path).field("check").type for path in result.batch_files()]
    assert len(types) == 3 and all(t == RESULT_TYPE for t in types)
    frame = result.load_dataset()
    assert frame["check"].iloc[:50].map(lambda c: c["is_valid"]).all() and frame["check"].iloc[50:100].isna().all()


# ------------------------------------------------------------------------------------------- fingerprint

def components(params: dict[str, Any], **column: Any) -> dict[str, Any]:
    cfg = (gm.ConfigBuilder()
           .with_seed_dataset(pd.DataFrame({"code": ["x"]}))
           .add_column(name="n", column_type="expression", expr="{{ code }}!")
           .add_column(name="check", column_type="validation", target_columns=["code"], validator="python",
                       params=params, **column)
           .build())
    return cfg.fingerprint_components()["columns"]  # type: ignore[no-any-return]


def test_a_changed_param_changes_only_that_columns_component() -> None:
    base = components({"ruff_select": ["F"]})
    changed = components({"ruff_select": ["F", "E9"]})
    assert changed["n"] == base["n"]
    assert [k for k in base["check"] if base["check"][k] != changed["check"][k]] == ["params"]
    # Timeouts and batching do not change what is generated.
    assert components({"ruff_select": ["F"], "timeout": 99}, batch_size=7) == base
    assert components({"ruff_select": ["F"], "execute": True})["check"] != base["check"]


def test_remote_endpoint_and_tuning_are_not_fingerprinted_but_version_is() -> None:
    def remote_components(**params: Any) -> dict[str, Any]:
        return config({"v": [1]}, target_columns=["v"], validator="remote",
                      params=params).fingerprint_components()["columns"]["check"]  # type: ignore[no-any-return]

    base = remote_components(url="http://a:1/")
    assert remote_components(url="https://b/", timeout=3, max_retries=0, max_parallel=9) == base
    assert remote_components(url="http://a:1/", version="2") != base


def test_a_yaml_config_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(
        "columns:\n"
        "  - {name: sql, column_type: expression, expr: 'SELECT 1'}\n"
        "  - name: check\n"
        "    column_type: validation\n"
        "    target_columns: [sql]\n"
        "    validator: sql\n"
        "    params: {dialect: sqlite}\n", encoding="utf-8")
    cfg = gm.DatasetConfig.from_yaml(path)
    column = cfg.columns[1]
    assert isinstance(column, ValidationColumn) and column.params.dialect == "sqlite"  # type: ignore[union-attr]
    assert gm.DatasetConfig.from_dict(cfg.to_dict()).fingerprint() == cfg.fingerprint()


# ------------------------------------------------------------------------------------------- config errors

@pytest.mark.parametrize(("column", "match"), [
    ({"validator": "regex"}, r"unknown validator 'regex'; known validators: callable, json_schema, python, remote"),
    ({"validator": "sql", "params": {"dialect": "postgresql"}}, r"params.dialect: unknown SQL dialect 'postgresql'"
                                                                r"; known dialects: .*postgres"),
    ({"validator": "sql"}, r"params.dialect: Field required"),
    ({"validator": "sql", "params": {"dialect": "sqlite", "database": "x.db"}}, r"set engine: duckdb or engine"),
    ({"validator": "python", "params": {"timeout": 0}}, r"params.timeout"),
    ({"validator": "json_schema", "params": {"json_schema": {"type": "objekt"}}}, r"unknown type 'objekt'"),
    ({"validator": "json_schema", "params": {"json_schema": {"uniqueItems": True}}}, r"uniqueItems are not checked"),
    ({"validator": "json_schema", "params": {}}, r"exactly one of json_schema"),
    ({"validator": "remote", "params": {"url": "localhost:80"}}, r"http:// or https://"),
    ({"validator": "callable", "params": {"function": "no_colon"}}, r"'module:qualname'"),
    ({"validator": "python", "target_columns": []}, r"target_columns"),
])
def test_config_errors_name_the_column_and_the_field(column: dict[str, Any], match: str) -> None:
    data = {"name": "check", "column_type": "validation", "target_columns": ["v"], **column}
    with pytest.raises(gm.ConfigError, match=match) as info:
        gm.DatasetConfig.from_dict({"columns": [data]})
    assert "check" in str(info.value)


@pytest.mark.parametrize(("column", "match"), [
    ({"target_columns": ["nope"], "validator": "python"}, r"column 'check' references 'nope', which is not a column"),
    ({"target_columns": ["v"], "validator": "sql", "params": {"dialect": "sqlite", "database": "missing.sqlite"}},
     r"column 'check': database 'missing.sqlite' does not exist"),
    ({"target_columns": ["v"], "validator": "json_schema", "params": {"schema_file": "missing.json"}},
     r"column 'check': cannot read schema_file 'missing.json'"),
    ({"target_columns": ["v"], "validator": "python", "params": {"ruff_select": ["NOPE1"]}},
     r"params.ruff_select \['NOPE1'\] is not accepted by ruff"),
])
def test_environment_errors_come_before_any_work(mill: gm.Mill, tmp_path: Path, column: dict[str, Any],
                                                 match: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(gm.ConfigError, match=match):
        mill.create(config({"v": ["SELECT 1"]}, **column), num_records=1)
    assert not (tmp_path / "artifacts" / "dataset").exists()


def test_validation_cells_can_gate_a_later_column(mill: gm.Mill) -> None:
    cfg = (gm.ConfigBuilder()
           .with_seed_dataset(pd.DataFrame({"sql": ["SELECT 1", "SELECT (1"]}))
           .add_column(name="check", column_type="validation", target_columns=["sql"], validator="sql",
                       params={"dialect": "sqlite"})
           .add_column(name="verdict", column_type="expression", expr="{{ 'ok' if check.is_valid else 'bad' }}")
           .build())
    assert mill.create(cfg, num_records=2).load_dataset()["verdict"].tolist() == ["ok", "bad"]



def test_the_yaml_examples_of_the_docs_are_valid_configs() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "validation.md").read_text(encoding="utf-8")
    examples = re.findall(r"```yaml\n(.*?)```", text, re.S)
    assert len(examples) >= 4
    for example in examples:
        data = yaml.safe_load(example)
        columns = data["columns"] if isinstance(data, dict) else data
        cfg = gm.DatasetConfig.from_dict({"columns": columns})
        assert [c.column_type for c in cfg.columns] == ["validation"]


def test_a_relative_database_path_is_taken_from_the_config_files_folder(tmp_path: Path) -> None:
    """As a seed path is: `gristmill create configs/sql.yaml` run from elsewhere finds the database
    beside the config, and the fingerprint holds the path as written (a resume from another
    working directory continues the dataset)."""
    configs, elsewhere = tmp_path / "configs", tmp_path / "work"
    configs.mkdir()
    elsewhere.mkdir()
    with sqlite3.connect(configs / "shop.sqlite") as con:
        con.execute("CREATE TABLE items (name TEXT)")
        con.execute("INSERT INTO items VALUES ('tea')")
    con.close()
    (configs / "sql.yaml").write_text(
        "columns:\n"
        "  - {name: sql, column_type: sampler, sampler_type: category,\n"
        "     params: {values: ['SELECT name FROM items', 'SELECT nope FROM items']}}\n"
        "  - {name: check, column_type: validation, target_columns: [sql], validator: sql,\n"
        "     params: {dialect: sqlite, database: shop.sqlite}}\n")

    def create(cwd: Path, rows: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gristmill.cli.main", "create", str(configs / "sql.yaml"), "-n",
                               str(rows), "--artifact-path", str(tmp_path / "artifacts"), "--batch-size", "4"],
                              cwd=cwd, capture_output=True, text=True, timeout=120)

    done = create(elsewhere, 4)
    assert done.returncode == 0, done.stderr
    table = pq.read_table(tmp_path / "artifacts" / "sql" / "parquet-files")
    for sql, check in zip(table.column("sql").to_pylist(), table.column("check").to_pylist(), strict=True):
        assert check["is_valid"] is (sql == "SELECT name FROM items")
    grown = create(configs, 8)  # another working directory: the same dataset grows
    assert grown.returncode == 0, grown.stderr
    assert len(list((tmp_path / "artifacts").iterdir())) == 1
    assert pq.read_table(tmp_path / "artifacts" / "sql" / "parquet-files").num_rows == 8
