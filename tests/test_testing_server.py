"""The OpenAI-compatible test server itself: routes, behaviours, counters, subprocess mode."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from gristmill.testing import LLMTestServer, ServerProcess, schema_instance


def post(url: str, payload: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def chat(server: LLMTestServer, content: str, **extra: Any) -> tuple[int, dict[str, str], Any]:
    return post(server.url + "/chat/completions",
                {"model": "test-model", "messages": [{"role": "user", "content": content}], **extra})


def test_models_and_deterministic_echo() -> None:
    with LLMTestServer(models=("a", "b")) as server:
        with urllib.request.urlopen(server.url + "/models") as response:
            assert [m["id"] for m in json.loads(response.read())["data"]] == ["a", "b"]
        status, _, first = chat(server, "hello there")
        _, _, second = chat(server, "hello there")
    assert status == 200
    assert first["choices"][0]["message"]["content"].startswith("Echo: hello there")
    assert first["choices"][0]["message"] == second["choices"][0]["message"]
    assert first["usage"]["completion_tokens"] > 0
    assert server.stats()["duplicates"] == 1


def test_json_schema_mode_answers_an_instance() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1, "maximum": 3},
                                               "tags": {"type": "array", "items": {"enum": ["x", "y"]}}},
              "required": ["n", "tags"]}
    with LLMTestServer() as server:
        _, _, body = chat(server, "give json", response_format={"type": "json_schema",
                                                                "json_schema": {"name": "o", "schema": schema}})
    value = json.loads(body["choices"][0]["message"]["content"])
    assert 1 <= value["n"] <= 3 and set(value["tags"]) <= {"x", "y"}


def test_schema_instance_follows_refs_and_enums() -> None:
    schema = {"$defs": {"P": {"type": "object", "properties": {"k": {"const": 5}}}},
              "type": "object", "properties": {"p": {"$ref": "#/$defs/P"}, "e": {"enum": ["only"]}}}
    assert schema_instance(schema, 3) == {"p": {"k": 5}, "e": "only"}


def test_cap_answers_429_with_retry_after() -> None:
    with LLMTestServer(latency=0.3, max_concurrent=1, retry_after=2) as server:
        import threading

        slow = threading.Thread(target=chat, args=(server, "first"))
        slow.start()
        time.sleep(0.1)
        status, headers, body = chat(server, "second")
        slow.join()
    assert status == 429 and headers["Retry-After"] == "2"
    assert "Rate limit" in body["error"]["message"]
    assert server.stats()["rate_limited"] == 1 and server.stats()["max_in_flight"] == 1


def test_failures_and_auth() -> None:
    with LLMTestServer(api_key="k") as server:
        assert chat(server, "x")[0] == 401
        assert post(server.url + "/chat/completions", {"messages": []}, {"Authorization": "Bearer k"})[0] == 200
        server.configure(api_key=None, fail_status=400, fail_message="bad request here")
        status, _, body = chat(server, "x")
        assert status == 400 and body["error"]["message"] == "bad request here"
        server.configure(fail_status=None, error_rate=1.0)
        assert chat(server, "x")[0] == 503
    assert server.stats()["unauthorized"] == 1 and server.stats()["errors"] == 2


def test_malformed_and_code_and_reasoning() -> None:
    fmt = {"type": "json_object", "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}
    with LLMTestServer(malformed_rate=1.0, reasoning="field") as server:
        _, _, body = chat(server, "j", response_format=fmt)
        content = body["choices"][0]["message"]["content"]
        with pytest.raises(ValueError):
            json.loads(content)
        _, _, body = chat(server, "Answer with the code in a single ```sql fenced code block.")
        message = body["choices"][0]["message"]
    assert message["content"].startswith("Here you go:\n```sql\n")
    assert message["reasoning_content"].startswith("Considering")


def test_responses_are_single_writes_with_nodelay() -> None:
    # 20 sequential keep-alive requests: with Nagle + delayed ACK each would cost ~40 ms.
    with LLMTestServer() as server:
        sock = socket.create_connection(("127.0.0.1", server.port))
        body = json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode()
        request = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
                   .encode() + body)
        started = time.perf_counter()
        for _ in range(20):
            sock.sendall(request)
            data = b""
            while b"\r\n\r\n" not in data:
                data += sock.recv(65536)
            head, _, rest = data.partition(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            while len(rest) < length:
                rest += sock.recv(65536)
        sock.close()
    assert time.perf_counter() - started < 0.4


def test_subprocess_mode_with_stats_and_control() -> None:
    with ServerProcess(latency=0.01, max_concurrent=4) as server:
        status, _, _ = post(server.url + "/chat/completions", {"messages": [{"role": "user", "content": "x"}]})
        assert status == 200
        server.configure(fail_status=500)
        assert post(server.url + "/chat/completions", {"messages": []})[0] == 500
        stats = server.stats()
        assert stats["requests"] == 2 and stats["completions"] == 1 and stats["errors"] == 1
        server.reset_stats()
        assert server.stats()["requests"] == 0


def test_echo_headers_empty_prose_unclosed_and_unsupported_params() -> None:
    with LLMTestServer(api_key="k", echo_headers=True) as server:
        status, _, body = chat(server, "x")
        assert status == 401 and "Request headers: " in body["error"]["message"]
        status, _, body = post(server.url + "/chat/completions", {"messages": []},
                               {"Authorization": "Bearer nope", "X-Org": "o-1"})
        assert "authorization: Bearer nope, x-org: o-1" in body["error"]["message"]
        server.configure(api_key=None, echo_headers=False, unsupported_params="max_tokens, seed")
        status, _, body = chat(server, "x", max_tokens=5)
        assert status == 400 and "'max_tokens'" in body["error"]["message"]
        server.configure(unsupported_params="", empty_rate=1.0)
        assert chat(server, "x")[2]["choices"][0]["message"]["content"] == ""
        server.configure(empty_rate=0.0, prose_rate=1.0, reasoning="unclosed")
        content = chat(server, "Answer with the code in a single ```sql fenced code block.")[2][
            "choices"][0]["message"]["content"]
    assert content.startswith("<think>") and "</think>" not in content and "```" not in content


def test_subprocess_mode_parses_boolean_flags() -> None:
    with ServerProcess(api_key="k", echo_headers=True) as server:
        status, _, body = post(server.url + "/chat/completions", {"messages": []}, {"Authorization": "Bearer z"})
    assert status == 401 and "Bearer z" in body["error"]["message"]
