"""Parsing model answers: reasoning, code, JSON, schema validation, judge scores (tables of cases)."""

from __future__ import annotations

from typing import Any

import pytest

from gristmill.config.llm_columns import LLMJudgeColumn
from gristmill.engine.generators.llm import FORMATS
from gristmill.llm.parsing import ParseError, extract_code, extract_json, split_reasoning
from gristmill.llm.schema import validate


@pytest.mark.parametrize(("content", "field", "answer", "reasoning"), [
    ("Paris", None, "Paris", None),
    ("<think>capital of France</think>\nParis", None, "Paris", "capital of France"),
    ("<think>a</think>x<think>b</think>", None, "x", "a\n\nb"),
    ("<THINKING>hm</THINKING> ok", None, "ok", "hm"),
    ("lost opening tag</think> Paris", None, "Paris", "lost opening tag"),
    ("Paris", "from the API field", "Paris", "from the API field"),
    ("<think>tags</think>Paris", "field", "Paris", "field\n\ntags"),
    ("  spaced  ", "   ", "spaced", None),
    ("<think>cut off by max_tokens, still", None, "", "cut off by max_tokens, still"),
    ("<think>a</think> b <think>cut off", None, "b", "a\n\ncut off"),
    ("<think>upper close</THINK> Paris", None, "Paris", "upper close"),
    ("lost opening tag</Think> Paris", None, "Paris", "lost opening tag"),
])
def test_split_reasoning(content: str, field: str | None, answer: str, reasoning: str | None) -> None:
    assert split_reasoning(content, field) == (answer, reasoning)


@pytest.mark.parametrize(("text", "lang", "code"), [
    ("```python\nprint(1)\n```", "python", "print(1)"),
    ("Here:\n```python\nx = 1\ny = 2\n```\nDone.", "python", "x = 1\ny = 2"),
    ("```sql\nSELECT 1\n```\n```python\nprint(2)\n```", "python", "print(2)"),
    ("```\nno tag\n```", "python", "no tag"),
    ("```js\nfirst()\n```", "python", "first()"),
    ("```python\nunterminated = True\n", "python", "unterminated = True"),
    ("```Python title=x.py\nprint(3)\n```", "python", "print(3)"),
])
def test_extract_code(text: str, lang: str, code: str) -> None:
    assert extract_code(text, lang) == code


@pytest.mark.parametrize("text", ["just prose, no fence", "", "```python\n```", "```python\n\n\n```"])
def test_extract_code_failures(text: str) -> None:
    with pytest.raises(ParseError):
        extract_code(text, "python")


@pytest.mark.parametrize(("text", "value"), [
    ('{"a": 1}', {"a": 1}),
    ('  [1, 2] ', [1, 2]),
    ('```json\n{"a": 1}\n```', {"a": 1}),
    ('Sure! Here it is:\n```json\n{"a": {"b": [1]}}\n```\nAnything else?', {"a": {"b": [1]}}),
    ('Sure! {"a": 1} Hope that helps.', {"a": 1}),
    ('{"a": 1}\n\nThe object above has one key.', {"a": 1}),
    ('noise {not json} then {"ok": true} trailing', {"ok": True}),
    ('```\n{"x": "y"}\n```', {"x": "y"}),
])
def test_extract_json(text: str, value: Any) -> None:
    assert extract_json(text) == value


@pytest.mark.parametrize("text", ["", "no json here", '{"a": 1', "```json\n{broken\n```"])
def test_extract_json_failures(text: str) -> None:
    with pytest.raises(ParseError, match="not valid JSON"):
        extract_json(text)


PERSON = {"type": "object", "properties": {"name": {"type": "string", "minLength": 1},
                                           "age": {"type": "integer", "minimum": 0, "maximum": 150},
                                           "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
                                           "kind": {"enum": ["a", "b"]}},
          "required": ["name", "age"], "additionalProperties": False}


@pytest.mark.parametrize(("value", "errors"), [
    ({"name": "Ann", "age": 3}, []),
    ({"name": "Ann", "age": 3.0}, []),
    ({"name": "Ann"}, ["$: missing required property 'age'"]),
    ({"name": "Ann", "age": "3"}, ["$.age: expected integer, got string"]),
    ({"name": "Ann", "age": True}, ["$.age: expected integer, got boolean"]),
    ({"name": "", "age": 3}, ["$.name: shorter than 1 characters"]),
    ({"name": "A", "age": 200}, ["$.age: must be <= 150, got 200"]),
    ({"name": "A", "age": 1, "tags": ["x", 2]}, ["$.tags[1]: expected string, got integer"]),
    ({"name": "A", "age": 1, "tags": ["x", "y", "z"]}, ["$.tags: allows at most 2 items, got 3"]),
    ({"name": "A", "age": 1, "kind": "c"}, ["$.kind: 'c' is not one of ['a', 'b']"]),
    ({"name": "A", "age": 1, "extra": 1}, ["$: unexpected property 'extra'"]),
    ([1], ["$: expected object, got array"]),
])
def test_validate_schema(value: Any, errors: list[str]) -> None:
    assert validate(value, PERSON) == errors


def test_validate_refs_and_unions() -> None:
    schema = {"$defs": {"Pet": {"type": "object", "properties": {"name": {"type": "string"}},
                                "required": ["name"]}},
              "type": "object", "properties": {"pet": {"$ref": "#/$defs/Pet"},
                                               "note": {"anyOf": [{"type": "string"}, {"type": "null"}]}}}
    assert validate({"pet": {"name": "Rex"}, "note": None}, schema) == []
    assert validate({"pet": {}}, schema) == ["$.pet: missing required property 'name'"]
    assert validate({"pet": {"name": "R"}, "note": 3}, schema) == ["$.note: matches none of the allowed shapes (anyOf)"]


JUDGE = LLMJudgeColumn(name="grade", prompt="{{ answer }}", scores=[
    {"name": "accuracy", "description": "Is it right?", "options": {1: "wrong", 2: "partly", 3: "right"}},
    {"name": "tone", "description": "Tone.", "options": {"formal": "formal", "casual": "casual"}}])


@pytest.mark.parametrize(("text", "value"), [
    ('{"accuracy": {"reasoning": "ok", "score": 3}, "tone": {"reasoning": "hm", "score": "casual"}}',
     {"accuracy": {"score": 3, "reasoning": "ok"}, "tone": {"score": "casual", "reasoning": "hm"}}),
    ('Verdict:\n```json\n{"accuracy": {"reasoning": "r", "score": "2"}, "tone": {"reasoning": "t", '
     '"score": "formal"}}\n```',
     {"accuracy": {"score": 2, "reasoning": "r"}, "tone": {"score": "formal", "reasoning": "t"}}),
])
def test_judge_parsing(text: str, value: Any) -> None:
    assert FORMATS["llm_judge"].parse(JUDGE, text) == value


@pytest.mark.parametrize(("text", "error"), [
    ('{"accuracy": {"reasoning": "r", "score": 7}, "tone": {"reasoning": "t", "score": "formal"}}',
     "$.accuracy.score: 7 is not one of [1, 2, 3]"),
    ('{"accuracy": {"reasoning": "r", "score": 1}}', "missing required property 'tone'"),
    ("I think it's a 3.", "not valid JSON"),
])
def test_judge_parsing_errors(text: str, error: str) -> None:
    with pytest.raises(ParseError) as info:
        FORMATS["llm_judge"].parse(JUDGE, text)
    assert error in str(info.value)


def test_judge_schema_lists_the_options() -> None:
    schema = JUDGE.json_schema()
    assert schema["properties"]["accuracy"]["properties"]["score"] == {"enum": [1, 2, 3]}
    assert schema["properties"]["tone"]["properties"]["score"] == {"enum": ["formal", "casual"]}
    assert schema["required"] == ["accuracy", "tone"]
