"""The response cache: unit behaviour, resume/extend/rerun costs, and a SIGKILL mid-batch."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import gristmill as gm
from gristmill.llm.cache import ResponseCache
from gristmill.testing import FailedResponse, FunctionModel, LLMTestServer, ServerProcess, provider_and_model


@pytest.fixture()
def server() -> Iterator[LLMTestServer]:
    with LLMTestServer() as instance:
        yield instance


def test_put_get_stats_clear(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "response-cache.sqlite"
    with ResponseCache(path) as cache:
        key = ResponseCache.key(identity="openai:http://x/v1|m", body={"messages": []}, column="c", row=0)
        assert cache.get(key) is None
        cache.put(key, {"v": "hello", "r": None}, column="c")
        assert cache.get(key) == {"v": "hello", "r": None}
        assert cache.get_many([key, "missing"]) == {key: {"v": "hello", "r": None}}
        assert cache.stats()["entries"] == 1 and cache.stats()["columns"] == {"c": 1}
        assert cache.clear() == 1 and cache.get(key) is None
    assert path.exists()
    with ResponseCache(path) as again:
        assert again._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_key_covers_identity_body_column_and_row() -> None:
    base = {"identity": "a|m", "body": {"messages": [{"role": "user", "content": "x"}]}, "column": "c", "row": 1}
    key = ResponseCache.key(**base)  # type: ignore[arg-type]
    for change in ({"identity": "b|m"}, {"body": {"messages": []}}, {"column": "d"}, {"row": 2}):
        assert ResponseCache.key(**{**base, **change}) != key  # type: ignore[arg-type]
    assert ResponseCache.key(**base) == key  # type: ignore[arg-type]


def _mill(tmp_path: Path, url: str, *, cache: bool = True, batch_size: int = 1000) -> gm.Mill:
    provider, model = provider_and_model(url, max_parallel_requests=8)
    return gm.Mill(tmp_path / "artifacts", model_providers=[provider], model_configs=[model],
                   run_config=gm.RunConfig(batch_size=batch_size, seed=11, show_progress=False, cache=cache))


def _config(prompt: str = "Describe item {{ id }}.") -> gm.DatasetConfig:
    return (gm.ConfigBuilder()
            .add_column(name="id", column_type="sampler", sampler_type="uuid", params={})
            .add_column(name="text", column_type="llm_text", prompt=prompt)
            .add_column(name="summary", column_type="llm_text", prompt="Summarise: {{ text }}")
            .build())


def test_growing_num_records_pays_only_for_new_rows(server: LLMTestServer, tmp_path: Path) -> None:
    with _mill(tmp_path, server.url) as mill:
        first = mill.create(_config(), num_records=200, dataset_name="d").load_dataset()
        assert server.stats()["requests"] == 400
        grown = mill.create(_config(), num_records=250, dataset_name="d", resume="if-possible")
    assert server.stats()["requests"] == 400 + 2 * 50
    assert server.stats()["duplicates"] == 0
    df = grown.load_dataset()
    assert len(df) == 250 and df["text"].notna().all()
    assert df["text"][:200].tolist() == first["text"].tolist()


def test_rerun_of_a_changed_stage_pays_only_for_changed_requests(server: LLMTestServer, tmp_path: Path) -> None:
    def run(summary_prompt: str) -> None:
        cfg = (gm.ConfigBuilder()
               .add_column(name="id", column_type="sampler", sampler_type="uuid", params={})
               .add_column(name="text", column_type="llm_text", prompt="Describe item {{ id }}.")
               .add_column(name="summary", column_type="llm_text", prompt=summary_prompt)
               .build())
        with _mill(tmp_path, server.url) as mill:
            wf = mill.compose_workflow("wf")
            wf.add_stage("items", cfg, num_records=30)
            wf.run(resume="if-possible")

    run("Summarise: {{ text }}")
    assert server.stats()["requests"] == 60
    run("Summarise in five words: {{ text }}")
    assert server.stats()["requests"] == 60 + 30  # 'text' came from the workflow's cache
    assert (tmp_path / "artifacts" / "wf" / "response-cache.sqlite").exists()


def test_cache_false_opts_out(server: LLMTestServer, tmp_path: Path) -> None:
    with _mill(tmp_path, server.url, cache=False) as mill:
        mill.create(_config(), num_records=10, dataset_name="d")
    assert not (tmp_path / "artifacts" / "d" / "response-cache.sqlite").exists()

    def run(summary_prompt: str) -> None:
        cfg = (gm.ConfigBuilder()
               .add_column(name="id", column_type="sampler", sampler_type="uuid", params={})
               .add_column(name="text", column_type="llm_text", prompt="Describe item {{ id }}.")
               .add_column(name="summary", column_type="llm_text", prompt=summary_prompt)
               .build())
        with _mill(tmp_path / "wf", server.url, cache=False) as mill:
            wf = mill.compose_workflow("wf")
            wf.add_stage("items", cfg, num_records=30)
            wf.run(resume="if-possible")

    # A rerun of a changed stage pays again for the unchanged 'text' column: nothing was cached.
    server.reset_stats()
    run("Summarise: {{ text }}")
    assert server.stats()["requests"] == 60
    run("Summarise in five words: {{ text }}")
    assert server.stats()["requests"] == 60 + 60
    assert not list((tmp_path / "wf").rglob("response-cache.sqlite"))


def test_key_uses_the_dataset_wide_row_index(server: LLMTestServer, tmp_path: Path) -> None:
    # A prompt without row variables: every row sends the same body, so only the row index
    # tells row 10 (batch 2, row 0) from row 0 (batch 1, row 0).
    cfg = gm.ConfigBuilder().add_column(name="t", column_type="llm_text", prompt="Say something.").build()
    server.configure(latency=0.005)
    provider, model = provider_and_model(server.url, max_parallel_requests=1, max_retries=0)
    run_config = gm.RunConfig(batch_size=10, seed=3, show_progress=False, error_window=10, max_error_rate=0.3)

    def stop_during_batch_2() -> None:
        deadline = time.monotonic() + 10
        while server.app.stats.completions < 14 and time.monotonic() < deadline:
            time.sleep(0.0005)
        server.configure(fail_status=503)

    with gm.Mill(tmp_path, model_providers=[provider], model_configs=[model], run_config=run_config) as mill:
        watcher = threading.Thread(target=stop_during_batch_2)
        watcher.start()
        try:
            with pytest.raises(gm.ModelError):
                mill.create(cfg, num_records=25, dataset_name="d")
        finally:
            watcher.join()
        paid_in_batch_2 = server.stats()["completions"] - 10
        assert paid_in_batch_2 >= 4
        server.configure(fail_status=None)
        resumed = mill.create(cfg, num_records=25, dataset_name="d", resume="if-possible")
        # Batch 2's answers paid before the stop come from the cache; every row is paid once.
        assert resumed.run_usage["default"]["cache_hits"] == paid_in_batch_2
        assert server.stats()["completions"] == 25
        grown = mill.create(cfg, num_records=35, dataset_name="d", resume="if-possible")
    assert server.stats()["completions"] == 35  # growing pays only for the 10 new rows
    assert grown.count_records() == 35 and grown.load_dataset()["t"].notna().all()


def test_cache_scope_separates_same_named_columns(tmp_path: Path) -> None:
    from gristmill.engine.generators.base import BatchFrame, EngineContext, build_generator
    from gristmill.llm.registry import ModelRegistry
    from gristmill.llm.runtime import LLMRuntime

    fm = FunctionModel(lambda request: "An answer.")
    cfg = gm.ConfigBuilder().add_column(name="t", column_type="llm_text", prompt="Same prompt.").build()
    runtime = LLMRuntime(ModelRegistry.load(providers=[fm.provider()], models=[fm.model_config()]),
                         clients={fm.name: fm})

    def generate(cache: ResponseCache, scope: str) -> list[object]:
        context = EngineContext(config=cfg, run_config=gm.RunConfig(show_progress=False), llm=runtime,
                                response_cache=cache)
        context.cache_scope = scope
        generator = build_generator(cfg.columns[0], context)
        return list(asyncio.run(generator.generate(BatchFrame(0, 0, 3, 0)))["t"])

    with ResponseCache(tmp_path / "response-cache.sqlite") as cache:
        generate(cache, "stage-a")
        assert len(fm.calls) == 3
        generate(cache, "stage-b")  # same column name and prompt, another stage: its own answers
        assert len(fm.calls) == 6
        generate(cache, "stage-a")
        assert len(fm.calls) == 6
        assert set(cache.stats()["columns"]) == {"stage-a/t", "stage-b/t"}


def test_import_from_copies_missing_entries_and_leaves_the_source_alone(tmp_path: Path) -> None:
    with ResponseCache(tmp_path / "old.sqlite") as old:
        for i in range(5):
            old.put(f"k{i}", {"v": i, "r": None}, column="c")
    before = (tmp_path / "old.sqlite").read_bytes()
    with ResponseCache(tmp_path / "new.sqlite") as new:
        new.put("k0", {"v": "newer", "r": None}, column="c")
        assert new.import_from(tmp_path / "old.sqlite") == 4
        assert new.import_from(tmp_path / "old.sqlite") == 0
        assert new.get("k0") == {"v": "newer", "r": None} and new.get("k4") == {"v": 4, "r": None}
        assert new.stats()["entries"] == 5
        (tmp_path / "foreign.sqlite").write_bytes(b"not a database at all" * 100)
        with pytest.raises(gm.ArtifactError, match="not a SQLite file"):
            new.import_from(tmp_path / "foreign.sqlite")
    assert (tmp_path / "old.sqlite").read_bytes() == before


def test_errors_are_not_cached(tmp_path: Path) -> None:
    fm = FunctionModel(lambda request: FailedResponse(400, "bad request"))
    cfg = (gm.ConfigBuilder()
           .add_column(name="id", column_type="sampler", sampler_type="uuid", params={})
           .add_column(name="text", column_type="llm_text", prompt="Describe {{ id }}.")
           .build())
    with gm.Mill(tmp_path / "a", model_providers=[fm.provider()], model_configs=[fm.model_config()],
                 clients={fm.name: fm}, run_config=gm.RunConfig(show_progress=False, max_error_rate=1.0)) as mill:
        res = mill.create(cfg, num_records=5, dataset_name="d")
    assert res.usage["default"]["failures"] == 5 == len(fm.calls)  # a 400 is not retried
    assert ResponseCache(tmp_path / "a" / "d" / "response-cache.sqlite").stats()["entries"] == 0


CRASH_SCRIPT = textwrap.dedent("""
    import sys
    import gristmill as gm
    from gristmill.testing import provider_and_model
    provider, model = provider_and_model(sys.argv[1], max_parallel_requests=8)
    cfg = (gm.ConfigBuilder()
           .add_column(name="id", column_type="sampler", sampler_type="uuid", params={})
           .add_column(name="text", column_type="llm_text", prompt="Describe item {{ id }}.")
           .build())
    mill = gm.Mill(sys.argv[2], run_config=gm.RunConfig(batch_size=1000, seed=5, show_progress=False),
                   model_providers=[provider], model_configs=[model])
    result = mill.create(cfg, num_records=int(sys.argv[3]), dataset_name="crash", resume="if-possible")
    print(result.count_records())
""")


def test_sigkill_mid_batch_repays_at_most_the_requests_in_flight(tmp_path: Path) -> None:
    n, parallel = 300, 8
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    with ServerProcess(latency=0.02) as server:
        args = [sys.executable, "-c", CRASH_SCRIPT, server.url, str(tmp_path / "artifacts"), str(n)]
        proc = subprocess.Popen(args, env=env)
        deadline = time.monotonic() + 60
        while server.stats()["completions"] < 100 and time.monotonic() < deadline:
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        at_kill = server.stats()
        assert 100 <= at_kill["completions"] < n  # killed inside the one batch of 1000
        assert not list((tmp_path / "artifacts" / "crash").glob("parquet-files/*.parquet"))
        with ResponseCache(tmp_path / "artifacts" / "crash" / "response-cache.sqlite") as cache:
            in_flight_at_kill = at_kill["requests"] - cache.stats()["entries"]
        resumed = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
        after = server.stats()
    assert resumed.stdout.strip().endswith(str(n))
    repaid = after["duplicates"] - at_kill["duplicates"]  # bodies the server had seen before the kill
    assert repaid <= in_flight_at_kill <= parallel
    assert after["requests"] - at_kill["requests"] <= n - at_kill["completions"] + parallel


def test_a_changed_dataset_starts_fresh_with_the_old_answers(tmp_path: Path, server: LLMTestServer) -> None:
    two = (gm.ConfigBuilder()
           .add_column(name="id", column_type="sampler", sampler_type="uuid", params={})
           .add_column(name="a", column_type="llm_text", prompt="Describe {{ id }}.")
           .add_column(name="b", column_type="llm_text", prompt="Name {{ id }}."))
    mill = _mill(tmp_path, server.url)
    first = mill.create(two.build(), num_records=20, dataset_name="d")
    sent = server.stats()["requests"]
    changed = gm.ConfigBuilder.from_config(two.build()).build()
    changed.columns[2] = gm.LLMTextColumn(name="b", prompt="Rename {{ id }}.")
    with pytest.warns(UserWarning, match="starting fresh in"):
        fresh = mill.create(changed, num_records=20, dataset_name="d", resume="if-possible")
    assert fresh.artifact_path != first.artifact_path
    assert server.stats()["requests"] - sent == 20  # only column b's changed prompts were paid

    # An unreadable old cache only means paying again: the fresh run still happens.
    (first.artifact_path / "response-cache.sqlite").write_bytes(b"garbage")
    (fresh.artifact_path / "response-cache.sqlite").write_bytes(b"garbage")
    third = gm.ConfigBuilder.from_config(changed).build()
    third.columns[1] = gm.LLMTextColumn(name="a", prompt="Depict {{ id }}.")
    with pytest.warns(UserWarning, match="starting fresh in"), pytest.warns(UserWarning, match="not reusing answers"):
        again = mill.create(third, num_records=20, dataset_name="d", resume="if-possible")
    assert again.count_records() == 20
