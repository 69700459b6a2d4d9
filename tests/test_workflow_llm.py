"""Workflows with LLM stages, against the project's test server (a real HTTP endpoint on 127.0.0.1).

- A complete workflow resumes with its endpoint gone: every stage REUSE, no request.
- A rerun stage pays only for prompts that changed: the workflow owns one response cache.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import gristmill as gm
from gristmill.testing import LLMTestServer, provider_and_model

ROWS = 6


@pytest.fixture()
def server() -> Iterator[LLMTestServer]:
    with LLMTestServer() as instance:
        yield instance


def make_mill(root: Path, url: str) -> gm.Mill:
    provider, model = provider_and_model(url, max_parallel_requests=4, max_retries=0, retry_backoff=0.01,
                                         timeout=5)
    return gm.Mill(root, run_config=gm.RunConfig(batch_size=4, show_progress=False),
                   model_providers=[provider], model_configs=[model])


def build(mill: gm.Mill, summary_prompt: str = "Summarise: {{ answer }}") -> Any:
    wf = mill.compose_workflow("llm-wf")
    wf.add_stage("topics", gm.ConfigBuilder().add_column(
        name="topic", column_type="sampler", sampler_type="category",
        params={"values": ["rivers", "stars", "bread"]}).add_column(
        name="k", column_type="sampler", sampler_type="uniform", params={"low": 1, "high": 10**6, "integer": True}),
        num_records=ROWS)
    wf.add_stage("answers", gm.ConfigBuilder().add_column(
        name="answer", column_type="llm_text", prompt="Write about {{ topic }} (item {{ k }})."))
    wf.add_stage("review", gm.ConfigBuilder()
                 .add_column(name="verdict", column_type="llm_text", prompt="Is this good? {{ answer }}")
                 .add_column(name="summary", column_type="llm_text", prompt=summary_prompt))
    return wf


def completions(server: LLMTestServer) -> int:
    return int(server.stats()["completions"])


def test_complete_workflow_resumes_with_the_endpoint_down(server: LLMTestServer, tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    with make_mill(root, server.url) as mill:
        first = build(mill).run()
        expected = first.load_dataset()
    assert completions(server) == 3 * ROWS and len(expected) == ROWS
    url = server.url
    server.stop()
    seen = server.stats()["requests"]
    for mode in ("if-possible", "always"):
        with make_mill(root, url) as mill:  # the same provider, nothing listening any more
            out = build(mill).run(resume=mode)
            assert [s.action.value for s in out.plan.stages] == ["reuse"] * 3
            assert out.load_dataset().equals(expected)
            assert out["answers"].metadata.usage  # full results read from disk, usage included
    assert server.stats()["requests"] == seen


def test_rerun_stage_pays_only_for_changed_prompts(server: LLMTestServer, tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    with make_mill(root, server.url) as mill:
        first = build(mill).run()
        before = completions(server)
        out = build(mill, summary_prompt="Summarise briefly: {{ answer }}").run(resume="if-possible")
        assert [s.action.value for s in out.plan.stages] == ["reuse", "reuse", "run"]
        assert out.plan["review"].reason == "prompt of column 'summary' changed"
        # 'verdict' kept its prompts: the workflow's response cache answers them
        assert completions(server) - before == ROWS
        assert list(out.load_dataset().verdict) == list(first.load_dataset().verdict)
        assert (out.workflow_dir / "response-cache.sqlite").is_file()
