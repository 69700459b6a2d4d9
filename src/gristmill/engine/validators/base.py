"""What every validator shares: the verdict struct, the unit of work, and value helpers.

A validator receives a :class:`Chunk` (up to ``batch_size`` rows of the target columns) and
returns one outcome per row: a :class:`Verdict` (the value was judged, valid or not) or a
:class:`CellFailure` (it could not be judged: the sandbox did not start, the endpoint never
answered). Only a verdict is written; a failure becomes a null cell listed in ``__errors``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias

import pyarrow as pa

MESSAGE_TYPE = pa.struct([("target", pa.string()), ("message", pa.string()), ("line", pa.int32()),
                          ("code", pa.string())])
# One type for every validator, row and batch, so batch files share one schema.
RESULT_TYPE = pa.struct([("is_valid", pa.bool_()), ("messages", pa.list_(MESSAGE_TYPE)), ("score", pa.float64()),
                         ("rows", pa.int64())])
MAX_MESSAGES = 50  # per row: a snippet with a thousand lint errors should not make a huge cell
MAX_MESSAGE_CHARS = 1_000

_FENCE_RE = re.compile(r"\A\s*```[\w+#.-]*[ \t]*\n(?P<body>.*?)\n?```\s*\Z", re.S)


@dataclass(frozen=True)
class Message:
    """One problem found in a target value; ``line`` is 1-based in the cell's text."""

    target: str | None
    message: str
    line: int | None = None
    code: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "message": self.message[:MAX_MESSAGE_CHARS], "line": self.line,
                "code": self.code}


@dataclass(frozen=True)
class Verdict:
    """The judgement of one row: valid or not, why, and what the validator measured."""

    is_valid: bool
    messages: tuple[Message, ...] = ()
    score: float | None = None
    rows: int | None = None  # rows the SQL returned, when it ran

    def to_dict(self) -> dict[str, Any]:
        shown = [m.to_dict() for m in self.messages[:MAX_MESSAGES]]
        if len(self.messages) > MAX_MESSAGES:
            shown.append(Message(None, f"... and {len(self.messages) - MAX_MESSAGES} more").to_dict())
        return {"is_valid": self.is_valid, "messages": shown, "score": self.score, "rows": self.rows}


@dataclass(frozen=True)
class CellFailure:
    """The row could not be judged; the cell is null and recorded as failed."""

    reason: str
    attempts: int = 1


Outcome: TypeAlias = Verdict | CellFailure


@dataclass(frozen=True)
class Chunk:
    """Rows handed to one validator call: target values per row, and their dataset-wide indices."""

    targets: tuple[str, ...]
    row_ids: list[int]
    values: list[dict[str, Any]] = field(default_factory=list)  # per row: target -> value

    def __len__(self) -> int:
        return len(self.row_ids)


class Validator(Protocol):
    """Judges chunks; ``max_parallel`` chunks of a batch may be in flight at once."""

    max_parallel: int

    async def validate(self, chunk: Chunk) -> list[Outcome]:
        """One outcome per row of ``chunk``, in order."""
        ...


def verdict_of(messages: Sequence[Message], *, rows: int | None = None) -> Verdict:
    """Valid exactly when nothing was found."""
    return Verdict(is_valid=not messages, messages=tuple(messages), rows=rows)


def strip_fence(text: str) -> tuple[str, int]:
    """A cell holding one fenced block (```python ... ```) without the fence, and how many lines
    precede the code in the cell (to report lines of the cell, not of the stripped code)."""
    match = _FENCE_RE.match(text)
    if match is None:
        return text, 0
    return match["body"], text[: match.start("body")].count("\n")


def code_problem(target: str, value: Any, language: str) -> Message | None:
    """Why ``value`` is no code to check (null, not a string, blank), or None."""
    if value is None:
        return Message(target, f"no {language} (the value is null)", code="no-value")
    if not isinstance(value, str):
        return Message(target, f"expected a string of {language}, got {type(value).__name__}", code="not-a-string")
    if not value.strip():
        return Message(target, f"empty {language}", code="empty")
    return None


def messages_from(value: Any, default_target: str | None) -> list[Message]:
    """Messages a user function or a remote service gave: None, a string, a mapping with
    ``message`` (and ``target``, ``line``, ``code``), or a list of those. ValueError otherwise."""
    if value is None:
        return []
    if isinstance(value, str):
        return [Message(default_target, value)]
    if isinstance(value, Mapping):
        if "message" not in value:
            raise ValueError(f"a message mapping needs a 'message' key, got {dict(value)!r}")
        line = value.get("line")
        if line is not None and (isinstance(line, bool) or not isinstance(line, int)):
            raise ValueError(f"a message's line must be an integer, got {line!r}")
        target, code = value.get("target", default_target), value.get("code")
        return [Message(None if target is None else str(target), str(value["message"]), line,
                        None if code is None else str(code))]
    if isinstance(value, Sequence) or hasattr(value, "tolist"):
        items = value.tolist() if hasattr(value, "tolist") else value
        return [message for item in items for message in messages_from(item, default_target)]
    raise ValueError(f"messages must be a string, a mapping with 'message', or a list of them; got {value!r}")


def score_from(value: Any) -> float | None:
    """A score as a float (None stays None); ValueError for anything else."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) and not hasattr(value, "__float__"):
        raise ValueError(f"a score must be a number, got {value!r}")
    number = float(value)
    return None if number != number else number  # NaN (pandas' missing value) is no score
