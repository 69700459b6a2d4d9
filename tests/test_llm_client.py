"""The LLM client, throttle and generators against the real test server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import gristmill as gm
from gristmill.llm.registry import ModelRegistry
from gristmill.llm.runtime import LLMRuntime, ModelHandle
from gristmill.storage.metadata import DatasetMetadata
from gristmill.testing import LLMTestServer, provider_and_model

PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}


@pytest.fixture()
def server() -> Iterator[LLMTestServer]:
    with LLMTestServer() as instance:
        yield instance


def make_mill(tmp_path: Path, url: str, *, batch_size: int = 1000, error_window: int = 50,
              max_error_rate: float = 0.5, api_key: str | None = None, **model_fields: Any) -> gm.Mill:
    provider, model = provider_and_model(url, **{"retry_backoff": 0.01, **model_fields})
    if api_key is not None:
        provider = provider.model_copy(update={"api_key": api_key})
    run_config = gm.RunConfig(batch_size=batch_size, seed=7, show_progress=False, error_window=error_window,
                              max_error_rate=max_error_rate)
    return gm.Mill(tmp_path / "artifacts", run_config=run_config, model_providers=[provider],
                   model_configs=[model])


def text_config(prompt: str = "Describe item {{ id }}.", **column: Any) -> gm.DatasetConfig:
    return (gm.ConfigBuilder()
            .add_column(name="id", column_type="sampler", sampler_type="uuid", params={})
            .add_column(name="text", column_type="llm_text", prompt=prompt, **column)
            .build())


def handle_for(url: str, **model_fields: Any) -> tuple[LLMRuntime, ModelHandle]:
    provider, model = provider_and_model(url, **{"retry_backoff": 0.01, **model_fields})
    runtime = LLMRuntime(ModelRegistry.load(providers=[provider], models=[model]))
    return runtime, runtime.model("default")


def run_requests(url: str, n: int, **model_fields: Any) -> tuple[list[Any], dict[str, int], ModelHandle]:
    """Send ``n`` distinct requests concurrently; results are completions or the raised errors."""
    runtime, handle = handle_for(url, **model_fields)
    usage: dict[str, int] = defaultdict(int)

    async def main() -> list[Any]:
        try:
            bodies = [handle.build_body([{"role": "user", "content": f"row {i}"}]) for i in range(n)]
            return list(await asyncio.gather(*(handle.complete(b, usage) for b in bodies),
                                             return_exceptions=True))
        finally:
            await runtime.aclose()

    return asyncio.run(main()), usage, handle


def test_requests_run_concurrently_up_to_max_parallel(server: LLMTestServer) -> None:
    server.configure(latency=0.05)
    started = time.perf_counter()
    results, usage, _ = run_requests(server.url, 40, max_parallel_requests=8)
    elapsed = time.perf_counter() - started
    assert all(r.content.startswith("Echo: row") for r in results)
    assert server.stats()["max_in_flight"] == 8
    assert elapsed < 0.05 * 40 / 8 * 2  # 5 rounds of 50 ms, not 40 sequential requests
    assert usage["requests"] == 40 and usage["input_tokens"] > 0 and usage["output_tokens"] > 0


def test_429_storm_shrinks_in_flight_then_recovers(server: LLMTestServer) -> None:
    server.configure(latency=0.01, max_concurrent=4, retry_after=0.02)
    runtime, handle = handle_for(server.url, max_parallel_requests=16)
    usage: dict[str, int] = defaultdict(int)

    async def batch(start: int, n: int) -> None:
        bodies = [handle.build_body([{"role": "user", "content": f"row {i}"}]) for i in range(start, start + n)]
        await asyncio.gather(*(handle.complete(b, usage) for b in bodies))

    async def main() -> tuple[float, float]:
        await batch(0, 300)
        squeezed = handle.throttle.limit
        server.configure(max_concurrent=None)
        await batch(300, 600)
        await runtime.aclose()
        return squeezed, handle.throttle.limit

    squeezed, recovered = asyncio.run(main())
    stats = server.stats()
    assert stats["completions"] == 900
    assert 3 <= squeezed <= 5  # settled at the server's cap, not far below it
    assert usage["rate_limited"] == stats["rate_limited"] < 60  # a few probes, not a storm
    assert recovered >= 10


def test_retry_after_is_honoured(server: LLMTestServer) -> None:
    server.configure(latency=0.1, max_concurrent=1, retry_after=0.3)
    results, usage, _ = run_requests(server.url, 2, max_parallel_requests=2)
    assert all(not isinstance(r, Exception) for r in results)
    log = server.request_log()
    limited = [(t, digest) for t, digest, status in log if status == 429]
    assert limited and usage["rate_limited"] == len(limited)
    for t, digest in limited:
        retry = next(t2 for t2, d2, _ in log if d2 == digest and t2 > t)
        assert retry - t >= 0.3


def test_5xx_answers_are_retried(server: LLMTestServer) -> None:
    server.configure(error_rate=0.3)
    results, usage, _ = run_requests(server.url, 50)
    assert all(not isinstance(r, Exception) for r in results)
    assert server.stats()["errors"] > 0
    assert usage["retries"] == server.stats()["errors"]


def test_timeouts_are_retried_then_fail(server: LLMTestServer) -> None:
    server.configure(latency=2.0)
    started = time.perf_counter()
    results, usage, _ = run_requests(server.url, 1, timeout=0.2, max_retries=1)
    assert isinstance(results[0], gm.ModelError) and "timeout" in str(results[0])
    assert usage["requests"] == 2
    assert time.perf_counter() - started < 1.5


def test_unreachable_endpoint_fails_the_cell(tmp_path: Path) -> None:
    results, usage, _ = run_requests("http://127.0.0.1:9/v1", 1, max_retries=1)
    assert isinstance(results[0], gm.ModelError)
    assert "cannot connect to 127.0.0.1:9" in str(results[0])


def test_401_stops_the_run_without_leaking_the_key(server: LLMTestServer, tmp_path: Path) -> None:
    # The server quotes the Authorization and X-* headers it got: the client must redact them.
    server.configure(api_key="right-key", echo_headers=True)
    provider, model = provider_and_model(server.url, retry_backoff=0.01)
    provider = provider.model_copy(update={"api_key": "wrong-key-123",
                                           "extra_headers": {"X-Org-Token": "org-secret-456"}})
    with gm.Mill(tmp_path / "artifacts", run_config=gm.RunConfig(show_progress=False),
                 model_providers=[provider], model_configs=[model]) as mill:
        with pytest.raises(gm.ModelAuthError) as info:
            mill.create(text_config(), num_records=5)
    message = str(info.value)
    assert "401" in message and "Request headers: authorization: Bearer ***, x-org-token: ***" in message
    assert "wrong-key-123" not in message and "org-secret-456" not in message
    for path in (tmp_path / "artifacts").rglob("*.json"):
        assert "wrong-key-123" not in path.read_text() and "org-secret-456" not in path.read_text()


def test_api_key_from_env_is_sent(server: LLMTestServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server.configure(api_key="from-env")
    monkeypatch.setenv("GM_TEST_API_KEY", "from-env")
    with make_mill(tmp_path, server.url, api_key="$GM_TEST_API_KEY") as mill:
        result = mill.create(text_config(), num_records=3)
    assert result.load_dataset()["text"].notna().all()
    for path in (tmp_path / "artifacts").rglob("*.json"):
        assert "from-env" not in path.read_text()


def test_missing_api_key_variable_fails_before_any_request(server: LLMTestServer, tmp_path: Path) -> None:
    with make_mill(tmp_path, server.url, api_key="$GM_UNSET_API_KEY") as mill:
        with pytest.raises(gm.ModelAuthError, match="GM_UNSET_API_KEY"):
            mill.create(text_config(), num_records=3)
    assert server.stats()["requests"] == 0


def test_other_4xx_fails_the_cell_with_the_endpoint_message(server: LLMTestServer, tmp_path: Path) -> None:
    server.configure(fail_status=400, fail_message="context length exceeded")
    results, usage, _ = run_requests(server.url, 1)
    assert isinstance(results[0], gm.ModelError) and "context length exceeded" in str(results[0])
    assert usage["retries"] == 0


def test_retry_after_pauses_every_new_request_of_the_model(server: LLMTestServer) -> None:
    # The endpoint refuses everything for 1.5 s, asking for Retry-After: 1. Only requests already
    # in flight may come back 429; the queue behind them waits out the pause instead of storming.
    server.configure(latency=0.02, retry_after=1.0)
    runtime, handle = handle_for(server.url, max_parallel_requests=16)
    usage: dict[str, int] = defaultdict(int)

    async def main() -> None:
        async def outage() -> None:
            await asyncio.sleep(0.2)
            server.configure(max_concurrent=0)
            await asyncio.sleep(1.5)
            server.configure(max_concurrent=None)

        bodies = [handle.build_body([{"role": "user", "content": f"row {i}"}]) for i in range(600)]
        await asyncio.gather(outage(), *(handle.complete(b, usage) for b in bodies))
        await runtime.aclose()

    asyncio.run(main())
    stats = server.stats()
    assert stats["completions"] == 600
    # The first wave is refused, the halved limit is refused too, then the model pauses: a few
    # dozen 429s in all, where sending on would have drawn hundreds (1680 before pausing).
    assert 0 < stats["rate_limited"] <= 3 * 16


def test_aliases_of_one_model_share_a_throttle_capped_at_the_smallest(server: LLMTestServer) -> None:
    server.configure(latency=0.02)
    provider, wide = provider_and_model(server.url, alias="wide", max_parallel_requests=8)
    narrow = wide.model_copy(update={"alias": "narrow", "max_parallel_requests": 2})
    runtime = LLMRuntime(ModelRegistry.load(providers=[provider], models=[wide, narrow]))
    handle = runtime.model("wide")
    assert runtime.model("narrow").throttle is handle.throttle and handle.throttle.slots == 2
    usage: dict[str, int] = defaultdict(int)

    async def main() -> None:
        bodies = [handle.build_body([{"role": "user", "content": f"row {i}"}]) for i in range(20)]
        await asyncio.gather(*(handle.complete(b, usage) for b in bodies))
        await runtime.aclose()

    asyncio.run(main())
    assert server.stats()["max_in_flight"] == 2


def test_high_error_rate_stops_the_run_and_keeps_completed_batches(server: LLMTestServer, tmp_path: Path) -> None:
    with make_mill(tmp_path, server.url, batch_size=10, error_window=10, max_retries=0) as mill:
        mill.create(text_config(), num_records=20, dataset_name="d")
        server.configure(fail_status=503, fail_message="upstream exploded")
        with pytest.raises(gm.ModelError) as info:
            mill.create(text_config(), num_records=40, dataset_name="d", resume="if-possible")
    message = str(info.value)
    assert "'default'" in message and "upstream exploded" in message
    meta = DatasetMetadata.load(tmp_path / "artifacts" / "d" / "metadata.json")
    assert meta.actual_rows == 20


def test_a_run_smaller_than_the_error_window_still_stops(server: LLMTestServer, tmp_path: Path) -> None:
    # 20 good rows, then the endpoint dies: 20 more rows are far fewer than error_window=50 cells.
    with make_mill(tmp_path, server.url, batch_size=10, error_window=50, max_retries=0) as mill:
        mill.create(text_config(), num_records=20, dataset_name="d")
        server.configure(fail_status=503, fail_message="upstream is down")
        with pytest.raises(gm.ModelError) as info:
            mill.create(text_config(), num_records=40, dataset_name="d", resume="if-possible")
    assert "'default'" in str(info.value) and "upstream is down" in str(info.value)
    assert DatasetMetadata.load(tmp_path / "artifacts" / "d" / "metadata.json").actual_rows == 20


def test_a_dead_endpoint_fails_a_small_run(tmp_path: Path) -> None:
    with make_mill(tmp_path, "http://127.0.0.1:9/v1", max_retries=1) as mill:
        with pytest.raises(gm.ModelError) as info:
            mill.create(text_config(), num_records=40, dataset_name="down")
    assert "'default'" in str(info.value) and "cannot connect to 127.0.0.1:9" in str(info.value)


def test_failed_cells_log_one_line_per_batch_with_the_endpoint_message(
        server: LLMTestServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server.configure(fail_status=400, fail_message="context length exceeded")
    with make_mill(tmp_path, server.url, batch_size=5, max_error_rate=1.0) as mill:
        with caplog.at_level(logging.WARNING, logger="gristmill"):
            result = mill.create(text_config(), num_records=10)
    lines = [r.getMessage() for r in caplog.records if "cells of column 'text'" in r.getMessage()]
    assert len(lines) == 2  # one per batch
    assert all("5 of 5 cells" in line and "context length exceeded" in line and "\n" not in line for line in lines)
    assert result.usage["default"]["failures"] == 10


def test_isolated_failures_leave_none_cells(server: LLMTestServer, tmp_path: Path) -> None:
    server.configure(error_rate=0.2)
    with make_mill(tmp_path, server.url, max_retries=0) as mill:
        df = mill.create(text_config(), num_records=60).load_dataset()
    failures = int(df["text"].isna().sum())
    assert 0 < failures < 30


def test_malformed_json_is_corrected(server: LLMTestServer, tmp_path: Path) -> None:
    server.configure(malformed_rate=0.4)
    cfg = (gm.ConfigBuilder()
           .add_column(name="id", column_type="sampler", sampler_type="uuid", params={})
           .add_column(name="person", column_type="llm_structured", prompt="Invent person {{ id }}.",
                       output_format=PERSON, max_corrections=6)
           .build())
    with make_mill(tmp_path, server.url) as mill:
        result = mill.create(cfg, num_records=30)
    df = result.load_dataset()
    assert all(isinstance(v["name"], str) and isinstance(v["age"], int) for v in df["person"])
    assert result.usage["default"]["corrections"] > 0


def test_malformed_json_beyond_the_correction_budget_fails_the_cell(server: LLMTestServer, tmp_path: Path) -> None:
    server.configure(malformed_rate=1.0)
    cfg = (gm.ConfigBuilder()
           .add_column(name="id", column_type="sampler", sampler_type="uuid", params={})
           .add_column(name="person", column_type="llm_structured", prompt="Invent person {{ id }}.",
                       output_format=PERSON, max_corrections=2)
           .build())
    with make_mill(tmp_path, server.url, max_error_rate=1.0) as mill:
        result = mill.create(cfg, num_records=4)
    assert result.load_dataset()["person"].isna().all()
    assert server.stats()["requests"] == 4 * 3
    usage = result.usage["default"]
    assert usage["failures"] == 4 and usage.get("cache_hits", 0) == 0


def test_schema_invalid_json_gets_the_validation_error_back(server: LLMTestServer, tmp_path: Path) -> None:
    server.configure(invalid_rate=0.5)
    cfg = (gm.ConfigBuilder()
           .add_column(name="id", column_type="sampler", sampler_type="uuid", params={})
           .add_column(name="person", column_type="llm_structured", prompt="Invent person {{ id }}.",
                       output_format=PERSON, max_corrections=8)
           .build())
    with make_mill(tmp_path, server.url) as mill:
        result = mill.create(cfg, num_records=20)
    assert result.load_dataset()["person"].notna().all()
    assert result.usage["default"]["corrections"] > 0


def test_prompt_mode_extracts_fenced_json_from_prose(server: LLMTestServer, tmp_path: Path) -> None:
    provider, model = provider_and_model(server.url)
    provider = provider.model_copy(update={"structured_output": "prompt"})
    cfg = (gm.ConfigBuilder()
           .add_column(name="id", column_type="sampler", sampler_type="uuid", params={})
           .add_column(name="person", column_type="llm_structured", prompt="Invent person {{ id }}.",
                       output_format=PERSON)
           .build())
    with gm.Mill(tmp_path, run_config=gm.RunConfig(show_progress=False), model_providers=[provider],
                 model_configs=[model]) as mill:
        df = mill.create(cfg, num_records=5).load_dataset()
    assert df["person"].notna().all()


def test_usage_is_stored_in_metadata(server: LLMTestServer, tmp_path: Path) -> None:
    with make_mill(tmp_path, server.url) as mill:
        result = mill.create(text_config(), num_records=10, dataset_name="u")
    stored = json.loads((tmp_path / "artifacts" / "u" / "metadata.json").read_text())["usage"]["default"]
    assert stored["requests"] == 10
    assert stored["input_tokens"] == server.stats()["prompt_tokens"]
    assert stored["output_tokens"] == server.stats()["completion_tokens"]
    assert result.usage["default"]["requests"] == 10


def _column_config(column_type: str, **column: Any) -> gm.DatasetConfig:
    return (gm.ConfigBuilder()
            .add_column(name="id", column_type="sampler", sampler_type="uuid", params={})
            .add_column(name="out", column_type=column_type, prompt="Write item {{ id }}.", **column)
            .build())


def _cache_entries(root: Path) -> int:
    from gristmill.llm.cache import ResponseCache

    with ResponseCache(next(root.rglob("response-cache.sqlite")), mode="readonly") as cache:
        return int(cache.stats()["entries"])


@pytest.mark.parametrize("behaviour", [{"empty_rate": 1.0}, {"reasoning": "unclosed"}])
def test_empty_or_cut_off_answers_fail_the_cell_and_are_not_cached(
        server: LLMTestServer, tmp_path: Path, behaviour: dict[str, Any]) -> None:
    server.configure(**behaviour)
    with make_mill(tmp_path, server.url, max_error_rate=1.0) as mill:
        result = mill.create(_column_config("llm_text"), num_records=4)
    assert result.load_dataset()["out"].isna().all()
    assert result.usage["default"]["failures"] == 4
    assert _cache_entries(tmp_path / "artifacts") == 0


def test_code_answer_without_a_fence_is_corrected(server: LLMTestServer, tmp_path: Path) -> None:
    server.configure(prose_rate=0.5)
    with make_mill(tmp_path, server.url) as mill:
        result = mill.create(_column_config("llm_code", code_lang="python", max_corrections=8), num_records=20)
    df = result.load_dataset()
    assert df["out"].str.startswith("# snippet").all()
    assert result.usage["default"]["corrections"] > 0


def test_code_answer_without_a_fence_and_no_corrections_fails_the_cell(server: LLMTestServer, tmp_path: Path) -> None:
    server.configure(prose_rate=1.0)
    with make_mill(tmp_path, server.url, max_error_rate=1.0) as mill:
        result = mill.create(_column_config("llm_code", code_lang="python", max_corrections=0), num_records=4)
    assert result.load_dataset()["out"].isna().all()
    assert server.stats()["requests"] == 4
    assert _cache_entries(tmp_path / "artifacts") == 0


def test_a_number_as_content_is_a_malformed_answer_retried_then_failed_per_cell(server: LLMTestServer,
                                                                              tmp_path: Path) -> None:
    server.configure(numeric_content_rate=1.0)
    with make_mill(tmp_path, server.url, max_retries=1, max_error_rate=1.0) as mill:
        result = mill.create(text_config(), num_records=6)  # the run finishes: only its cells fail
    assert result.load_dataset()["text"].isna().all()
    assert result.usage["default"]["failures"] == 6 and server.stats()["completions"] == 12  # 1 retry each


def test_usage_counts_that_are_not_numbers_keep_the_paid_answer(server: LLMTestServer, tmp_path: Path) -> None:
    server.configure(text_usage=True)
    with make_mill(tmp_path, server.url) as mill:
        result = mill.create(text_config(), num_records=6)
    assert result.load_dataset()["text"].notna().all()
    assert result.usage["default"]["input_tokens"] == 0 and result.usage["default"].get("failures", 0) == 0


@pytest.mark.parametrize("extra", [{"x": float("nan")}, {"x": [1, float("inf")]}, {"x": {1: 2}}, {"x": object()}])
def test_inference_extra_must_be_finite_json(extra: dict[str, Any]) -> None:
    with pytest.raises(gm.ConfigError, match="extra"):
        gm.InferenceParameters(extra=extra)
