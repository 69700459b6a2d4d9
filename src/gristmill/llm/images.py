"""Image generation over an OpenAI-compatible ``POST /images/generations`` endpoint, one image per
request, answered as base64 (``b64_json``).

The request goes through the runtime's :class:`~gristmill.llm.runtime.ModelHandle`, as embeddings
do (``llm/embeddings.py``): the model's shared AIMD throttle, ``Retry-After``, retries of 5xx
answers, timeouts and connection errors, usage counters. :class:`ImagesEndpoint` is the transport
the handle drives in place of the chat client: it posts over the provider's own connection pool
and decodes the image bytes. A refused prompt (a 4xx such as a content-policy refusal) fails with
``ModelError`` as a refused chat request does; an answer that is not base64 image data is
malformed (retried, then the cell fails).

>>> image_body("gpt-image-1", "a red fox", size="1024x1024", quality=None, response_format=None,
...            params={}, extra_body={})
{'model': 'gpt-image-1', 'prompt': 'a red fox', 'n': 1, 'size': '1024x1024'}
>>> image_format(b"\\x89PNG\\r\\n\\x1a\\n...")
'png'
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from gristmill.errors import ModelError
from gristmill.llm.runtime import ModelHandle, ProviderEndpoint, Usage, endpoint_handle
from gristmill.llm.types import Attempt, Completion, Outcome, RequestBody

IMAGES_PATH = "/images/generations"
# File signatures of the formats image endpoints answer in, and the file suffix of each.
_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "png"), (b"\xff\xd8\xff", 0, "jpg"), (b"GIF87a", 0, "gif"), (b"GIF89a", 0, "gif"),
    (b"WEBP", 8, "webp"))


@dataclass(frozen=True, slots=True)
class ImageAnswer(Completion):
    """What one images request returned: the image's bytes, and the prompt the endpoint says it
    actually used (dall-e-3 rewrites prompts), when it says."""

    data: bytes = b""
    revised_prompt: str | None = None


def image_body(model: str, prompt: str, *, size: str | None, quality: str | None, response_format: str | None,
               params: dict[str, Any], extra_body: dict[str, Any]) -> RequestBody:
    """The JSON body of one request for one image; unset fields are not sent (endpoints that do not
    know a field may refuse it)."""
    body: RequestBody = {"model": model, "prompt": prompt, "n": 1, **params, **extra_body}
    for name, value in (("size", size), ("quality", quality), ("response_format", response_format)):
        if value is not None:
            body[name] = value
    return body


def image_format(data: bytes) -> str | None:
    """The file suffix of ``data`` by its signature (png, jpg, gif, webp), or None for anything else."""
    for signature, offset, suffix in _SIGNATURES:
        if data[offset:offset + len(signature)] == signature and (suffix != "webp" or data[:4] == b"RIFF"):
            return suffix
    return None


def parse_images(raw: bytes) -> Attempt:
    """An OpenAI images response as an Attempt holding an :class:`ImageAnswer`. A body without a
    base64 image in ``data[0]`` is malformed: TRANSIENT, so it is retried. An answer with a URL in
    place of the bytes is REJECTED: asking again would get another URL."""
    try:
        data = json.loads(raw)
        entry = data["data"][0]
        if not isinstance(entry, dict):
            raise TypeError(f"data[0] is a {type(entry).__name__}")
        if "b64_json" not in entry and isinstance(entry.get("url"), str):
            return Attempt(Outcome.REJECTED, status=200, message=(
                "the endpoint answered a URL, not the image (b64_json); set the column's response_format to "
                "b64_json (the default), or use an endpoint that answers base64"))
        encoded = entry["b64_json"]
        if not isinstance(encoded, str) or not encoded:
            raise TypeError("b64_json is not a non-empty string")
        image = base64.b64decode(encoded, validate=True)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, binascii.Error) as exc:
        return Attempt(Outcome.TRANSIENT, status=200,
                       message=f"malformed images body ({exc}): {raw[:200].decode('utf-8', 'replace')!r}")
    usage = data.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    revised = entry.get("revised_prompt")
    answer = ImageAnswer(content="", data=image, revised_prompt=revised if isinstance(revised, str) else None,
                         input_tokens=_token_count(usage.get("input_tokens")),
                         output_tokens=_token_count(usage.get("output_tokens")))
    return Attempt(Outcome.OK, completion=answer, status=200)


def _token_count(value: object) -> int:
    # Token counts are bookkeeping: a garbled one counts as 0 rather than losing a paid image.
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or value < 0:
        return 0
    return int(value) if value != float("inf") else 0


class ImagesEndpoint(ProviderEndpoint):
    """The ``/images/generations`` endpoint of one OpenAI-compatible provider."""

    kind = "image"

    async def send(self, body: RequestBody, *, timeout: float) -> Attempt:
        return await self.client.post(IMAGES_PATH, body, parse_images, timeout=timeout)


def image_handle(handle: ModelHandle) -> ModelHandle:
    """``handle``'s model, throttle and retries, sending to its provider's ``/images/generations``
    (ConfigError unless the provider is OpenAI-compatible)."""
    return endpoint_handle(handle, ImagesEndpoint, needs="image generation needs", advice=" (docs/images.md)")


async def generate_image(handle: ModelHandle, body: RequestBody, *, usage: Usage) -> ImageAnswer:
    """One image for ``body`` (from :func:`image_body`), with the handle's throttle and retries.

    ``handle`` comes from :func:`image_handle`. Raises ``ModelError`` when the request fails for good."""
    answer = await handle.complete(body, usage)
    if not isinstance(answer, ImageAnswer):
        raise ModelError(f"model alias {handle.alias!r}: the client answered an images request with a "
                         f"{type(answer).__name__}")
    return answer
