"""Turning model text into cell values: reasoning, code blocks, JSON.

Every function here is pure and table-tested (``tests/test_llm_parsing.py``).
"""

from __future__ import annotations

import json
import re
from typing import Any

_THINK_RE = re.compile(r"<think(?:ing)?>(.*?)</think(?:ing)?>", re.S | re.I)
_FENCE_RE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
_decoder = json.JSONDecoder()


class ParseError(ValueError):
    """The text does not hold the expected value; the message is fit to send back to the model."""


def split_reasoning(content: str, reasoning: str | None = None) -> tuple[str, str | None]:
    """``(answer, reasoning)``: ``<think>`` blocks leave the content; the API's reasoning field joins them.

    >>> split_reasoning("<think>hmm</think> Paris")
    ('Paris', 'hmm')
    """
    parts = [reasoning.strip()] if reasoning and reasoning.strip() else []
    if "<think" in content.lower() or "</think" in content.lower():
        parts += [m.strip() for m in _THINK_RE.findall(content)]
        content = _THINK_RE.sub("", content)
        # An opening tag lost to the chat template leaves only "...</think>": all before it is reasoning.
        head, sep, tail = content.partition("</think>")
        if sep:
            parts.append(head.strip())
            content = tail
    return content.strip(), ("\n\n".join(p for p in parts if p) or None)


def extract_code(text: str, lang: str | None = None) -> str:
    """The code in a model answer: the fenced block tagged ``lang``, else the first fenced block,
    else the whole text."""
    blocks = _FENCE_RE.findall(text)
    if not blocks:
        return text.strip()
    if lang:
        wanted = lang.lower()
        for tag, body in blocks:
            if tag.lower() == wanted:
                return str(body).strip("\n")
    return str(blocks[0][1]).strip("\n")


def extract_json(text: str) -> Any:
    """The JSON value in a model answer: bare, fenced, or embedded in prose (trailing text ignored).

    >>> extract_json('Sure! {"a": 1} Hope that helps.')
    {'a': 1}
    """
    stripped = text.strip()
    try:
        return json.loads(stripped)
    except ValueError:
        pass
    for tag, body in _FENCE_RE.findall(stripped):
        if tag.lower() in ("", "json", "json5", "javascript"):
            try:
                return _decoder.raw_decode(body.strip())[0]
            except ValueError:
                continue
    error: str = "no JSON object or array found"
    for match in re.finditer(r"[{\[]", stripped):
        try:
            return _decoder.raw_decode(stripped, match.start())[0]
        except ValueError as exc:
            error = str(exc)
    raise ParseError(f"the answer is not valid JSON ({error})")
