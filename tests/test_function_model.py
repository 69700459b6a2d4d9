"""``gristmill.testing.FunctionModel`` and the ``clients=`` seam, through the real engine."""

from __future__ import annotations

import asyncio
import doctest
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import gristmill as gm
from gristmill.config.llm_columns import LLMCodeColumn, LLMJudgeColumn, LLMStructuredColumn
from gristmill.llm import types as llm_types
from gristmill.llm.registry import ModelRegistry
from gristmill.llm.runtime import LLMRuntime
from gristmill.llm.types import ChatClient, Completion
from gristmill.testing import ChatRequest, FailedResponse, FunctionModel
from gristmill.testing import function_model as function_model_module

PET = {"type": "object", "properties": {"name": {"type": "string"}, "legs": {"type": "integer"}},
       "required": ["name", "legs"]}


def echo(request: ChatRequest) -> str:
    return f"Echo: {request.prompt}"


def topics() -> gm.ConfigBuilder:
    return gm.ConfigBuilder().add_column(name="topic", column_type="sampler", sampler_type="category",
                                         params={"values": ["cats", "dogs", "owls"]})


@pytest.fixture()
def run_config() -> gm.RunConfig:
    return gm.RunConfig(batch_size=5, seed=7, show_progress=False)


def function_mill(path: Path, fm: FunctionModel, run_config: gm.RunConfig, **model_fields: Any) -> gm.Mill:
    """A Mill whose alias 'default' is answered by ``fm``."""
    return gm.Mill(path, run_config=run_config, model_providers=[fm.provider()],
                   model_configs=[fm.model_config(**model_fields)], clients={fm.name: fm})


@pytest.fixture()
def fm() -> FunctionModel:
    return FunctionModel(echo)


@pytest.fixture()
def mill(tmp_path: Path, fm: FunctionModel, run_config: gm.RunConfig) -> Iterator[gm.Mill]:
    with function_mill(tmp_path, fm, run_config, retry_backoff=0.01) as instance:
        yield instance


def test_llm_text_sees_prompt_system_and_model(fm: FunctionModel, mill: gm.Mill) -> None:
    cfg = topics().add_column(name="essay", column_type="llm_text", prompt="About {{ topic }}.",
                              system_prompt="You like {{ topic }}.").build()
    res = mill.create(cfg, num_records=12)
    df = res.load_dataset()
    assert (df["essay"] == "Echo: About " + df["topic"] + ".").all()
    assert len(fm.calls) == 12
    first = fm.calls[0]
    assert first.model == "function-model" and first.json_schema is None and first.corrections == 0
    assert first.system is not None and first.system.startswith("You like ")
    usage = res.usage["default"]
    assert usage["requests"] == 12 and usage.get("failures", 0) == 0
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0


def test_llm_structured_answers_json_and_a_bad_answer_is_corrected(fm: FunctionModel, mill: gm.Mill) -> None:
    def pet(request: ChatRequest) -> str | dict[str, object]:
        assert request.json_schema == PET
        if "owls" in request.prompt and request.corrections == 0:
            return "an owl, I think"  # no JSON: the column sends the error back once
        return {"name": request.messages[0]["content"].split()[2], "legs": 4}  # the cell's own prompt

    fm.function = pet
    cfg = topics().add_column(LLMStructuredColumn(name="pet", prompt="A pet {{ topic }}", output_format=PET)).build()
    res = mill.create(cfg, num_records=10)
    df = res.load_dataset()
    assert [p["name"] for p in df["pet"]] == df["topic"].tolist()
    owls = int((df["topic"] == "owls").sum())
    assert owls > 0
    assert res.usage["default"]["corrections"] == owls
    assert len(fm.calls) == 10 + owls
    correction = next(c for c in fm.calls if c.corrections)
    assert correction.messages[-2] == {"role": "assistant", "content": "an owl, I think"}


def test_llm_judge_and_llm_code(fm: FunctionModel, mill: gm.Mill) -> None:
    def answer(request: ChatRequest) -> str | dict[str, object]:
        if request.json_schema is not None:  # the judge
            assert set(request.json_schema["properties"]) == {"clarity"}
            return {"clarity": {"reasoning": "short and clear", "score": "2"}}
        return "Here:\n```python\nprint('hi')\n```\nDone."

    fm.function = answer
    cfg = (topics()
           .add_column(LLMCodeColumn(name="snippet", prompt="Code about {{ topic }}", code_lang="python"))
           .add_column(LLMJudgeColumn(name="grade", prompt="Grade: {{ snippet }}", scores=[
               gm.Score(name="clarity", description="Clear?", options={"1": "no", "2": "yes"})]))
           .build())
    df = mill.create(cfg, num_records=4).load_dataset()
    assert (df["snippet"] == "print('hi')").all()
    assert all(g == {"clarity": {"score": 2, "reasoning": "short and clear"}} for g in df["grade"])
    assert len(fm.calls) == 8


def test_a_rerun_is_answered_from_the_response_cache(fm: FunctionModel, mill: gm.Mill) -> None:
    cfg = topics().add_column(name="essay", column_type="llm_text", prompt="About {{ topic }}.")
    first = mill.create(cfg, num_records=10, dataset_name="d", resume="if-possible").load_dataset()
    assert len(fm.calls) == 10
    again = mill.create(cfg, num_records=10, dataset_name="d", resume="if-possible").load_dataset()
    assert len(fm.calls) == 10
    assert again.equals(first)
    # A changed config starts fresh, from the answers already paid for: only the new column pays.
    cfg.add_column(name="title", column_type="llm_text", prompt="Title for {{ essay }}")
    with pytest.warns(UserWarning):
        res = mill.create(cfg, num_records=10, dataset_name="d", resume="if-possible")
    assert len(fm.calls) == 20
    assert res.run_usage["default"]["cache_hits"] == 10


def test_a_failing_function_fails_its_cell_and_is_counted(fm: FunctionModel, mill: gm.Mill) -> None:
    def flaky(request: ChatRequest) -> str:
        if "owls" in request.prompt:
            raise gm.ModelError("owls are out of scope")
        return echo(request)

    fm.function = flaky
    cfg = topics().add_column(name="essay", column_type="llm_text", prompt="About {{ topic }}.").build()
    run_config = gm.RunConfig(batch_size=5, seed=7, show_progress=False, max_error_rate=1.0)
    with function_mill(mill.artifact_path / "strict", fm, run_config) as tolerant:
        res = tolerant.create(cfg, num_records=10)
    df = res.load_dataset()
    owls = df["topic"] == "owls"
    assert owls.any() and df.loc[owls, "essay"].isna().all() and df.loc[~owls, "essay"].notna().all()
    usage = res.usage["default"]
    assert usage["failures"] == int(owls.sum())
    assert usage.get("retries", 0) == 0  # a ModelError is not retried
    assert len(fm.calls) == 10


def test_transient_failures_are_retried(fm: FunctionModel, mill: gm.Mill) -> None:
    failures = {"left": 2}

    def unstable(request: ChatRequest) -> str | FailedResponse:
        if failures["left"]:
            failures["left"] -= 1
            return FailedResponse.server_error(503)
        return echo(request)

    fm.function = unstable
    cfg = gm.ConfigBuilder().add_column(name="t", column_type="llm_text", prompt="Hello").build()
    res = mill.create(cfg, num_records=1)
    assert res.load_dataset()["t"].tolist() == ["Echo: Hello"]
    assert res.usage["default"]["retries"] == 2 and len(fm.calls) == 3


def test_a_429_waits_its_retry_after(tmp_path: Path, run_config: gm.RunConfig) -> None:
    seen: list[float] = []

    def limited(request: ChatRequest) -> str | FailedResponse:
        seen.append(time.monotonic())
        return FailedResponse.rate_limited(retry_after=0.3) if len(seen) == 1 else echo(request)

    fm = FunctionModel(limited)
    cfg = gm.ConfigBuilder().add_column(name="t", column_type="llm_text", prompt="Hello").build()
    with function_mill(tmp_path, fm, run_config, retry_backoff=0.01, max_parallel_requests=1) as mill:
        res = mill.create(cfg, num_records=3)
    assert res.load_dataset()["t"].tolist() == ["Echo: Hello"] * 3
    assert seen[1] - seen[0] >= 0.3  # the refused request waited Retry-After, not the 0.01 s backoff
    usage = res.usage["default"]
    assert usage["rate_limited"] == 1 and usage["requests"] == 4 == len(fm.calls)


def test_a_slow_async_function_times_out_and_is_retried(tmp_path: Path, run_config: gm.RunConfig) -> None:
    sleeps = [5.0]

    async def slow_once(request: ChatRequest) -> str:
        if sleeps:
            await asyncio.sleep(sleeps.pop())
        return echo(request)

    fm = FunctionModel(slow_once)
    cfg = gm.ConfigBuilder().add_column(name="t", column_type="llm_text", prompt="Hi").build()
    with function_mill(tmp_path, fm, run_config, timeout=0.05, retry_backoff=0.01) as mill:
        res = mill.create(cfg, num_records=1)
    assert res.load_dataset()["t"].tolist() == ["Echo: Hi"]
    assert res.usage["default"]["retries"] == 1


def test_an_auth_error_stops_the_run(fm: FunctionModel, mill: gm.Mill) -> None:
    def refuse(request: ChatRequest) -> str:
        raise gm.ModelAuthError("bad key")

    fm.function = refuse
    cfg = gm.ConfigBuilder().add_column(name="t", column_type="llm_text", prompt="Hi").build()
    with pytest.raises(gm.ModelAuthError, match="bad key"):
        mill.create(cfg, num_records=3)


def test_a_completion_gives_reasoning_and_exact_tokens(fm: FunctionModel, mill: gm.Mill) -> None:
    fm.function = lambda request: Completion("<think>hmm</think>Yes", input_tokens=7, output_tokens=3)
    cfg = gm.ConfigBuilder().add_column(name="t", column_type="llm_text", prompt="Hi", keep_reasoning=True).build()
    res = mill.create(cfg, num_records=2)
    assert res.load_dataset()[["t", "t__reasoning"]].values.tolist() == [["Yes", "hmm"]] * 2
    assert res.usage["default"]["input_tokens"] == 14 and res.usage["default"]["output_tokens"] == 6


def test_a_provider_with_a_client_needs_no_endpoint_or_key(tmp_path: Path, fm: FunctionModel,
                                                            run_config: gm.RunConfig) -> None:
    provider = gm.ModelProvider(name="function", api_key="$NOT_SET_ANYWHERE")
    cfg = gm.ConfigBuilder().add_column(name="t", column_type="llm_text", prompt="Hi").build()
    with gm.Mill(tmp_path, run_config=run_config, model_providers=[provider], model_configs=[fm.model_config()],
                 clients={"function": fm}) as mill:
        assert mill.create(cfg, num_records=2).load_dataset()["t"].tolist() == ["Echo: Hi"] * 2
    with gm.Mill(tmp_path, run_config=run_config, model_providers=[provider],
                 model_configs=[fm.model_config()]) as mill, pytest.raises(gm.ConfigError, match="http"):
        mill.validate(cfg)


def test_a_client_for_an_unknown_provider_is_a_config_error(fm: FunctionModel) -> None:
    registry = ModelRegistry.load(providers=[fm.provider()], models=[fm.model_config()])
    with pytest.raises(gm.ConfigError, match=r"no provider named 'openai'; known providers: function, local"):
        LLMRuntime(registry, clients={"openai": fm})
    with pytest.raises(gm.ConfigError, match="not a ChatClient"):
        LLMRuntime(registry, clients={"function": echo})  # type: ignore[dict-item]
    assert isinstance(fm, ChatClient)


def test_a_client_for_an_unknown_provider_fails_through_the_mill(tmp_path: Path, fm: FunctionModel,
                                                                 run_config: gm.RunConfig) -> None:
    cfg = gm.ConfigBuilder().add_column(name="t", column_type="llm_text", prompt="Hi").build()
    with gm.Mill(tmp_path, run_config=run_config, model_providers=[fm.provider()], model_configs=[fm.model_config()],
                 clients={"typo": fm}) as mill, pytest.raises(gm.ConfigError, match="known providers"):
        mill.create(cfg, num_records=1)
    assert fm.calls == []


def test_runtime_uses_the_given_client() -> None:
    fm = FunctionModel(lambda request: {"ok": True})
    runtime = LLMRuntime(ModelRegistry.load(providers=[fm.provider()], models=[fm.model_config("m")]),
                         clients={fm.name: fm})
    handle = runtime.model("m")
    assert handle.client is fm
    usage: dict[str, int] = {k: 0 for k in ("requests", "retries", "rate_limited", "input_tokens", "output_tokens")}
    body = handle.build_body([{"role": "user", "content": "x"}], {"type": "object"})
    completion = asyncio.run(handle.complete(body, usage))
    assert completion.content == '{"ok": true}' and usage["requests"] == 1
    assert fm.calls[0].json_schema == {"type": "object"}


def test_a_function_returning_nonsense_is_a_type_error() -> None:
    fm = FunctionModel(lambda request: 42)  # type: ignore[arg-type, return-value]
    body = fm.build_body("m", [{"role": "user", "content": "x"}], params={}, json_schema=None)
    with pytest.raises(TypeError, match="must return str"):
        asyncio.run(fm.send(body, timeout=1))


@pytest.mark.parametrize("module", [function_model_module, llm_types])
def test_doc_examples(module: object) -> None:
    assert doctest.testmod(module, raise_on_error=True).attempted > 0  # type: ignore[arg-type]


def _doc_block(heading: str) -> str:
    """The first python code block under ``heading`` in docs/llm.md."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "llm.md").read_text()
    section = text.split(f"## {heading}\n", 1)[1]
    return section.split("```python\n", 1)[1].split("```\n", 1)[0]


def test_docs_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"cfg": gm.ConfigBuilder().add_column(
        name="pet", column_type="llm_structured", prompt="A pet", output_format=PET).build()}
    exec(_doc_block("Testing without a server"), namespace)
    assert (tmp_path / "artifacts" / "dataset").is_dir()
    exec(_doc_block("Bring your own client"), namespace)
    assert isinstance(namespace["MyClient"](), ChatClient)


def test_a_client_can_answer_the_local_default_without_its_warning(
        tmp_path: Path, fm: FunctionModel, run_config: gm.RunConfig, caplog: pytest.LogCaptureFixture) -> None:
    cfg = gm.ConfigBuilder().add_column(name="t", column_type="llm_text", prompt="Hi").build()
    with gm.Mill(tmp_path, run_config=run_config, clients={"local": fm}) as mill:
        assert mill.create(cfg, num_records=2).load_dataset()["t"].tolist() == ["Echo: Hi"] * 2
    assert "SmolLM2" not in caplog.text
