"""Stage definitions of a composite workflow, checked completely when they are added.

A stage is a name, a dataset config and its ``StageOptions``: the one model of a stage's
options, used by ``add_stage``, the YAML workflow file (``spec.StageSpec``) and the stage
fingerprint. Everything that can be checked without running anything is checked in
``define_stage``: a bad name, a bad ``num_records``, an ``output`` that names no processor, or
clashing processor names fail before any directory exists. The stage config is copied at that
moment, so later edits to the caller's builder or config do not leak into the workflow.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, field_validator, model_validator

from gristmill.config.base import import_reference
from gristmill.config.dataset import ConfigBuilder, DatasetConfig
from gristmill.config.errors_format import first_problem
from gristmill.config.fingerprint import short_hash
from gristmill.config.processors import Processor, SchemaTransformProcessor
from gristmill.config.seeds import SamplingStrategy, SeedConfig, SelectionStrategy
from gristmill.errors import ConfigError, WorkflowError

#: A stage name is used as part of a directory name: ``stage-<index>-<name>``.
_STAGE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")

#: Side inputs are handed to every row of the stage, so they are kept small.
SIDE_INPUT_MAX_ROWS = 10_000

#: ``on_success(stage_dir) -> path``: user code, so its return value is checked by
#: ``outputs.run_callback`` rather than trusted.
OnSuccess = Callable[[Path], object]


class StageOptions(BaseModel):
    """Everything about a stage besides its name and config: the keyword arguments of
    ``CompositeWorkflow.add_stage`` and the stage fields of a workflow file, validated once.

    >>> StageOptions(num_records=100, output="processor:chat").output
    'processor:chat'
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    num_records: int | None = Field(default=None, description=(
        "Rows to generate; default: the upstream output's row count (required for the first stage)."))
    on_success: OnSuccess | str | None = Field(default=None, description=(
        "Called with the stage directory when the stage completes; returns a parquet file or directory "
        "that becomes the stage's output. A callable or 'module:function'."))
    on_success_version: str | None = Field(default=None, description=(
        "Version of the on_success callback; bump it when the callback changes. Without it a callback "
        "stage is never reused."))
    output_processors: tuple[Annotated[Processor, Field(discriminator="processor_type")], ...] = Field(
        default=(), description="Processors run, in order, on the finished stage dataset.")
    output: str = Field(default="final", description=(
        "'final' (the dataset, after output processors) or 'processor:<name>' (a named processor dataset)."))
    allow_empty: bool = Field(default=False, description=(
        "Zero output rows end the workflow (later stages are skipped) instead of failing."))
    sampling_strategy: SamplingStrategy = Field(default=SamplingStrategy.ORDERED, description=(
        "Order in which the upstream output's rows seed this stage: ordered or shuffle."))
    selection_strategy: Annotated[SelectionStrategy, Field(discriminator="selection_type")] | None = Field(
        default=None, description="Which upstream rows seed this stage: index_range or partition_block.")
    depends_on: tuple[str, ...] | None = Field(default=None, description=(
        "Parent stages, each added before this one; default: the previous stage. [] makes a root stage "
        "(it needs num_records, and keeps its own seed)."))
    seed_from: str | None = Field(default=None, description=(
        "The parent whose output rows seed this stage; default: the only parent (required with several)."))
    join: dict[str, str] = Field(default_factory=dict, description=(
        "{parent: key column}: a left join of the seed rows with that parent's output on the key column."))
    side_inputs: tuple[str, ...] = Field(default=(), description=(
        f"Parents whose whole output (at most {SIDE_INPUT_MAX_ROWS:,} rows) templates read as a list of row "
        "dicts, in a variable named after the parent."))

    target_valid_records: int | None = Field(default=None, ge=1, description=(
        "Generate until this many rows pass (valid_filter, else the validation columns' is_valid, else no "
        "failed cell), so the next stage seeds from exactly that many good rows; see RunConfig."))
    max_records: int | None = Field(default=None, ge=1, description=(
        "With target_valid_records: the most rows to generate (default 10 x the target)."))
    valid_filter: str | None = Field(default=None, description=(
        "With target_valid_records: the Jinja condition a valid row satisfies."))

    @field_validator("num_records", mode="before")
    @classmethod
    def _positive_rows(cls, value: object) -> object:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"num_records must be a positive integer, got {value!r}")
        return value

    @field_validator("on_success", mode="before")
    @classmethod
    def _callable_or_reference(cls, value: object) -> object:
        if value is None or callable(value) or (isinstance(value, str) and ":" in value):
            return value
        raise ValueError(f"on_success must be a callable or 'module:function', got {value!r}")

    @field_validator("output_processors", mode="after")
    @classmethod
    def _copied_unique(cls, value: tuple[Processor, ...]) -> tuple[Processor, ...]:
        names = [p.name for p in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate output processor name(s) {dupes}; names must be unique")
        return tuple(p.model_copy(deep=True) for p in value)  # later edits by the caller do not leak in

    @field_validator("output", mode="after")
    @classmethod
    def _output_form(cls, value: str) -> str:
        if value != "final" and not value.startswith("processor:"):
            raise ValueError(f"output must be 'final' or 'processor:<name>', got {value!r}")
        return value

    @model_validator(mode="after")
    def _version_needs_callback(self) -> StageOptions:
        if self.on_success_version is not None and self.on_success is None:
            raise ValueError("on_success_version is set but there is no on_success callback")
        if self.target_valid_records is None and (self.max_records is not None or self.valid_filter is not None):
            raise ValueError("max_records and valid_filter apply only with target_valid_records")
        return self

    def gate(self) -> dict[str, object]:
        """The RunConfig fields of the stage's quality gate (empty without one)."""
        if self.target_valid_records is None:
            return {}
        return {"target_valid_records": self.target_valid_records, "max_records": self.max_records,
                "valid_filter": self.valid_filter}

    def parents(self, previous: str | None) -> tuple[str, ...]:
        """The parent stages: ``depends_on``, or the stage added before (``previous``) by default."""
        if self.depends_on is not None:
            return self.depends_on
        return (previous,) if previous is not None else ()

    @property
    def selected_processor(self) -> str | None:
        """The processor named by ``output="processor:<name>"``, or None for ``"final"``."""
        return self.output.split(":", 1)[1] if self.output.startswith("processor:") else None

    def fingerprint_components(self, *, first_stage: bool) -> dict[str, JsonValue]:
        """The options' part of the stage fingerprint (the strategies only matter downstream,
        where they shape the hand-off from the upstream stage). Joins and side inputs enter only
        when set, so a linear chain's fingerprints are those of the versions before DAGs."""
        selection = self.selection_strategy.fingerprint_payload() if self.selection_strategy else None
        dag: dict[str, JsonValue] = {}
        if self.join:
            dag["join"] = dict(sorted(self.join.items()))
        if self.side_inputs:
            side: list[JsonValue] = [name for name in sorted(self.side_inputs)]
            dag["side_inputs"] = side
        if self.target_valid_records is not None:  # enters only when set, like joins
            dag["gate"] = {"target_valid_records": self.target_valid_records, "max_records": self.max_records,
                           "valid_filter": self.valid_filter}
        return {**dag,
            "sampling_strategy": None if first_stage else self.sampling_strategy.value,
            "selection_strategy": None if first_stage else selection,
            "allow_empty": self.allow_empty,
            "callback": None if self.on_success is None else {"version": self.on_success_version},
            "output_processors": [{"name": p.name, "digest": short_hash(p.fingerprint_payload())}
                                  for p in self.output_processors],
            "output": self.output,
        }


@dataclass(frozen=True)
class StageDefinition:
    """One stage as added with ``CompositeWorkflow.add_stage``: validated, config copied, and the
    ``on_success`` reference imported (``options.on_success`` is a callable or None here)."""

    index: int
    name: str
    config: DatasetConfig
    options: StageOptions = StageOptions()
    parents: tuple[str, ...] = ()  # resolved by define_stage: depends_on, or the previous stage

    @property
    def seed_parent(self) -> str | None:
        """The parent whose output rows seed the stage (None for a root stage)."""
        if not self.parents:
            return None
        return self.options.seed_from or self.parents[0]

    @property
    def extra_parents(self) -> tuple[str, ...]:
        """Parents besides the seed: joined ones and side inputs."""
        return tuple(p for p in self.parents if p != self.seed_parent)

    @property
    def directory_name(self) -> str:
        """``stage-<index>-<name>``: the stage's directory inside the workflow directory."""
        return f"stage-{self.index}-{self.name}"

    @property
    def num_records(self) -> int | None:
        """The rows the stage asks for itself (None: the upstream output's row count)."""
        return self.options.num_records

    @property
    def on_success(self) -> OnSuccess | None:
        """The callback (``define_stage`` imported a 'module:function' reference)."""
        callback = self.options.on_success
        return callback if callable(callback) else None

    @property
    def output_processors(self) -> tuple[Processor, ...]:
        return self.options.output_processors

    @property
    def selected_processor(self) -> str | None:
        """The processor named by ``output="processor:<name>"``, or None for ``"final"``."""
        return self.options.selected_processor

    def uses_models(self) -> bool:
        """True when some column calls a model (the stage needs the LLM runtime and cache)."""
        return any(column.model_aliases() for column in self.config.columns)

    def with_handoff(self, source: str | None) -> DatasetConfig:
        """The config as run: a stage with parents seeds from ``source``, the hand-off of its seed
        parent's selected output (joined with other parents, side inputs added).

        A root stage keeps its own seed (if any). ``source`` never enters a fingerprint, so
        a placeholder is fine when only the fingerprint is wanted.
        """
        if not self.parents or source is None:
            return self.config
        seed = SeedConfig(source=source, sampling_strategy=self.options.sampling_strategy,
                          selection_strategy=self.options.selection_strategy)
        return self.config.model_copy(update={"seed": seed}, deep=True)


def stage_options(name: str, options: StageOptions | Mapping[str, object]) -> StageOptions:
    """``options`` validated as ``StageOptions``; ``WorkflowError`` names the stage and the problem."""
    if isinstance(options, StageOptions):
        return options
    try:
        return StageOptions.model_validate(dict(options))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        text = first["msg"].removeprefix("Value error, ") if first["type"] == "value_error" else first_problem(exc)
        raise WorkflowError(f"stage {name!r}: {text}") from None


def define_stage(index: int, name: str, config: DatasetConfig | ConfigBuilder,
                 options: StageOptions | Mapping[str, object] | None = None, *,
                 existing: Sequence[str]) -> StageDefinition:
    """Validate everything about a new stage and return it; raises ``WorkflowError``.

    >>> define_stage(0, "people", cfg, {"num_records": 10}, existing=[])   # doctest: +SKIP
    """
    check_stage_name(name, existing)
    checked = stage_options(name, options or {})
    copied = _copy_config(name, config)
    parents = checked.parents(existing[-1] if existing else None)
    check_parents(name, checked, parents, existing)
    if checked.num_records is None and not parents:
        what = "the first stage" if index == 0 else "a root stage (depends_on=[])"
        raise WorkflowError(f"stage {name!r} is {what}: give num_records (there is no upstream "
                            "output to take the row count from)")
    _check_processor_names(name, copied, checked)
    if parents and copied.seed is not None:
        seed_parent = checked.seed_from or parents[0]
        what = "previous stage" if checked.depends_on is None else "stage"
        warnings.warn(f"stage {name!r}: its config has its own seed dataset, which is replaced by the output "
                      f"of the {what} {seed_parent!r}", stacklevel=3)
    resolved = checked.model_copy(update={"on_success": _resolve_callback(name, checked.on_success)})
    return StageDefinition(index=index, name=name, config=copied, options=resolved, parents=parents)


def check_parents(name: str, options: StageOptions, parents: Sequence[str], existing: Sequence[str]) -> None:
    """The DAG options of a new stage: parents known and added before it (so no cycle can form),
    one seed parent, every other parent joined on a key or read as a side input."""
    for parent in parents:
        if parent == name:
            raise WorkflowError(f"stage {name!r} depends on itself; remove it from depends_on")
        if parent not in existing:
            raise WorkflowError(f"stage {name!r} depends on {parent!r}, which is not a stage added before it "
                                f"(stages so far: {list(existing)}); add parents before their children")
    if len(set(parents)) != len(parents):
        raise WorkflowError(f"stage {name!r}: depends_on names a stage twice: {list(parents)}")
    _check_roles(name, options, parents)


def _check_roles(name: str, options: StageOptions, parents: Sequence[str]) -> None:
    def not_parent(what: str, parent: str) -> WorkflowError:
        return WorkflowError(f"stage {name!r}: {what} names {parent!r}, which is not one of its parents "
                             f"{list(parents)}; add it to depends_on")

    if not parents:
        if options.seed_from or options.join or options.side_inputs:
            raise WorkflowError(f"stage {name!r} is a root stage (no parents): seed_from, join and side_inputs "
                                "need parents in depends_on")
        return
    if options.seed_from is None and len(parents) > 1:
        raise WorkflowError(f"stage {name!r} has several parents {list(parents)}: say which one seeds it with "
                            "seed_from=...")
    seed = options.seed_from or parents[0]
    if seed not in parents:
        raise not_parent("seed_from", seed)
    for parent in [*options.join, *options.side_inputs]:
        if parent not in parents:
            raise not_parent("join" if parent in options.join else "side_inputs", parent)
        if parent == seed:
            raise WorkflowError(f"stage {name!r}: {parent!r} is its seed parent; it cannot also be joined or a "
                                "side input")
    both = sorted(set(options.join) & set(options.side_inputs))
    if both or len(set(options.side_inputs)) != len(options.side_inputs):
        raise WorkflowError(f"stage {name!r}: {both or list(options.side_inputs)} named twice in join/side_inputs")
    for parent, key in options.join.items():
        if not isinstance(key, str) or not key:
            raise WorkflowError(f"stage {name!r}: join key for {parent!r} must be a column name, got {key!r}")
    loose = [p for p in parents if p != seed and p not in options.join and p not in options.side_inputs]
    if loose:
        raise WorkflowError(f"stage {name!r}: parent(s) {loose} are neither its seed (seed_from), joined "
                            f"(join={{{loose[0]!r}: 'key column'}}) nor side inputs (side_inputs=[{loose[0]!r}])")


def check_stage_name(name: object, existing: Sequence[str]) -> None:
    """A stage name must be unique and safe as part of a directory name."""
    if not isinstance(name, str) or not _STAGE_NAME_RE.match(name):
        raise WorkflowError(f"stage name {name!r} is not usable as a directory name: use 1-100 letters, digits, "
                            "'_', '-' or '.', starting with a letter or digit")
    if name in existing:
        raise WorkflowError(f"duplicate stage name {name!r}; stage names must be unique within a workflow")


def check_workflow_name(name: object) -> None:
    """A workflow name is a directory name under the Mill's artifact path."""
    if not isinstance(name, str) or not _STAGE_NAME_RE.match(name):
        raise WorkflowError(f"workflow name {name!r} is not usable as a directory name: use 1-100 letters, "
                            "digits, '_', '-' or '.', starting with a letter or digit")


def _copy_config(name: str, config: object) -> DatasetConfig:
    if isinstance(config, ConfigBuilder):
        return config.build()
    if isinstance(config, DatasetConfig):
        return config.model_copy(deep=True)
    raise WorkflowError(f"stage {name!r}: config must be a DatasetConfig or a ConfigBuilder, "
                        f"got {type(config).__name__}")


def _resolve_callback(name: str, on_success: OnSuccess | str | None) -> OnSuccess | None:
    if on_success is None or callable(on_success):
        return on_success
    try:
        obj = import_reference(on_success)
    except (ImportError, AttributeError) as exc:
        raise WorkflowError(f"stage {name!r}: cannot import on_success {on_success!r}: {exc}") from None
    except ConfigError as exc:  # a module configs may not name (docs/trust.md)
        raise WorkflowError(f"stage {name!r}: on_success: {exc}") from None
    if not callable(obj):
        raise WorkflowError(f"stage {name!r}: on_success {on_success!r} is not callable")
    return obj  # type: ignore[no-any-return]  # an imported user function


def _check_processor_names(name: str, config: DatasetConfig, options: StageOptions) -> None:
    """Output processors must not clash with the config's; ``output`` must name a processor dataset."""
    names = {p.name for p in options.output_processors}
    clashes = sorted(names & {p.name for p in config.processors})
    if clashes:
        raise WorkflowError(f"stage {name!r}: output processor name(s) {clashes} clash with processors of the "
                            "stage config; rename them")
    wanted = options.selected_processor
    selectable = names | {p.name for p in config.processors if isinstance(p, SchemaTransformProcessor)}
    if wanted is not None and wanted not in selectable:
        raise WorkflowError(f"stage {name!r}: output {options.output!r} names no processor with its own dataset; "
                            f"choose one of {sorted(selectable) or 'none (add a schema_transform processor)'}")
