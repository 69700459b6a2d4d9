"""``with_trace`` on LLM columns (``<column>__trace``) and reasoning tokens in usage."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import gristmill as gm
from gristmill.config.llm_columns import LLMStructuredColumn, LLMTextColumn
from gristmill.engine.generators.llm import TRACE_TYPE
from gristmill.llm.openai import parse_completion
from gristmill.llm.types import Completion, trace_entry
from gristmill.testing import FunctionModel, LLMTestServer, provider_and_model

PET = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


@pytest.fixture()
def server() -> Iterator[LLMTestServer]:
    with LLMTestServer() as instance:
        yield instance


def _server_mill(server: LLMTestServer, root: Path, batch_size: int = 4) -> gm.Mill:
    provider, model = provider_and_model(server.url)
    return gm.Mill(root, run_config=gm.RunConfig(batch_size=batch_size, show_progress=False),
                   model_providers=[provider], model_configs=[model])


def _topics(**column: object) -> gm.ConfigBuilder:
    return (gm.ConfigBuilder()
            .add_column(name="topic", column_type="sampler", sampler_type="category",
                        params={"values": ["cats", "dogs", "owls"]})
            .add_column(name="t", column_type="llm_text", prompt="Write about {{ topic }}.", **column))


# ------------------------------------------------------------------------------------------------ config

def test_trace_adds_an_output_column_and_enters_the_fingerprint_only_when_set() -> None:
    plain = LLMTextColumn(name="t", prompt="p")
    assert plain.output_columns() == ["t"]
    assert "with_trace" not in plain.fingerprint_payload()
    assert "multi_modal_context" not in plain.fingerprint_payload()
    traced = LLMTextColumn(name="t", prompt="p", with_trace="all_messages", keep_reasoning=True)
    assert traced.output_columns() == ["t", "t__reasoning", "t__trace"]
    assert traced.fingerprint_payload()["with_trace"] == "all_messages"
    with pytest.raises(gm.ConfigError, match="with_trace"):
        LLMTextColumn(name="t", prompt="p", with_trace="everything")  # type: ignore[arg-type]


def test_trace_entries_are_text_and_keep_tool_calls() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    entry = trace_entry({"role": "assistant", "content": None, "tool_calls": [call]})
    assert entry["role"] == "assistant" and json.loads(str(entry["content"])) == [call]
    assert trace_entry({"role": "tool", "content": "42"}) == {"role": "tool", "content": "42", "reasoning": None}


# ------------------------------------------------------------------------------------------ end to end

def test_all_messages_hold_the_prompt_every_answer_and_the_corrections(tmp_path: Path) -> None:
    def answer(request: object) -> Completion:
        from gristmill.testing.function_model import ChatRequest

        assert isinstance(request, ChatRequest)
        if request.corrections == 0:
            return Completion("not json at all", reasoning="first try")
        return Completion('{"name": "Rex"}', reasoning="fixed it")

    fm = FunctionModel(answer)
    cfg = (gm.ConfigBuilder()
           .add_column(LLMStructuredColumn(name="pet", prompt="A pet.", system_prompt="Be brief.",
                                           output_format=PET, with_trace="all_messages"))
           .build())
    with gm.Mill(tmp_path, model_providers=[fm.provider()], model_configs=[fm.model_config()],
                 clients={fm.name: fm}, run_config=gm.RunConfig(show_progress=False)) as mill:
        df = mill.create(cfg, num_records=2).load_dataset()
    assert list(df.columns) == ["pet", "pet__trace"]
    trace = list(df["pet__trace"][0])
    assert [m["role"] for m in trace] == ["system", "user", "assistant", "user", "assistant"]
    assert trace[0]["content"] == "Be brief."
    assert trace[1]["content"].startswith("A pet.\n\nRespond with a JSON object")
    assert (trace[2]["content"], trace[2]["reasoning"]) == ("not json at all", "first try")
    assert trace[3]["content"].startswith("That answer could not be used") and trace[3]["reasoning"] is None
    assert (trace[4]["content"], trace[4]["reasoning"]) == ('{"name": "Rex"}', "fixed it")
    assert df["pet"][0] == {"name": "Rex"}


def test_last_message_and_reasoning_tokens_over_http(server: LLMTestServer, tmp_path: Path) -> None:
    server.configure(reasoning="field")
    with _server_mill(server, tmp_path) as mill:
        result = mill.create(_topics(with_trace="last_message").build(), num_records=6)
    df = result.load_dataset()
    for topic, value, trace in zip(df["topic"], df["t"], df["t__trace"], strict=True):
        (only,) = list(trace)
        assert only["role"] == "assistant" and only["content"] == value
        assert value.startswith(f"Echo: Write about {topic}.")
        assert only["reasoning"].startswith("Considering request")
    usage = result.usage["default"]
    # The test server reports 3 reasoning tokens per answer (completion_tokens_details), inside completion_tokens.
    assert usage["reasoning_tokens"] == 3 * 6
    assert usage["output_tokens"] == server.stats()["completion_tokens"]


def test_without_reported_reasoning_tokens_usage_has_no_such_counter(server: LLMTestServer, tmp_path: Path) -> None:
    with _server_mill(server, tmp_path) as mill:
        result = mill.create(_topics().build(), num_records=3)
    assert "reasoning_tokens" not in result.usage["default"]


def test_parse_completion_reads_reasoning_tokens_and_tolerates_garbage() -> None:
    body = {"choices": [{"message": {"content": "hi"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 9, "completion_tokens_details": {"reasoning_tokens": 7}}}
    completion = parse_completion(body).completion
    assert completion is not None and (completion.output_tokens, completion.reasoning_tokens) == (9, 7)
    body["usage"]["completion_tokens_details"] = "many"  # type: ignore[index]
    completion = parse_completion(body).completion
    assert completion is not None and completion.reasoning_tokens == 0


def test_a_rerun_serves_traces_from_the_cache(server: LLMTestServer, tmp_path: Path) -> None:
    server.configure(reasoning="tags")
    with _server_mill(server, tmp_path) as mill:
        first = mill.create(_topics(with_trace="all_messages").build(), num_records=8,
                            dataset_name="d").load_dataset()
        paid = server.stats()["completions"]
        # Another column changes the fingerprint: a fresh run, seeded from the old response cache.
        changed = _topics(with_trace="all_messages").add_column(name="x", column_type="expression", expr="{{ topic }}")
        with pytest.warns(UserWarning, match="starting fresh"):
            again = mill.create(changed.build(), num_records=8, dataset_name="d").load_dataset()
    assert paid == 8 and server.stats()["completions"] == paid
    assert again["t__trace"].map(list).tolist() == first["t__trace"].map(list).tolist()
    assert [m["role"] for m in first["t__trace"][0]] == ["user", "assistant"]
    assert first["t__trace"][0][1]["reasoning"].startswith("Considering request")
    assert "<think>" not in first["t__trace"][0][1]["content"]


def test_cache_entries_from_before_traces_still_answer_with_a_trace(server: LLMTestServer, tmp_path: Path) -> None:
    with _server_mill(server, tmp_path) as mill:
        result = mill.create(_topics().build(), num_records=4, dataset_name="d")
        # What an older gristmill stored: the value and reasoning only.
        with sqlite3.connect(result.artifact_path / "response-cache.sqlite") as db:
            for key, value in db.execute("SELECT key, value FROM responses").fetchall():
                stored = json.loads(value)
                assert stored.pop("t")[0]["role"] == "assistant"
                db.execute("UPDATE responses SET value = ? WHERE key = ?", (json.dumps(stored), key))
        with pytest.warns(UserWarning, match="starting fresh"):
            df = mill.create(_topics(with_trace="all_messages").build(), num_records=4,
                             dataset_name="d").load_dataset()
    assert server.stats()["completions"] == 4  # nothing paid twice
    for topic, value, trace in zip(df["topic"], df["t"], df["t__trace"], strict=True):
        assert [(m["role"], m["content"]) for m in trace] == [("user", f"Write about {topic}."), ("assistant", value)]


def test_the_trace_type_is_the_same_in_every_batch_and_null_where_skipped(server: LLMTestServer,
                                                                          tmp_path: Path) -> None:
    # The first batch is skipped whole: its trace column holds only nulls, yet keeps the type.
    pq.write_table(pa.table({"guard": [True] * 4 + [False] * 4}), tmp_path / "seed.parquet")
    cfg = (gm.ConfigBuilder()
           .with_seed_dataset(str(tmp_path / "seed.parquet"))
           .add_column(name="t", column_type="llm_text", prompt="Row {{ guard }}", with_trace="last_message",
                       skip="guard")
           .build())
    with _server_mill(server, tmp_path / "out") as mill:
        result = mill.create(cfg, num_records=8)
    files = sorted((result.artifact_path / "parquet-files").glob("batch_*.parquet"))
    assert len(files) == 2
    # Parquet names a list's item 'element' on reading: compare the batch files with each other.
    types = {pq.read_schema(f).field("t__trace").type for f in files}
    assert len(types) == 1 and types.pop().value_type == TRACE_TYPE.value_type
    df = result.load_dataset()
    assert df["t__trace"][:4].isna().all() and df["t__trace"][4:].notna().all()
    assert server.stats()["completions"] == 4


def test_a_failed_cell_has_a_null_trace_and_its_error_is_listed(tmp_path: Path) -> None:
    fm = FunctionModel(lambda request: "never json" if "bad" in request.messages[0]["content"] else '{"name": "ok"}')
    cfg = (gm.ConfigBuilder()
           .add_column(name="kind", column_type="sampler", sampler_type="category",
                       params={"values": ["bad", "good"]})
           .add_column(LLMStructuredColumn(name="pet", prompt="A {{ kind }} pet.", output_format=PET,
                                           with_trace="all_messages", max_corrections=1))
           .build())
    with gm.Mill(tmp_path, model_providers=[fm.provider()], model_configs=[fm.model_config()],
                 clients={fm.name: fm}, run_config=gm.RunConfig(show_progress=False, max_error_rate=1.0)) as mill:
        df = mill.create(cfg, num_records=10).load_dataset()
    bad = df["kind"] == "bad"
    assert bad.any() and (~bad).any()
    assert df.loc[bad, "pet__trace"].isna().all() and df.loc[~bad, "pet__trace"].notna().all()
    assert all(e[0]["column"] == "pet" and "after 1 corrections" in e[0]["reason"] for e in df.loc[bad, "__errors"])
