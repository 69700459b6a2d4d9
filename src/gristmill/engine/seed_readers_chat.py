"""The ``chat`` seed reader: JSONL chat transcripts, one row per conversation.

Each non-blank line is a JSON object holding a ``messages`` list of ``{"role", "content"}``
objects (the OpenAI chat format); its other top-level fields become columns as they are. Rows
keep the file's line order. A bad line is an error naming the file and line number::

    {"id": 1, "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from gristmill.errors import SeedDatasetError

DEFAULT_ROLES = ("system", "developer", "user", "assistant", "tool")
MESSAGE_TYPE = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
ExtraKeyPolicy = Literal["error", "drop"]


class _BadLine(Exception):
    """A line that is not a valid conversation; the reader adds the file and line number."""


def read_chat_jsonl(source: Path | str, *, roles: list[str] | None = None, messages_field: str = "messages",
                    extra_message_keys: ExtraKeyPolicy = "error") -> pa.Table:
    """One row per line of ``source``: ``messages_field`` as ``list<struct<role, content>>`` plus
    the line's other fields. Roles must be in ``roles`` (system, developer, user, assistant and
    tool by default) and contents strings; a message key other than role and content is an error
    unless ``extra_message_keys`` is ``"drop"``."""
    path = Path(source)
    if path.is_dir():
        raise SeedDatasetError(f"the chat seed reader reads one JSONL file; {str(source)!r} is a folder (name its "
                               "files with a glob, e.g. transcripts/*.jsonl)")
    allowed = _roles(roles)
    if extra_message_keys not in ("error", "drop"):
        raise SeedDatasetError(f"chat seed reader: extra_message_keys must be 'error' or 'drop', "
                               f"got {extra_message_keys!r}")
    records: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                records.append(_conversation(line, messages_field, allowed, extra_message_keys))
            except _BadLine as exc:
                raise SeedDatasetError(f"chat transcript {str(path)!r} line {number}: {exc}") from None
    return _table(records, messages_field, str(path))


def _roles(roles: list[str] | None) -> frozenset[str]:
    if roles is None:
        return frozenset(DEFAULT_ROLES)
    if not isinstance(roles, list) or not roles or not all(isinstance(r, str) and r for r in roles):
        raise SeedDatasetError(f"chat seed reader: roles must be a non-empty list of role names, got {roles!r}")
    return frozenset(roles)


def _conversation(line: str, field: str, roles: frozenset[str], extra: ExtraKeyPolicy) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise _BadLine(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(record, dict):
        raise _BadLine(f"expected a JSON object with a {field!r} list, got {type(record).__name__}")
    messages = record.get(field)
    if not isinstance(messages, list) or not messages:
        raise _BadLine(f"{field!r} must be a non-empty list of {{role, content}} objects, got {messages!r:.80}")
    record[field] = [_message(m, i, roles, extra) for i, m in enumerate(messages)]
    return record


def _message(message: Any, index: int, roles: frozenset[str], extra: ExtraKeyPolicy) -> dict[str, str]:
    where = f"message {index}"
    if not isinstance(message, dict):
        raise _BadLine(f"{where} must be an object with role and content, got {type(message).__name__}")
    role, content = message.get("role"), message.get("content")
    if role not in roles:
        raise _BadLine(f"{where} has role {role!r}, not one of {', '.join(sorted(roles))}; to allow it, list it in "
                       "the reader option `roles`")
    if not isinstance(content, str):
        raise _BadLine(f"{where} ({role}) content must be a string, got {type(content).__name__}")
    others = sorted(set(message) - {"role", "content"})
    if others and extra == "error":
        raise _BadLine(f"{where} has keys {', '.join(map(repr, others))} besides role and content; set the reader "
                       "option `extra_message_keys: drop` to read only role and content")
    return {"role": role, "content": content}


def _table(records: list[dict[str, Any]], field: str, label: str) -> pa.Table:
    """Columns in first-seen key order; a field missing from a line is null there."""
    keys: dict[str, None] = {}
    for record in records:
        keys.update(dict.fromkeys(record))
    keys.setdefault(field)
    columns: dict[str, pa.Array] = {}
    for key in keys:
        values = [record.get(key) for record in records]
        try:
            columns[key] = pa.array(values, MESSAGE_TYPE if key == field else None)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise SeedDatasetError(f"chat transcript {label!r}: field {key!r} holds values of different types on "
                                   f"different lines ({exc}); give it one type") from None
    return pa.table(columns)


__all__ = ["DEFAULT_ROLES", "read_chat_jsonl"]
