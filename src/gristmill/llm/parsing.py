"""Turning model text into cell values: reasoning, code blocks, JSON.

Every function here is pure and table-tested (``tests/test_llm_parsing.py``).
"""

from __future__ import annotations

import json
import re
from typing import Any

_THINK_RE = re.compile(r"<think(?:ing)?>(.*?)</think(?:ing)?>", re.S | re.I)
_OPEN_RE = re.compile(r"<think(?:ing)?>", re.I)
_CLOSE_RE = re.compile(r"</think(?:ing)?>", re.I)
_FENCE_RE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
_decoder = json.JSONDecoder()


class ParseError(ValueError):
    """The text does not hold the expected value; the message is fit to send back to the model."""


def split_reasoning(content: str, reasoning: str | None = None) -> tuple[str, str | None]:
    """``(answer, reasoning)``: ``<think>`` blocks leave the content; the API's reasoning field joins them.

    Tags match case-insensitively. A ``<think>`` never closed (the answer was cut off by
    ``max_tokens``) makes everything after it reasoning, so the answer may be empty.

    >>> split_reasoning("<think>hmm</think> Paris")
    ('Paris', 'hmm')
    >>> split_reasoning("<think>still thinking when max_tokens hit")
    ('', 'still thinking when max_tokens hit')
    """
    parts = [reasoning.strip()] if reasoning and reasoning.strip() else []
    if "<think" in content.lower() or "</think" in content.lower():
        parts += [m.strip() for m in _THINK_RE.findall(content)]
        content = _THINK_RE.sub("", content)
        # An opening tag lost to the chat template leaves only "...</think>": all before it is reasoning.
        close = _CLOSE_RE.search(content)
        if close:
            parts.append(content[:close.start()].strip())
            content = content[close.end():]
        # An opening tag never closed: the answer was cut off while reasoning.
        opened = _OPEN_RE.search(content)
        if opened:
            parts.append(content[opened.end():].strip())
            content = content[:opened.start()]
    return content.strip(), ("\n\n".join(p for p in parts if p) or None)


def extract_code(text: str, lang: str | None = None) -> str:
    """The code in a model answer: the fenced block tagged ``lang``, else the first fenced block.

    ParseError when there is no fenced block or it is empty (prose is not code).
    """
    blocks = _FENCE_RE.findall(text)
    if not blocks:
        raise ParseError(f"the answer has no fenced code block; put the code in a ```{lang or ''} block")
    code = str(blocks[0][1]).strip("\n")
    if lang:
        wanted = lang.lower()
        for tag, body in blocks:
            if tag.lower() == wanted:
                code = str(body).strip("\n")
                break
    if not code.strip():
        raise ParseError("the fenced code block is empty")
    return code


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
