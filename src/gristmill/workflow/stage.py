"""Stage definitions of a composite workflow, checked completely when they are added.

Everything that can be checked without running anything is checked in ``define_stage``:
a bad name, a bad ``num_records``, an ``output`` that names no processor, or clashing
processor names fail before any directory exists. The stage config is copied at that
moment, so later edits to the caller's builder or config do not leak into the workflow.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from gristmill.config.base import import_reference
from gristmill.config.dataset import ConfigBuilder, DatasetConfig
from gristmill.config.processors import Processor, SchemaTransformProcessor
from gristmill.config.seeds import SamplingStrategy, SeedConfig, SelectionStrategy
from gristmill.errors import WorkflowError

#: A stage name is used as part of a directory name: ``stage-<index>-<name>``.
_STAGE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_PROCESSOR_ADAPTER: TypeAdapter[Any] = TypeAdapter(Annotated[Processor, Field(discriminator="processor_type")])
_SELECTION_ADAPTER: TypeAdapter[Any] = TypeAdapter(
    Annotated[SelectionStrategy, Field(discriminator="selection_type")])

OnSuccess = Callable[[Path], Any]


@dataclass(frozen=True)
class StageDefinition:
    """One stage as added with ``CompositeWorkflow.add_stage`` (validated, config copied)."""

    index: int
    name: str
    config: DatasetConfig
    num_records: int | None = None
    on_success: OnSuccess | None = None
    on_success_version: str | None = None
    output_processors: tuple[Processor, ...] = ()
    output: str = "final"
    allow_empty: bool = False
    sampling_strategy: SamplingStrategy = SamplingStrategy.ORDERED
    selection_strategy: SelectionStrategy | None = None

    @property
    def directory_name(self) -> str:
        """``stage-<index>-<name>``: the stage's directory inside the workflow directory."""
        return f"stage-{self.index}-{self.name}"

    @property
    def selected_processor(self) -> str | None:
        """The processor named by ``output="processor:<name>"``, or None for ``"final"``."""
        return self.output.split(":", 1)[1] if self.output.startswith("processor:") else None

    def uses_models(self) -> bool:
        """True when some column calls a model (the stage needs the LLM runtime and cache)."""
        return any(column.model_aliases() for column in self.config.columns)

    def with_handoff(self, source: str | None) -> DatasetConfig:
        """The config as run: stage ``i > 0`` seeds from ``source``, the upstream selected output.

        The first stage keeps its own seed (if any). ``source`` never enters a fingerprint, so
        a placeholder is fine when only the fingerprint is wanted.
        """
        if self.index == 0 or source is None:
            return self.config
        seed = SeedConfig(source=source, sampling_strategy=self.sampling_strategy,
                          selection_strategy=self.selection_strategy)
        return self.config.model_copy(update={"seed": seed}, deep=True)


def define_stage(index: int, name: str, config: DatasetConfig | ConfigBuilder, *, existing: Sequence[str],
                 num_records: int | None = None, on_success: OnSuccess | str | None = None,
                 on_success_version: str | None = None, output_processors: Sequence[Any] | None = None,
                 output: str = "final", allow_empty: bool = False,
                 sampling_strategy: SamplingStrategy | str = SamplingStrategy.ORDERED,
                 selection_strategy: SelectionStrategy | dict[str, Any] | None = None) -> StageDefinition:
    """Validate everything about a new stage and return it; raises ``WorkflowError``."""
    check_stage_name(name, existing)
    copied = _copy_config(name, config)
    if num_records is not None:
        _check_num_records(name, num_records)
    elif index == 0:
        raise WorkflowError(f"stage {name!r} is the first stage: give num_records (there is no upstream "
                            "output to take the row count from)")
    callback = _resolve_callback(name, on_success)
    if on_success_version is not None and callback is None:
        raise WorkflowError(f"stage {name!r}: on_success_version is set but there is no on_success callback")
    processors = _parse_output_processors(name, copied, output_processors or ())
    _check_output(name, output, copied, processors)
    if index > 0 and copied.seed is not None:
        warnings.warn(f"stage {name!r}: its config has its own seed dataset, which is replaced by the output "
                      f"of the previous stage {existing[-1]!r}", stacklevel=3)
    try:
        strategy = SamplingStrategy(sampling_strategy)
        selection = _SELECTION_ADAPTER.validate_python(selection_strategy) if isinstance(
            selection_strategy, dict) else selection_strategy
    except (ValueError, ValidationError) as exc:
        raise WorkflowError(f"stage {name!r}: invalid sampling or selection strategy: {exc}") from None
    return StageDefinition(index=index, name=name, config=copied, num_records=num_records, on_success=callback,
                           on_success_version=on_success_version, output_processors=processors, output=output,
                           allow_empty=bool(allow_empty), sampling_strategy=strategy, selection_strategy=selection)


def check_stage_name(name: Any, existing: Sequence[str]) -> None:
    """A stage name must be unique and safe as part of a directory name."""
    if not isinstance(name, str) or not _STAGE_NAME_RE.match(name):
        raise WorkflowError(f"stage name {name!r} is not usable as a directory name: use 1-100 letters, digits, "
                            "'_', '-' or '.', starting with a letter or digit")
    if name in existing:
        raise WorkflowError(f"duplicate stage name {name!r}; stage names must be unique within a workflow")


def check_workflow_name(name: Any) -> None:
    """A workflow name is a directory name under the Mill's artifact path."""
    if not isinstance(name, str) or not _STAGE_NAME_RE.match(name):
        raise WorkflowError(f"workflow name {name!r} is not usable as a directory name: use 1-100 letters, "
                            "digits, '_', '-' or '.', starting with a letter or digit")


def _copy_config(name: str, config: Any) -> DatasetConfig:
    if isinstance(config, ConfigBuilder):
        return config.build()
    if isinstance(config, DatasetConfig):
        return config.model_copy(deep=True)
    raise WorkflowError(f"stage {name!r}: config must be a DatasetConfig or a ConfigBuilder, "
                        f"got {type(config).__name__}")


def _check_num_records(name: str, num_records: Any) -> None:
    if isinstance(num_records, bool) or not isinstance(num_records, int) or num_records < 1:
        raise WorkflowError(f"stage {name!r}: num_records must be a positive integer, got {num_records!r}")


def _resolve_callback(name: str, on_success: OnSuccess | str | None) -> OnSuccess | None:
    if on_success is None or callable(on_success):
        return on_success
    if isinstance(on_success, str) and ":" in on_success:
        try:
            obj = import_reference(on_success)
        except (ImportError, AttributeError) as exc:
            raise WorkflowError(f"stage {name!r}: cannot import on_success {on_success!r}: {exc}") from None
        if callable(obj):
            return obj  # type: ignore[no-any-return]
    raise WorkflowError(f"stage {name!r}: on_success must be a callable or 'module:function', got {on_success!r}")


def _parse_output_processors(name: str, config: DatasetConfig, items: Sequence[Any]) -> tuple[Processor, ...]:
    parsed: list[Processor] = []
    for item in items:
        try:
            proc = _PROCESSOR_ADAPTER.validate_python(item)
        except ValidationError as exc:
            raise WorkflowError(f"stage {name!r}: invalid output processor: {exc.errors()[0]['msg']}") from None
        parsed.append(proc.model_copy(deep=True))
    names = [p.name for p in parsed]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise WorkflowError(f"stage {name!r}: duplicate output processor name(s) {dupes}; names must be unique")
    clashes = sorted(set(names) & {p.name for p in config.processors})
    if clashes:
        raise WorkflowError(f"stage {name!r}: output processor name(s) {clashes} clash with processors of the "
                            "stage config; rename them")
    return tuple(parsed)


def _check_output(name: str, output: Any, config: DatasetConfig, processors: Sequence[Processor]) -> None:
    if output == "final":
        return
    if not isinstance(output, str) or not output.startswith("processor:"):
        raise WorkflowError(f"stage {name!r}: output must be 'final' or 'processor:<name>', got {output!r}")
    wanted = output.split(":", 1)[1]
    selectable = {p.name for p in config.processors if isinstance(p, SchemaTransformProcessor)}
    selectable |= {p.name for p in processors}
    if wanted not in selectable:
        raise WorkflowError(f"stage {name!r}: output {output!r} names no processor with its own dataset; "
                            f"choose one of {sorted(selectable) or 'none (add a schema_transform processor)'}")
