"""Values passed between the LLM client, the runtime and the generators."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

Message = dict[str, str]
RequestBody = dict[str, Any]


class Outcome(Enum):
    """How one attempt at a request ended, which decides what happens next."""

    OK = "ok"
    RATE_LIMITED = "rate_limited"  # 429: shrink concurrency, wait Retry-After, retry
    TRANSIENT = "transient"  # 5xx, timeout, connection error: back off and retry
    AUTH = "auth"  # 401/403: nothing will work; stop the run
    REJECTED = "rejected"  # other 4xx: this cell fails with the endpoint's message


@dataclass(frozen=True, slots=True)
class Completion:
    """A successful answer: content with any reasoning still in it, and token counts."""

    content: str
    reasoning: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Attempt:
    """The result of sending a request once."""

    outcome: Outcome
    completion: Completion | None = None
    status: int | None = None  # HTTP status, None for transport failures
    message: str = ""  # the endpoint's error message
    retry_after: float | None = None  # seconds, from Retry-After


class ChatClient(Protocol):
    """One provider's protocol: how a request body looks and how it is sent."""

    def build_body(self, model: str, messages: list[Message], *, params: dict[str, Any],
                   json_schema: dict[str, Any] | None) -> RequestBody:
        """The full request body (it is also what the response cache keys on)."""
        ...

    async def send(self, body: RequestBody, *, timeout: float) -> Attempt:
        """Send once; never raises for endpoint trouble, which is reported in the ``Attempt``."""
        ...

    async def aclose(self) -> None:
        """Release connections (the client stays usable)."""
        ...
