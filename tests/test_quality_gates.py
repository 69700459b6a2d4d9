"""Quality gates: skip conditions, failed cells that cost nothing downstream (``__errors``),
``on_failed_rows``, ``retry_failed``; LLM columns against the project's test server, which
answers an empty (unusable) message to the prompts holding its ``fail_marker``."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

import gristmill as gm
from gristmill.llm.cache import ResponseCache
from gristmill.testing import LLMTestServer, provider_and_model

MARK = "BROKEN"
README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture()
def server() -> Iterator[LLMTestServer]:
    with LLMTestServer() as instance:
        yield instance


def _mill(server: LLMTestServer, path: Path, **run: Any) -> gm.Mill:
    provider, model = provider_and_model(server.url)
    options: dict[str, Any] = {"batch_size": 25, "show_progress": False, "max_error_rate": 1.0, **run}
    return gm.Mill(path, run_config=gm.RunConfig(**options), model_providers=[provider], model_configs=[model])


def _chain(**first: Any) -> gm.DatasetConfig:
    """100 rows: every tenth row's first LLM cell fails for good; two LLM columns read it."""
    return (gm.ConfigBuilder()
            .with_seed_dataset(_rows(100))
            .add_column(name="tag", column_type="expression", expr=f"{{{{ '{MARK}' if i % 10 == 3 else 'ok' }}}}")
            .add_column(name="draft", column_type="llm_text", prompt="Draft {{ i }} {{ tag }}", **first)
            .add_column(name="review", column_type="llm_text", prompt="Review {{ draft }}")
            .add_column(name="title", column_type="llm_text", prompt="Title for {{ draft }}")
            .build())


def _rows(n: int) -> pd.DataFrame:
    return pd.DataFrame({"i": range(n)})


def _completions(server: LLMTestServer) -> int:
    return int(server.stats()["completions"])


def test_failed_cells_cost_nothing_downstream_and_retry_pays_only_for_them(server: LLMTestServer,
                                                                           tmp_path: Path) -> None:
    server.configure(fail_marker=MARK)
    mill = _mill(server, tmp_path)
    first = mill.create(_chain(), num_records=100, dataset_name="chain")
    # 100 draft requests (10 answered unusably), then downstream only for the 90 good drafts.
    assert _completions(server) == 100 + 180
    df = first.load_dataset()
    failed = df[df["__errors"].notna()]
    assert sorted(failed["i"]) == list(range(3, 100, 10))
    assert failed[["draft", "review", "title"]].isna().all().all()
    assert df.loc[df["__errors"].isna(), ["draft", "review", "title"]].notna().all().all()
    problems = failed["__errors"].iloc[0]
    assert [(p["column"], p["kind"]) for p in problems] == [("draft", "failed"), ("review", "skipped"),
                                                             ("title", "skipped")]
    assert "the answer is empty" in problems[0]["reason"] and problems[0]["attempts"] == 1
    assert "reads 'draft', which failed" in problems[1]["reason"]
    meta = json.loads((first.artifact_path / "metadata.json").read_text())
    # batches of 25 rows: 3, 13, 23 | 33, 43 | 53, 63, 73 | 83, 93
    assert [b["failed_rows"] for b in meta["completed_batches"]] == [3, 2, 3, 2]

    server.configure(fail_marker="")  # the endpoint recovers
    server.reset_stats()
    again = mill.create(_chain(), num_records=100, dataset_name="chain", retry_failed=True)
    assert _completions(server) == 10 + 20  # the failed drafts and the 20 cells they blocked, nothing else
    after = again.load_dataset()
    assert "__errors" not in after.columns  # written only by batches that hold a failed cell
    assert after[["draft", "review", "title"]].notna().all().all()
    good = df["__errors"].isna()
    pd.testing.assert_frame_equal(after.loc[good, ["i", "draft", "review", "title"]],
                                  df.loc[good, ["i", "draft", "review", "title"]])
    meta = json.loads((again.artifact_path / "metadata.json").read_text())
    assert all(b["failed_rows"] == 0 and b["generation"] == 1 for b in meta["completed_batches"])
    stored = sorted(p.name for p in (again.artifact_path / "parquet-files").iterdir())
    assert stored == [f"batch_{i:05d}.r1.parquet" for i in range(4)]  # the replaced files are gone
    server.reset_stats()
    mill.create(_chain(), num_records=100, dataset_name="chain", retry_failed=True)
    assert _completions(server) == 0  # nothing failed any more: nothing to pay


def test_skip_condition_is_not_paid_and_not_an_error(server: LLMTestServer, tmp_path: Path) -> None:
    mill = _mill(server, tmp_path)
    config = _chain(skip="i % 2 == 1")
    df = mill.create(config, num_records=20, dataset_name="skips").load_dataset()
    assert _completions(server) == 10 * 3  # only even rows: draft, then review and title (propagated skip)
    assert df.loc[df["i"] % 2 == 1, ["draft", "review", "title"]].isna().all().all()
    assert df.loc[df["i"] % 2 == 0, ["draft", "review", "title"]].notna().all().all()
    assert "__errors" not in df.columns  # a skip is the user's choice, not a failure


def test_propagate_skip_false_still_generates_the_reader(server: LLMTestServer, tmp_path: Path) -> None:
    config = (gm.ConfigBuilder()
              .with_seed_dataset(_rows(10))
              .add_column(name="a", column_type="llm_text", prompt="A {{ i }}", skip="{{ i < 5 }}")
              .add_column(name="b", column_type="llm_text", prompt="B {{ a }}", propagate_skip=False)
              .build())
    df = _mill(server, tmp_path).create(config, num_records=10, dataset_name="p").load_dataset()
    assert df["a"].isna().sum() == 5 and df["b"].notna().all()
    assert _completions(server) == 5 + 10


def test_skip_condition_errors_are_config_errors() -> None:
    with pytest.raises(gm.ConfigError, match="skip"):
        gm.ConfigBuilder().add_column(name="a", column_type="expression", expr="x", skip="{{ i < }}")
    config = (gm.ConfigBuilder()
              .with_seed_dataset(_rows(10))
              .add_column(name="a", column_type="expression", expr="{{ i }}", skip="nope > 1")
              .build())
    with pytest.raises(gm.ConfigError, match="'a' references 'nope'"):
        gm.Mill("unused").validate(config)


@pytest.mark.parametrize("policy", ["drop", "mark"])
def test_on_failed_rows(server: LLMTestServer, tmp_path: Path, policy: str) -> None:
    server.configure(fail_marker=MARK)
    mill = _mill(server, tmp_path, on_failed_rows=policy)
    results = mill.create(_chain(), num_records=50, dataset_name="rows")
    df = results.load_dataset()
    if policy == "mark":
        assert len(df) == 50 and df["__failed"].sum() == 5
        assert sorted(df.loc[df["__failed"], "i"]) == [3, 13, 23, 33, 43]
        return
    assert len(df) == 45 and not (df["i"] % 10 == 3).any() and "__errors" not in df.columns
    dropped = pd.concat([pq.read_table(p).to_pandas()
                         for p in sorted((results.artifact_path / "dropped-rows").glob("*.parquet"))])
    assert dropped["__row"].tolist() == [3, 13, 23, 33, 43] and dropped["__errors"].notna().all()
    # The endpoint recovers: a retry brings the dropped rows back, in their places.
    server.configure(fail_marker="")
    server.reset_stats()
    retried = mill.create(_chain(), num_records=50, dataset_name="rows", retry_failed=True).load_dataset()
    assert _completions(server) == 5 * 3
    assert retried["i"].tolist() == list(range(50)) and retried["draft"].notna().all()
    assert not list((results.artifact_path / "dropped-rows").glob("*.parquet"))


def test_changing_on_failed_rows_does_not_resume_silently(server: LLMTestServer, tmp_path: Path) -> None:
    _mill(server, tmp_path).create(_chain(), num_records=10, dataset_name="x")
    decision = _mill(server, tmp_path, on_failed_rows="drop").plan_dataset(_chain(), num_records=10, dataset_name="x")
    assert "on_failed_rows is 'drop', the stored run used 'keep'" in decision.reason


def test_a_later_stage_skips_cells_that_failed_upstream(server: LLMTestServer, tmp_path: Path) -> None:
    server.configure(fail_marker=MARK)
    mill = _mill(server, tmp_path)
    workflow = mill.compose_workflow("wf")
    workflow.add_stage("first", _chain(), num_records=30)
    second = (gm.ConfigBuilder()
              .add_column(name="summary", column_type="llm_text", prompt="Summarise {{ review }}")
              .build())
    workflow.add_stage("second", second)
    results = workflow.run()
    df = results.load_dataset()
    assert _completions(server) == 30 + 2 * 27 + 27  # nothing paid for the 3 failed rows downstream
    bad = df[df["i"] % 10 == 3]
    assert bad["summary"].isna().all()
    assert [p["column"] for p in bad["__errors"].iloc[0]] == ["draft", "review", "title", "summary"]


def test_rows_that_failed_upstream_are_not_retried_downstream(server: LLMTestServer, tmp_path: Path) -> None:
    """A stage whose only failed cells came with its seed records no failed rows (retrying there
    cannot change them; retrying upstream can): status and retry_failed count the first stage's."""
    server.configure(fail_marker=MARK)

    def workflow() -> gm.CompositeWorkflow:
        wf = _mill(server, tmp_path).compose_workflow("wf")
        wf.add_stage("first", _chain(), num_records=30)
        wf.add_stage("second", gm.ConfigBuilder().add_column(name="summary", column_type="llm_text",
                                                             prompt="Summarise {{ review }}").build())
        return wf

    results = workflow().run()
    second = results["second"]
    assert isinstance(second, gm.DatasetResults)
    meta = json.loads((second.artifact_path / "metadata.json").read_text())
    assert sum(b["failed_rows"] for b in meta["completed_batches"]) == 0  # its 3 bad rows failed upstream
    first = results["first"]
    assert isinstance(first, gm.DatasetResults)
    assert sum(b["failed_rows"] for b in json.loads((first.artifact_path / "metadata.json").read_text())[
        "completed_batches"]) == 3
    # Only the first stage is retried for its own sake; the second reruns because its input may change.
    plan = workflow().plan(retry_failed=True)
    assert [(s.action.value, s.reason) for s in plan.stages] == [
        ("resume", "retrying the failed cells of 3 rows"), ("run", "upstream 'first' resumed")]


def test_workflow_retry_failed_pays_only_for_the_failed_cells_and_the_rows_they_changed(
        server: LLMTestServer, tmp_path: Path) -> None:
    server.configure(fail_marker=MARK)
    mill = _mill(server, tmp_path)

    def workflow() -> gm.CompositeWorkflow:
        wf = mill.compose_workflow("wf")
        wf.add_stage("first", _chain(), num_records=30)
        wf.add_stage("second", gm.ConfigBuilder().add_column(name="summary", column_type="llm_text",
                                                             prompt="Summarise {{ review }}").build())
        return wf

    workflow().run()
    server.configure(fail_marker="")
    server.reset_stats()
    plan = workflow().plan(retry_failed=True)
    assert [(s.action.value, s.reason) for s in plan.stages] == [
        ("resume", "retrying the failed cells of 3 rows"), ("run", "upstream 'first' resumed")]
    results = workflow().run(retry_failed=True)
    # 3 drafts + their 6 downstream cells, then the second stage's 3 new summaries; the 27 others
    # of the rerun second stage come from the workflow's response cache.
    assert _completions(server) == 3 + 6 + 3
    df = results.load_dataset()
    assert df["summary"].notna().all() and "__errors" not in df.columns
    server.reset_stats()
    assert [s.action.value for s in workflow().plan(retry_failed=True).stages] == ["reuse", "reuse"]


def _gated(seed_rows: int = 1000) -> gm.DatasetConfig:
    return (gm.ConfigBuilder()
            .with_seed_dataset(_rows(seed_rows))
            .add_column(name="draft", column_type="llm_text", prompt="Draft {{ i }}")
            .build())


def test_target_valid_records_generates_until_enough_rows_pass(server: LLMTestServer, tmp_path: Path) -> None:
    mill = _mill(server, tmp_path)
    results = mill.create(_gated(), num_records=50, dataset_name="gated", target_valid_records=50,
                          valid_filter="i % 2 == 0")
    assert _completions(server) == 100  # a 50 % pass rate: 100 rows paid for 50 that pass
    df = results.load_dataset()
    assert len(df) == 50 and (df["i"] % 2 == 0).all() and df["draft"].notna().all()
    dropped = pd.concat([pq.read_table(p).to_pandas()
                         for p in sorted((results.artifact_path / "dropped-rows").glob("*.parquet"))])
    assert sorted(dropped["__row"]) == list(range(1, 100, 2))
    assert {e[0]["kind"] for e in dropped["__errors"]} == {"rejected"}
    server.reset_stats()
    again = mill.create(_gated(), num_records=50, dataset_name="gated", target_valid_records=50,
                        valid_filter="i % 2 == 0")
    assert _completions(server) == 0 and again.load_dataset().equals(df)
    planned = mill.plan_dataset(_gated(), num_records=50, dataset_name="gated", target_valid_records=60,
                                valid_filter="i % 2 == 0")
    assert (planned.action.value, planned.reason) == ("grow", "holds 50 valid rows, target_valid_records asks for 60")
    # A larger target continues from what is there, paying only for the new rows.
    more = mill.create(_gated(), num_records=50, dataset_name="gated", target_valid_records=60,
                       valid_filter="i % 2 == 0")
    df = more.load_dataset()
    assert len(df) == 60 and df["i"].tolist() == list(range(0, 120, 2))
    assert _completions(server) == 20  # 10 more rows to pass at a 50 % pass rate: 20 rows, one batch


def test_target_valid_records_trims_the_surplus_and_keeps_it(server: LLMTestServer, tmp_path: Path) -> None:
    mill = _mill(server, tmp_path)
    results = mill.create(_gated(), num_records=50, dataset_name="g", target_valid_records=10,
                          valid_filter="i % 2 == 0")
    assert _completions(server) == 50
    df = results.load_dataset()
    assert df["i"].tolist() == list(range(0, 20, 2))
    dropped = pd.concat([pq.read_table(p).to_pandas()
                         for p in sorted((results.artifact_path / "dropped-rows").glob("*.parquet"))])
    assert sorted(dropped["__row"]) == sorted([*range(1, 50, 2), *range(20, 50, 2)])
    assert {e[0]["kind"] for e in dropped["__errors"]} == {"rejected", "surplus"}


def test_an_unreachable_target_stops_with_the_pass_rate(server: LLMTestServer, tmp_path: Path) -> None:
    mill = _mill(server, tmp_path)
    with pytest.raises(gm.GenerationError, match=r"out of reach within max_records=100: 5 of the 50 rows "
                                                 r"generated passed \(10%\); about 500 rows would be needed"):
        mill.create(_gated(), num_records=50, dataset_name="g", target_valid_records=50, max_records=100,
                    valid_filter="i % 10 == 0")
    assert _completions(server) == 50  # stopped before paying for rows that could not reach the target
    with pytest.raises(gm.ConfigError, match="only with target_valid_records"):
        mill.create(_gated(), num_records=50, dataset_name="h", max_records=100)


GATE_SCRIPT = textwrap.dedent("""
    import sys
    import gristmill as gm
    from gristmill.testing import provider_and_model
    url, root, seed, mode = sys.argv[1:5]
    provider, model = provider_and_model(url, max_parallel_requests=4)
    config = (gm.ConfigBuilder().with_seed_dataset(seed)
              .add_column(name="tag", column_type="expression",
                          expr="{{ 'BROKEN' if i % 10 == 3 else 'ok' }}")
              .add_column(name="draft", column_type="llm_text", prompt="Draft {{ i }} {{ tag }}")
              .add_column(name="review", column_type="llm_text", prompt="Review {{ draft }}")
              .build())
    mill = gm.Mill(root, run_config=gm.RunConfig(batch_size=20, show_progress=False, max_error_rate=1.0),
                   model_providers=[provider], model_configs=[model])
    if mode == "gate":
        result = mill.create(config, num_records=40, dataset_name="d", target_valid_records=60,
                             valid_filter="i % 2 == 0")
    else:
        result = mill.create(config, num_records=100, dataset_name="d", retry_failed=mode == "retry")
    print(result.count_records())
""")


def _run_until_killed(args: list[str], server: LLMTestServer, completions: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.Popen(args, env=env)
    deadline = time.monotonic() + 60
    while server.stats()["completions"] < completions and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return server.stats()


def _in_cache(root: Path) -> int:
    with ResponseCache(root / "d" / "response-cache.sqlite") as cache:
        return int(cache.stats()["entries"])


@pytest.mark.parametrize("mode", ["gate", "retry"])
def test_sigkill_repays_at_most_the_requests_in_flight(tmp_path: Path, mode: str) -> None:
    """SIGKILL while a gated run grows, or while retry_failed rewrites batches: the next run
    finishes the job and re-pays only requests that were in flight (at most 4 in parallel)."""
    seed = tmp_path / "seed.parquet"
    _rows(400).to_parquet(seed)
    root = tmp_path / "artifacts"
    args = [sys.executable, "-c", GATE_SCRIPT, "", str(root), str(seed), mode]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    with LLMTestServer() as server:
        args[3] = server.url
        cached_before = 0
        if mode == "retry":  # a first, complete run whose tenth rows failed
            server.configure(fail_marker=MARK)
            subprocess.run([*args[:-1], "build"], env=env, check=True, capture_output=True)
            server.configure(fail_marker="")
            server.reset_stats()
            cached_before = _in_cache(root)
        server.configure(latency=0.01)
        # gate: round one pays 80 (40 drafts, 40 reviews minus failures); retry pays 2 x 10 in all.
        at_kill = _run_until_killed(args, server, 100 if mode == "gate" else 8)
        in_flight = at_kill["requests"] - (_in_cache(root) - cached_before)  # sent, not answered in the cache
        finished = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
        after = server.stats()
    repaid = after["duplicates"] - at_kill["duplicates"]
    print(f"{mode}: killed after {at_kill['completions']} answers; in flight {in_flight}, re-paid {repaid}")
    assert repaid <= in_flight <= 4
    df = gm.DatasetResults(root / "d").load_dataset()
    if mode == "gate":
        assert finished.stdout.strip() == "60"
        assert df["i"].tolist() == [i for i in range(400) if i % 2 == 0][:60]
    else:
        assert finished.stdout.strip() == "100" and "__errors" not in df.columns
        assert df["i"].tolist() == list(range(100)) and df["review"].notna().all()
        assert after["completions"] == 20 + repaid  # the 10 failed drafts and their 10 reviews, once


def test_a_gated_stage_hands_exactly_its_target_to_the_next(server: LLMTestServer, tmp_path: Path) -> None:
    mill = _mill(server, tmp_path)

    def workflow(target: int) -> gm.CompositeWorkflow:
        wf = mill.compose_workflow("wf")
        wf.add_stage("drafts", _gated(), num_records=40, target_valid_records=target, valid_filter="i % 3 == 0")
        wf.add_stage("titles", gm.ConfigBuilder().add_column(name="title", column_type="llm_text",
                                                             prompt="Title {{ draft }}").build())
        return wf

    results = workflow(20).run()
    df = results.load_dataset()
    assert df["i"].tolist() == list(range(0, 60, 3)) and df["title"].notna().all()
    assert results["drafts"].count_records() == 20
    plan = workflow(25).plan()
    assert plan["drafts"].action.value == "run" and "gate changed" in plan["drafts"].reason


def test_target_valid_records_counts_rows_whose_validation_columns_pass(server: LLMTestServer,
                                                                        tmp_path: Path) -> None:
    config = (gm.ConfigBuilder()
              .with_seed_dataset(_rows(1000))
              .add_column(name="code", column_type="expression",
                          expr="{{ 'x = 1' if i % 4 == 0 else 'print(undefined_name)' }}")
              .add_column(name="check", column_type="validation", target_columns=["code"], validator="python")
              .add_column(name="explain", column_type="llm_text", prompt="Explain {{ code }}",
                          skip="not check.is_valid")
              .build())
    results = _mill(server, tmp_path).create(config, num_records=40, dataset_name="v", target_valid_records=15)
    df = results.load_dataset()
    assert df["i"].tolist() == list(range(0, 60, 4)) and df["check"].map(lambda c: c["is_valid"]).all()
    assert _completions(server) == 15  # only the rows that passed were explained, none was paid twice


def test_the_readme_quality_gates_example_is_a_valid_config() -> None:
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
                 if "validation" in b)
    config = gm.DatasetConfig.from_yaml("columns:\n  - {name: question, column_type: expression, expr: q}\n"
                                        + block.split("columns:\n", 1)[1])
    assert [c.column_type for c in config.columns] == ["expression", "llm_code", "validation", "llm_judge"]


def test_the_cli_retries_failed_rows_and_gates(server: LLMTestServer, tmp_path: Path) -> None:
    """``gristmill create --retry-failed`` and ``--target-valid-records`` through the real CLI."""
    provider, model = provider_and_model(server.url)
    home = tmp_path / "home"
    home.mkdir()
    (home / "models.yaml").write_text(yaml.safe_dump([model.model_dump(mode="json", exclude_none=True)]))
    (home / "providers.yaml").write_text(yaml.safe_dump([provider.model_dump(mode="json", exclude_none=True)]))
    _rows(200).to_parquet(tmp_path / "seed.parquet")
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({
        "seed": {"source": "seed.parquet"},
        "columns": [{"name": "tag", "column_type": "expression",
                     "expr": f"{{{{ '{MARK}' if i % 10 == 3 else 'ok' }}}}"},
                    {"name": "draft", "column_type": "llm_text", "prompt": "Draft {{ i }} {{ tag }}"}]}))
    env = {**os.environ, "GRISTMILL_HOME": str(home)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gristmill.cli.main", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True)

    server.configure(fail_marker=MARK)
    assert cli("create", "cfg.yaml", "-n", "40").returncode == 0
    server.configure(fail_marker="")
    server.reset_stats()
    done = cli("create", "cfg.yaml", "-n", "40", "--retry-failed")
    assert done.returncode == 0, done.stderr
    assert _completions(server) == 4
    gated = cli("create", "cfg.yaml", "-n", "20", "--name", "gated", "--target-valid-records", "10",
                "--valid-filter", "i % 2 == 0")
    assert gated.returncode == 0, gated.stderr
    assert gm.DatasetResults(tmp_path / "artifacts" / "gated").load_dataset()["i"].tolist() == list(range(0, 20, 2))
