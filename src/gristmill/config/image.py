"""The ``image`` column: one generated image per row, stored as a file beside the dataset.

::

    models:
      - {alias: painter, model: gpt-image-1, provider: openai, generation_type: image}
    columns:
      - {name: cover, column_type: image, prompt: "A book cover for {{ title }}", model_alias: painter,
         size: 1024x1024, quality: low}

Requests go to the provider's OpenAI-compatible ``/images/generations`` endpoint, one image per
request, answered as base64 (``b64_json``). Each image is written to
``images/<column>/<row>.<png|jpg|webp|gif>`` under the dataset directory; the column holds that
path, relative to the dataset directory (never the bytes). The engine side is
``gristmill.engine.generators.image``; the user guide is ``docs/images.md``.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from gristmill.config.columns import ColumnConfig, template_variables
from gristmill.config.models import check_json_value
from gristmill.errors import ConfigError

_SIZE_RE = re.compile(r"^(auto|[1-9][0-9]{0,4}x[1-9][0-9]{0,4})$")
# Fields the column sets itself; extra_params must not override them behind its back.
_OWN_FIELDS = frozenset({"model", "prompt", "n", "size", "quality", "response_format"})


class ImageColumn(ColumnConfig):
    """An image per row from a model declared with ``generation_type: image``; the cell holds the
    image file's path relative to the dataset directory."""

    column_type: Literal["image"] = "image"
    prompt: str = Field(description="Jinja2 template of the image prompt, over the row.")
    model_alias: str = Field(description="Alias of a model with generation_type: image.")
    size: str | None = Field(default=None, description=(
        "Image size as 'WIDTHxHEIGHT' (e.g. '1024x1024') or 'auto'; sent as 'size'. Not sent when unset "
        "(the endpoint's default)."))
    quality: str | None = Field(default=None, description=(
        "Sent as 'quality' when set: 'standard' or 'hd' (dall-e-3), 'low', 'medium', 'high' or 'auto' "
        "(gpt-image-1); other servers have their own values."))
    response_format: Literal["b64_json"] | None = Field(default="b64_json", description=(
        "Sent as 'response_format'. gristmill reads only base64 answers; set it to null for endpoints "
        "that always answer base64 and refuse the field (gpt-image-1)."))
    extra_params: dict[str, Any] = Field(default_factory=dict, description=(
        "Other body fields sent as they are, e.g. {style: vivid}, {background: transparent}, "
        "{output_format: webp}, {negative_prompt: ...}. Part of the fingerprint and the cache key."))

    may_fail: ClassVar[bool] = True  # an endpoint can refuse a prompt (content policy) or answer no image

    @field_validator("prompt")
    @classmethod
    def _check_prompt(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("prompt must not be empty")
        try:
            template_variables(value)
        except ConfigError as exc:  # a ValueError lets pydantic name the column and field
            raise ValueError(str(exc)) from None
        return value

    @field_validator("size")
    @classmethod
    def _check_size(cls, value: str | None) -> str | None:
        if value is not None and not _SIZE_RE.match(value):
            raise ValueError(f"size {value!r} must be 'WIDTHxHEIGHT' (e.g. '1024x1024') or 'auto'")
        return value

    @field_validator("extra_params")
    @classmethod
    def _check_extra_params(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_json_value(value, "extra_params")
        clash = sorted(_OWN_FIELDS & set(value))
        if clash:
            raise ValueError(f"extra_params sets {', '.join(clash)}, which the column sets itself; use the "
                             "column's own fields (n is always 1: one image per row)")
        return value

    def required_columns(self) -> set[str]:
        return template_variables(self.prompt)

    def model_aliases(self) -> set[str]:
        return {self.model_alias}
