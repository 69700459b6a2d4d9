"""Typed ``metadata.json`` of one dataset directory.

It is rewritten atomically after every completed batch, so after a crash it describes
exactly the batch files that were durably written before it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, ValidationError, model_serializer

from gristmill.config.errors_format import first_problem
from gristmill.config.models import ModelPrice
from gristmill.errors import ArtifactError
from gristmill.storage.atomic import write_bytes_atomic
from gristmill.storage.journal import JOURNAL_FILE, read_journal

DATASET_SCHEMA_VERSION = 1
# Said where a run refuses unusable metadata (resume=always); resume=if-possible acts on it itself.
_ADVICE = "restore or move the directory away (resume=if-possible starts fresh in a new directory, keeping it)"


def utc_now() -> datetime:
    return datetime.now(UTC)


class DatasetStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class FileRecord(BaseModel):
    """One written file: path relative to the dataset directory, rows, size and digests."""

    model_config = ConfigDict(extra="forbid")

    file: str
    rows: int
    bytes: int
    sha256: str
    crc32: str | None = Field(default=None, description=(
        "CRC-32 (8 hex digits), checked whenever the file is reused; absent in metadata written "
        "before it was recorded, where the sha256 is checked instead."))


class SideFile(BaseModel):
    """A file a batch's cells name (an image column's image): path relative to the dataset directory,
    size and digests. Not parquet, so no row count; see ``storage.integrity.side_file_problem``."""

    model_config = ConfigDict(extra="forbid")

    file: str
    bytes: int
    crc32: str = Field(description="CRC-32 (8 hex digits), checked under verify with the sha256.")
    sha256: str


class BatchSpec(BaseModel):
    """One batch a run means to build: its index and the dataset rows it holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int
    row_offset: int
    rows: int


class BatchRecord(FileRecord):
    """A completed batch: its main parquet file plus processor and dropped-column files."""

    index: int
    row_offset: int = Field(default=0, description="Dataset-wide index of the batch's first row.")
    processor_files: dict[str, FileRecord] = Field(default_factory=dict)
    dropped_file: FileRecord | None = None
    dropped_rows_file: FileRecord | None = Field(default=None, description=(
        "Rows moved out of the batch because a cell failed (on_failed_rows='drop'), with their __errors."))
    seconds: float = 0.0
    failed_rows: int = Field(default=0, description=(
        "Rows of the batch with a failed cell (in __errors, or moved to dropped-rows/): what retry_failed redoes."))
    generation: int = Field(default=0, description="How many times retry_failed rewrote the batch (its file names).")
    image_files: list[SideFile] = Field(default_factory=list, description=(
        "The image files the batch's cells name (image columns, in the main table, dropped columns and "
        "dropped rows), recorded at write time: their size is checked on every reuse, their CRC-32 and "
        "sha256 under verify. Left out of metadata.json when empty, so a dataset without images is unchanged."))

    @model_serializer(mode="wrap")
    def _omit_empty_image_files(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if not self.image_files:
            data.pop("image_files", None)
        return data

    @property
    def built_rows(self) -> int:
        """Rows the batch was built with: those in the dataset plus those moved to dropped-rows/."""
        return self.rows + (self.dropped_rows_file.rows if self.dropped_rows_file is not None else 0)


class DatasetMetadata(BaseModel):
    """State of one ``create()`` run, enough to resume it or to say why it cannot be."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    gristmill_version: str
    dataset_name: str
    fingerprint: str
    fingerprint_version: int
    fingerprint_components: dict[str, Any] = Field(default_factory=dict)
    seed_digest: str | None = None
    run_seed: int
    batch_size: int
    target_rows: int
    on_failed_rows: Literal["keep", "drop", "mark"] = "keep"
    valid_filter: str | None = Field(default=None, description=(
        "The filter rows had to pass when the run kept only valid rows (target_valid_records)."))
    status: DatasetStatus = DatasetStatus.RUNNING
    column_names: list[str] = Field(default_factory=list)
    completed_batches: list[BatchRecord] = Field(default_factory=list, description=(
        "Committed batches, kept sorted by index; they may be committed in any order."))
    planned_batches: list[BatchSpec] = Field(default_factory=list, description=(
        "Every batch the dataset is to hold; the missing ones are those not in completed_batches."))
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)
    finished_at: datetime | None = None
    generation_seconds: float = 0.0
    usage: dict[str, dict[str, int]] = Field(default_factory=dict)
    prices: dict[str, ModelPrice] = Field(default_factory=dict, description=(
        "Token prices by model alias, as configured at the last run (only models with a price)."))
    error: str | None = None

    @property
    def actual_rows(self) -> int:
        return sum(b.rows for b in self.completed_batches)

    @property
    def built_rows(self) -> int:
        """Rows generated so far, including rows moved out to dropped-rows/."""
        return sum(b.built_rows for b in self.completed_batches)

    @property
    def cost(self) -> dict[str, float]:
        """Cost so far by model alias: ``usage`` at ``prices`` (models without a price are left out)."""
        return {alias: price.cost(self.usage.get(alias, {})) for alias, price in self.prices.items()}

    @property
    def num_batches(self) -> int:
        """Batches the finished dataset will have."""
        return max(len(self.planned_batches), len(self.completed_batches))

    def missing_batches(self) -> list[BatchSpec]:
        """Planned batches not committed yet, in index order."""
        done = {batch.index for batch in self.completed_batches}
        return [spec for spec in self.planned_batches if spec.index not in done]

    def plan_rows(self, num_records: int) -> None:
        """Plan batches up to ``num_records`` rows: committed batches stay as they are (rows paid
        for never change); new ones are appended after the last planned row."""
        done = {batch.index: batch for batch in self.completed_batches}
        # Metadata written before batches were planned: its committed batches are the plan.
        base = self.planned_batches or [BatchSpec(index=b.index, row_offset=b.row_offset, rows=b.rows)
                                        for b in self.completed_batches]
        kept: list[BatchSpec] = []
        for spec in base:  # a smaller target drops or shortens batches not built yet
            if spec.index in done:
                kept.append(spec)
            elif spec.row_offset < num_records:
                kept.append(spec.model_copy(update={"rows": min(spec.rows, num_records - spec.row_offset)}))
        end = max((s.row_offset + s.rows for s in kept), default=0)
        index = max((s.index for s in kept), default=-1) + 1
        for offset in range(end, num_records, self.batch_size):
            kept.append(BatchSpec(index=index, row_offset=offset, rows=min(self.batch_size, num_records - offset)))
            index += 1
        self.planned_batches = sorted(kept, key=lambda s: s.index)
        self.target_rows = num_records

    def commit_batch(self, record: BatchRecord) -> None:
        """Record a built batch (in any order); the list stays sorted by index."""
        batches = self.completed_batches
        if not batches or batches[-1].index < record.index:
            batches.append(record)  # the usual case, in order: O(1)
            return
        self.completed_batches = sorted([*(b for b in batches if b.index != record.index), record],
                                        key=lambda b: b.index)

    def journal_entry(self, record: BatchRecord) -> dict[str, Any]:
        """The journal line that commits ``record``: the batch and the usage so far."""
        return {"batch": record.model_dump(mode="json"), "usage": self.usage}

    def apply_journal(self, entries: list[dict[str, Any]], source: Path) -> None:
        """Fold journal lines written after the last compaction into this metadata."""
        for number, entry in enumerate(entries, 1):
            try:
                record = BatchRecord.model_validate(entry.get("batch"))
                usage = {str(m): {str(k): int(v) for k, v in c.items()} for m, c in entry.get("usage", {}).items()}
            except (ValidationError, AttributeError, TypeError, ValueError):
                raise ArtifactError(f"{source} line {number} is not a batch record; {_ADVICE}") from None
            if any(b.index == record.index and b.sha256 == record.sha256 for b in self.completed_batches):
                continue  # compacted already: the crash came before the journal was removed
            self.commit_batch(record)
            self.generation_seconds = round(self.generation_seconds + record.seconds, 6)
            self.usage = usage

    def save(self, path: Path) -> None:
        """Write atomically (temp file, fsync, replace, fsync directory)."""
        self.updated_at = utc_now()
        # pydantic's serializer is native code; this runs after every batch.
        write_bytes_atomic(path, self.model_dump_json(indent=2).encode())

    @classmethod
    def load(cls, path: Path) -> DatasetMetadata:
        """Read and validate, with the batches committed to ``batches.journal`` beside it since
        it was last compacted; ``ArtifactError`` names the file for anything unusable."""
        meta = cls._load_compacted(path)
        journal = path.with_name(JOURNAL_FILE)
        meta.apply_journal(read_journal(journal), journal)
        return meta

    @classmethod
    def _load_compacted(cls, path: Path) -> DatasetMetadata:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ArtifactError(f"{path} does not exist: the directory holds no gristmill dataset") from None
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"{path} is corrupt ({exc}); {_ADVICE}") from None
        if isinstance(raw, dict) and raw.get("schema_version") not in (None, DATASET_SCHEMA_VERSION):
            raise ArtifactError(f"{path} has schema_version {raw.get('schema_version')!r}, this gristmill reads "
                                f"{DATASET_SCHEMA_VERSION}; upgrade gristmill or start fresh")
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise ArtifactError(f"{path} is not valid dataset metadata ({first_problem(exc)}); {_ADVICE}") from None
