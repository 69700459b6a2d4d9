"""Typed ``workflow-metadata.json``: per stage status, fingerprint, paths, counts and timings.

It is rewritten atomically (unique temp name, fsync, replace, fsync of the directory) after
every status change, so after a crash it says which stages completed and which were cut off.
Paths are stored relative to the workflow directory whenever they lie inside it: a moved or
copied workflow directory keeps every stage reusable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, model_validator

from gristmill.config.errors_format import first_problem
from gristmill.storage.atomic import write_json_atomic
from gristmill.storage.metadata import utc_now

WORKFLOW_SCHEMA_VERSION = 1
WORKFLOW_METADATA_FILE = "workflow-metadata.json"


class StageStatus(StrEnum):
    """Where a stage got to in the last run that touched it."""

    RUNNING = "running"
    COMPLETED = "completed"
    COMPLETED_EMPTY = "completed_empty"
    FAILED = "failed"
    SKIPPED_EMPTY_UPSTREAM = "skipped_empty_upstream"


class OutputFile(BaseModel):
    """One parquet file of a stage's selected output: path (stored form), rows, size, digest."""

    model_config = ConfigDict(extra="forbid")

    file: str = Field(description="Path, relative to the workflow directory when inside it.")
    rows: int = Field(description="Rows in the file (from its footer).")
    bytes: int = Field(description="Size in bytes.")
    sha256: str = Field(description="sha256 of the file's bytes (compared under verify).")
    crc32: str | None = Field(default=None, description=(
        "CRC-32 of the file's bytes, compared whenever the output is reused; absent in metadata "
        "written before it was recorded, where the sha256 is compared instead."))


class StageRecord(BaseModel):
    """Everything recorded about one stage."""

    model_config = ConfigDict(extra="forbid")

    index: int = Field(description="Position in the workflow, from 0.")
    name: str = Field(description="Stage name.")
    directory: str = Field(description="Stage directory, relative to the workflow directory.")
    depends_on: list[str] = Field(default_factory=list, description="Stages whose output this one reads.")
    status: StageStatus = Field(description="Status after the last run that touched the stage.")
    last_action: str | None = Field(default=None, description="What the last run did: reuse, resume or run.")
    last_reason: str | None = Field(default=None, description="Why the last run did it (the plan's reason).")
    fingerprint: str | None = Field(default=None, description="Stage fingerprint (sha256).")
    fingerprint_components: dict[str, JsonValue] = Field(default_factory=dict,
                                                         description="What the fingerprint covers.")
    run_seed: int | None = Field(default=None, description="Run seed of the stage's dataset.")
    requested_rows: int | None = Field(default=None, description="Resolved num_records.")
    actual_rows: int | None = Field(default=None, description="Rows of the stage's main dataset.")
    output_rows: int | None = Field(default=None, description="Rows of the selected output.")
    seeded_from: str | None = Field(default=None, description="Stage whose output seeded this one.")
    seed_path: str | None = Field(default=None, description="Path of the hand-off the stage was seeded from.")
    output_path: str | None = Field(default=None, description="The stage's own selected output (file or dir).")
    callback_path: str | None = Field(default=None, description="Copy of the on_success output, if any.")
    override_path: str | None = Field(default=None, description="Approved override used by the last run.")
    override_sha256: str | None = Field(default=None, description="Content digest of the override.")
    output_files: list[OutputFile] = Field(default_factory=list, description="Files of the selected output.")
    upstream_stage: str | None = Field(default=None, description="For skipped stages: the empty upstream.")
    started_at: datetime | None = Field(default=None, description="When the last run of the stage started.")
    finished_at: datetime | None = Field(default=None, description="When it finished.")
    duration_seconds: float | None = Field(default=None, description="Wall time of the last run of the stage.")
    usage: dict[str, dict[str, int]] = Field(default_factory=dict, description="Model usage of the dataset.")
    error: str | None = Field(default=None, description="Why the stage failed.")

    @model_validator(mode="after")
    def _consistent(self) -> StageRecord:
        """A finished stage must say what it produced; otherwise the file is not trustworthy."""
        if self.status in (StageStatus.COMPLETED, StageStatus.COMPLETED_EMPTY):
            missing = [name for name in ("fingerprint", "output_path", "output_rows") if getattr(self, name) is None]
            if missing:
                raise ValueError(f"stage {self.name!r} is {self.status.value} but has no {', '.join(missing)}")
            rows = self.output_rows or 0
            if self.status is StageStatus.COMPLETED and rows < 1:
                raise ValueError(f"stage {self.name!r} is completed with output_rows {rows} (an empty output is "
                                 "completed_empty)")
            if self.status is StageStatus.COMPLETED_EMPTY and rows != 0:
                raise ValueError(f"stage {self.name!r} is completed_empty with output_rows {rows}")
        return self


class WorkflowMetadata(BaseModel):
    """State of one composite workflow directory."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    workflow_name: str
    gristmill_version: str
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)
    stages: list[StageRecord] = Field(default_factory=list)
    # Every stage of the last run's plan, reached or not: a stage without a record that is
    # listed here was cut off by a crash, not added since (resume="always" tells them apart).
    planned_stages: list[str] = Field(default_factory=list)

    def stage(self, index: int, name: str) -> StageRecord | None:
        """The record of the stage at ``index``, if it has the same name."""
        for record in self.stages:
            if record.index == index and record.name == name:
                return record
        return None

    def set_stage(self, record: StageRecord) -> None:
        """Insert or replace the record at ``record.index``, keeping index order."""
        self.stages = sorted([r for r in self.stages if r.index != record.index] + [record], key=lambda r: r.index)

    def save(self, path: Path) -> None:
        """Write atomically and durably."""
        self.updated_at = utc_now()
        write_json_atomic(path, self.model_dump(mode="json"))


@dataclass(frozen=True)
class LoadedMetadata:
    """The prior metadata, or why there is none usable (``problem``)."""

    metadata: WorkflowMetadata | None
    problem: str | None  # why existing metadata is unusable (None when missing or fine)


def load_workflow_metadata(path: Path, workflow_name: str) -> LoadedMetadata:
    """Read and validate ``path``; never raises for missing, corrupt or foreign metadata."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return LoadedMetadata(None, None)
    except (OSError, ValueError) as exc:
        return LoadedMetadata(None, f"{path} is corrupt ({exc})")
    if not isinstance(raw, dict):
        return LoadedMetadata(None, f"{path} is not a JSON object")
    if raw.get("schema_version") != WORKFLOW_SCHEMA_VERSION:
        return LoadedMetadata(None, f"{path} has schema_version {raw.get('schema_version')!r}; this gristmill "
                                    f"reads {WORKFLOW_SCHEMA_VERSION}")
    try:
        meta = WorkflowMetadata.model_validate(raw)
    except ValidationError as exc:
        return LoadedMetadata(None, f"{path} is not valid workflow metadata ({first_problem(exc)})")
    if meta.workflow_name != workflow_name:
        return LoadedMetadata(None, f"{path} belongs to workflow {meta.workflow_name!r}, not {workflow_name!r}")
    return LoadedMetadata(meta, None)


def stored_path(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` (POSIX form) when inside it, else absolute."""
    resolved, base = path.resolve(), root.resolve()
    try:
        return resolved.relative_to(base).as_posix()
    except ValueError:
        return str(resolved)


def resolve_stored(stored: str, root: Path) -> Path:
    """The path a stored form names, relative paths taken from ``root``."""
    path = Path(stored)
    return path if path.is_absolute() else root / path
