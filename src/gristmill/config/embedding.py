"""The ``embedding`` column: one vector per row, of another column's text.

::

    models:
      - {alias: embedder, model: text-embedding-3-small, provider: openai, generation_type: embedding}
    columns:
      - {name: bio_vec, column_type: embedding, target_column: bio, model_alias: embedder, dimensions: 256}

Requests go to the provider's OpenAI-compatible ``/embeddings`` endpoint, ``batch_size`` texts
per request. Vectors are stored as ``list<float32>``, or ``fixed_size_list<float32, dimensions>``
when ``dimensions`` is set. The engine side is ``gristmill.engine.generators.embedding``; the
user guide is ``docs/embeddings.md``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from gristmill.config.columns import ColumnConfig


class EmbeddingColumn(ColumnConfig):
    """The embedding of ``target_column``'s text by a model declared with ``generation_type: embedding``."""

    column_type: Literal["embedding"] = "embedding"
    target_column: str = Field(description="Column whose text is embedded (non-text values are embedded as text).")
    model_alias: str = Field(description="Alias of a model with generation_type: embedding.")
    dimensions: int | None = Field(default=None, ge=1, le=65536, description=(
        "Length of the vectors. Sent to the endpoint (OpenAI's text-embedding-3 models shorten their vectors "
        "to it); a vector of another length fails its cell. When set, the column is a fixed-size list."))
    batch_size: int = Field(default=32, ge=1, le=2048,
                            description="Texts sent in one request. Does not change the vectors, so it is "
                                        "not part of the fingerprint.")
    pooling: Literal["none", "mean"] = Field(default="none", description=(
        "'none': the endpoint returns one vector per text (OpenAI, vLLM, llama.cpp with a pooling type). "
        "'mean': it returns one vector per token (llama-cpp-python's server on a chat model) and "
        "gristmill averages them; needs batch_size 1."))

    may_fail: ClassVar[bool] = True  # an endpoint can refuse a text, or answer a vector of the wrong length
    fingerprint_exclude: ClassVar[frozenset[str]] = frozenset({"batch_size"})

    @model_validator(mode="after")
    def _check_pooling(self) -> EmbeddingColumn:
        # llama-cpp-python's server (0.3.36, checked) misplaces the token vectors of every text but
        # the first of a request, so averaged vectors would be silently wrong for those.
        if self.pooling == "mean" and self.batch_size != 1:
            raise ValueError("pooling 'mean' needs batch_size 1: servers that answer one vector per token "
                             "(llama-cpp-python's) misplace the token vectors of all but the first text of "
                             "a request")
        if self.target_column == self.name:
            raise ValueError(f"target_column {self.target_column!r} is the column itself; name the column "
                             "whose text is embedded")
        return self

    def required_columns(self) -> set[str]:
        return {self.target_column}

    def model_aliases(self) -> set[str]:
        return {self.model_alias}
