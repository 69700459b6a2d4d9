"""Seed datasets: existing rows that generated columns build on."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from gristmill.config.base import ConfigModel


class SamplingStrategy(StrEnum):
    """Order in which seed rows are used; rows cycle when more records than seed rows are asked for."""

    ORDERED = "ordered"
    SHUFFLE = "shuffle"


class IndexRange(ConfigModel):
    """Use seed rows ``start`` to ``end``, both inclusive, as in the reference tool:
    ``IndexRange(start=1, end=10)`` is 10 rows.

    ``end`` was exclusive before; :meth:`fingerprint_payload` marks the inclusive meaning, so a
    dataset or stage stored under the old one is never resumed or reused under the new one.
    """

    selection_type: Literal["index_range"] = "index_range"
    start: int = Field(ge=0, description="First row (inclusive).")
    end: int = Field(ge=0, description="Last row (inclusive): start=1, end=10 selects 10 rows.")

    @model_validator(mode="after")
    def _check_order(self) -> IndexRange:
        if self.end < self.start:
            raise ValueError(f"IndexRange end ({self.end}) must not be less than start ({self.start}); both are "
                             "inclusive, so start=1, end=10 selects 10 rows")
        return self

    @property
    def stop(self) -> int:
        """One past the last row (a Python slice's stop)."""
        return self.end + 1

    def fingerprint_payload(self) -> Any:
        return {**super().fingerprint_payload(), "end_inclusive": True}


class PartitionBlock(ConfigModel):
    """Use block ``index`` of ``num_partitions`` equal contiguous blocks of the seed rows."""

    selection_type: Literal["partition_block"] = "partition_block"
    index: int = Field(ge=0, description="Which block, from 0.")
    num_partitions: int = Field(ge=1, description="How many blocks the seed rows are split into.")

    @model_validator(mode="after")
    def _check_index(self) -> PartitionBlock:
        if self.index >= self.num_partitions:
            raise ValueError(f"PartitionBlock index {self.index} must be < num_partitions {self.num_partitions}")
        return self


SelectionStrategy = IndexRange | PartitionBlock


class SeedConfig(ConfigModel):
    """Where seed rows come from and how they are selected.

    ``source`` is a path (a file read by the seed reader registered for its suffix: parquet,
    csv, json/jsonl built in, more from plugins, see ``config/registry.py``; a glob; a
    directory of parquet files; a Hugging Face ``save_to_disk`` folder or ``hf://owner/name``)
    or an in-memory pandas DataFrame. ``reader`` names the reader instead (``directory``,
    ``chat``, ``hf``, any registered one), with its ``reader_options`` (``docs/seeds.md``). A
    DataFrame is fingerprinted by content and is not written to ``config.json``.
    """

    source: Any = Field(description="Path, glob, directory of parquet files, hf:// path, or a pandas DataFrame.")
    reader: str | None = Field(default=None, description="Name of the seed reader that reads the source "
                               "('directory', 'chat', 'hf', 'csv', ...); by default the file suffix picks it.")
    reader_options: dict[str, Any] = Field(default_factory=dict, description="Keyword options of the reader, "
                                           "e.g. {'glob': '*.py'} or {'split': 'train'} (docs/seeds.md).")
    sampling_strategy: SamplingStrategy = Field(default=SamplingStrategy.ORDERED, description="Row order.")
    selection_strategy: SelectionStrategy | None = Field(default=None, discriminator="selection_type",
                                                         description="Subset of seed rows to use.")

    @model_validator(mode="after")
    def _check_source(self) -> SeedConfig:
        import pandas as pd

        if not isinstance(self.source, str | pd.DataFrame):
            import os

            if isinstance(self.source, os.PathLike):
                self.source = os.fspath(self.source)
            else:
                raise ValueError("seed source must be a path or a pandas DataFrame, "
                                 f"got {type(self.source).__name__}")
        if self.is_dataframe and (self.reader is not None or self.reader_options):
            raise ValueError("reader and reader_options apply to a path seed, not to a DataFrame")
        return self

    @model_serializer(mode="wrap")
    def _omit_default_reader(self, handler: SerializerFunctionWrapHandler) -> Any:
        # Left out when unset, so configs and fingerprints written before readers could be named
        # stay exactly as they were (a stored dataset still resumes).
        data = handler(self)
        if isinstance(data, dict):
            if data.get("reader") is None:
                data.pop("reader", None)
            if not data.get("reader_options"):
                data.pop("reader_options", None)
        return data

    @property
    def is_dataframe(self) -> bool:
        return not isinstance(self.source, str)
