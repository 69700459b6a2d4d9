"""API keys: where a provider's key comes from, and scrubbing keys out of text we show.

``api_key`` syntax (``ModelProvider.api_key``):

==============================  ==================================================
``$OPENAI_API_KEY``             read from that environment variable at request time
``${OPENAI_API_KEY}``           the same
``literal:<key>``               ``<key>`` exactly, even if it looks like ``$NAME``
anything else                   the key itself (``$sk-...`` too: not an identifier)
==============================  ==================================================

Only a valid identifier after ``$`` names a variable, so an error about a missing variable
never echoes anything but a variable name. Endpoint error texts are redacted before they are
cut to length, and every piece of 8 or more characters of a key is redacted wherever it
appears, so a key cut in half (by us, or by the server) does not survive either.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterable

from gristmill.config.models import ModelProvider
from gristmill.errors import ModelAuthError

LITERAL_PREFIX = "literal:"
MASK = "***"
FRAGMENT = 8  # a piece of a key this long is as good as a leak
SHORT = 4  # secrets shorter than this are not redacted (they would blank out ordinary text)
MESSAGE_LIMIT = 500  # characters of an endpoint's error text that we keep
_VARIABLE = re.compile(r"\$(?:(?P<bare>[A-Za-z_][A-Za-z0-9_]*)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\})")


def env_var_name(api_key: str) -> str | None:
    """``"$OPENAI_API_KEY"`` or ``"${OPENAI_API_KEY}"`` -> ``"OPENAI_API_KEY"``; anything else
    (a literal key, ``literal:...``, ``$`` followed by a non-identifier) -> None.

    >>> env_var_name("$OPENAI_API_KEY"), env_var_name("$sk-abc")
    ('OPENAI_API_KEY', None)
    """
    match = _VARIABLE.fullmatch(api_key)
    if match is None:
        return None
    return match.group("bare") or match.group("braced")


def resolve_api_key(provider: ModelProvider) -> str | None:
    """The key itself: a ``$VAR`` read from the environment now, else the literal.
    ModelAuthError naming the variable (and nothing else) when it is not set."""
    key = provider.api_key
    if not key:
        return None
    if key.startswith(LITERAL_PREFIX):
        return key[len(LITERAL_PREFIX):]
    name = env_var_name(key)
    if name is None:
        return key
    value = os.environ.get(name)
    if not value:
        raise ModelAuthError(f"provider {provider.name!r}: environment variable {name} is not set; "
                             f"export {name}=...")
    return value


def looks_like_a_mistyped_variable(api_key: str | None) -> bool:
    """True for a key sent as a literal although it starts with ``$`` (``$OPENAI-KEY``)."""
    return api_key is not None and api_key.startswith("$") and env_var_name(api_key) is None


def provider_secrets(provider: ModelProvider, resolved_key: str | None = None) -> list[str]:
    """Every value of ``provider`` that must never be shown: the key as written and as resolved,
    and each extra header value."""
    raw = provider.api_key
    literal = raw[len(LITERAL_PREFIX):] if raw and raw.startswith(LITERAL_PREFIX) else raw
    values = [resolved_key, literal, *provider.extra_headers.values()]
    return [value for value in values if value]


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with each secret, and every piece of ``FRAGMENT`` or more characters of one,
    replaced by ``***``. Secrets shorter than ``FRAGMENT`` are replaced only whole.

    >>> redact("Bearer sk-abcdef123456 and sk-abcdef12", ["sk-abcdef123456789"])
    'Bearer *** and ***'
    """
    pieces: set[str] = set()
    for secret in {s for s in secrets if s and len(s) >= SHORT}:
        if len(secret) < FRAGMENT:
            text = text.replace(secret, MASK)
        else:
            pieces.update(secret[i:i + FRAGMENT] for i in range(len(secret) - FRAGMENT + 1))
    if not pieces:
        return text
    hidden = [False] * len(text)
    for start in range(len(text) - FRAGMENT + 1):
        if text[start:start + FRAGMENT] in pieces:
            hidden[start:start + FRAGMENT] = [True] * FRAGMENT
    return "".join(MASK if is_hidden else "".join(chars for chars, _ in group)
                   for is_hidden, group in itertools.groupby(zip(text, hidden, strict=True),
                                                             key=lambda pair: pair[1]))


def clip(text: str, secrets: Iterable[str | None], *, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` redacted, then cut to ``limit`` characters (``…`` marks a cut). Redacting first
    means the cut can never leave the start of a key behind."""
    redacted = redact(text, secrets)
    if len(redacted) <= limit:
        return redacted
    for back in range(1, len(MASK)):  # never cut a mask in two: "**…" reads like a leak
        if redacted.startswith(MASK, limit - back):
            limit += len(MASK) - back
            break
    return redacted[:limit] + "…"
