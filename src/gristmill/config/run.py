"""Run options: how a dataset is generated, not what it contains (never fingerprinted)."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field, field_validator

from gristmill.config.base import ConfigModel
from gristmill.config.columns import skip_template, template_variables
from gristmill.errors import ConfigError

DEFAULT_BATCH_SIZE = 1000
#: Rows per batch of a config with LLM columns: a few seconds of requests at usual concurrency, so a
#: crash re-pays little and a checkpoint is written every few seconds, not every 1,000 requests.
LLM_BATCH_SIZE = 100


class ResumeMode(StrEnum):
    """What to do with what an earlier run left on disk; the same for ``create``, ``plan`` and ``run``.

    - ``NEVER``: never continue; never overwrite either (a new directory is used).
    - ``IF_POSSIBLE``: continue when the stored run matches; otherwise start fresh and say why.
    - ``ALWAYS``: continue, or raise ``ResumeError`` saying what differs.
    """

    NEVER = "never"
    IF_POSSIBLE = "if-possible"
    ALWAYS = "always"

    @classmethod
    def parse(cls, value: object) -> ResumeMode:
        """A member from a member or its string value (``"if-possible"``); ConfigError otherwise."""
        if isinstance(value, str) and value in cls._value2member_map_:
            return cls(value)
        raise ConfigError(f"resume must be one of {', '.join(m.value for m in cls)}, got {value!r}")


class RunConfig(ConfigModel):
    """Options of a run. None of these enter the config fingerprint, but ``batch_size`` and
    ``seed`` must match for a resume (they decide which rows each batch holds)."""

    batch_size: int | None = Field(default=None, ge=1, description=(
        "Rows per parquet batch file (the checkpoint unit). None: the stored run's when one is continued, "
        f"else {LLM_BATCH_SIZE} for a config with LLM columns and {DEFAULT_BATCH_SIZE} otherwise."))
    seed: int | None = Field(default=None, description=(
        "Run seed; when None, a dataset's is derived from its name (a stage's from the workflow and "
        "stage names) and recorded."))
    cache: bool = Field(default=True, description="Keep LLM responses in the response cache.")
    analysis: bool = Field(default=False, description=(
        "Compute column statistics (analysis.json) at the end of create(); otherwise the first "
        "load_analysis() computes and stores them."))
    show_progress: bool = Field(default=True, description="Show a progress bar on a terminal.")
    max_error_rate: float = Field(default=0.5, ge=0, le=1,
                                  description="Stop early when this share of LLM cells in a window fails.")
    error_window: int = Field(default=50, ge=1, description="Cells per window of the error-rate check.")
    template_time_limit: float | None = Field(default=None, gt=0, description=(
        "Seconds one cell's template (expression or prompt) may take to render before the cell "
        "fails; None: 1 second."))
    template_output_limit: int | None = Field(default=None, ge=1, description=(
        "Characters one cell's template may produce before the cell fails; None: 1,000,000."))
    on_failed_rows: Literal["keep", "drop", "mark"] = Field(default="keep", description=(
        "Rows with a failed cell (listed in their __errors): 'keep' them; 'mark' them with a boolean "
        "__failed column; 'drop' them from the dataset into dropped-rows/ (kept with their errors and "
        "row index, never deleted). Must match the stored run's to resume it."))
    target_valid_records: int | None = Field(default=None, ge=1, description=(
        "Keep generating batches until this many rows pass (``valid_filter``, else every validation "
        "column's is_valid, else no failed cell); rows that do not pass, and any surplus, go to "
        "dropped-rows/. Usually given per dataset: create(..., target_valid_records=N)."))
    max_records: int | None = Field(default=None, ge=1, description=(
        "With target_valid_records: the most rows to generate (default: 10 x target_valid_records); the run "
        "stops with a clear message as soon as the pass rate makes the target unreachable within it."))
    valid_filter: str | None = Field(default=None, description=(
        "With target_valid_records: a Jinja condition over the row that a valid row satisfies, e.g. "
        "\"sql_check.is_valid and score >= 3\"."))

    def rows_per_batch(self, *, uses_models: bool, stored: int | None = None) -> int:
        """The batch size of a run: the one given, else the continued run's (``stored``), else the
        default for the config (``uses_models``: it has LLM columns)."""
        if self.batch_size is not None:
            return self.batch_size
        if stored is not None:
            return stored
        return LLM_BATCH_SIZE if uses_models else DEFAULT_BATCH_SIZE

    @field_validator("valid_filter")
    @classmethod
    def _check_filter(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                template_variables(skip_template(value))
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value
    executor: Literal["local", "ray"] = Field(default="local", description=(
        "Where batches are built: 'local' in this process, one after another; 'ray' as Ray tasks, "
        "in parallel across a Ray cluster's workers (needs the gristmill[ray] extra; LLM columns "
        "are not supported there yet)."))
    ray_address: str | None = Field(default=None, description=(
        "With executor='ray': the cluster to connect to ('host:port', 'ray://host:port' or 'auto'); "
        "None starts a local Ray instance on this machine (or joins the one RAY_ADDRESS names)."))
