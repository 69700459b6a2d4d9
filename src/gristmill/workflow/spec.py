"""Declarative workflow files (YAML): the same stages ``add_stage`` takes, written down.

.. code-block:: yaml

    name: people-pipeline
    artifact_path: artifacts          # relative to this file; default "artifacts"
    run: {batch_size: 50}             # RunConfig fields (optional)
    stages:
      - name: people
        config: people.yaml           # a DatasetConfig file (relative to this file) ...
        num_records: 100
      - name: adults
        config:                       # ... or the config inline
          columns:
            - {name: greeting, column_type: expression, expr: "Hi {{ first_name }}"}
        on_success: my_module:keep_adults
        on_success_version: "1"
        output_processors:
          - {name: chat, processor_type: schema_transform, template: {text: "{{ greeting }}"}}
        allow_empty: true
        sampling_strategy: shuffle
      - name: merged                  # a DAG: several parents, one seeds, the others joined
        depends_on: [people, adults]  # or side_inputs: [adults]
        seed_from: people
        join: {adults: person_id}
        config: merged.yaml

Relative paths (``artifact_path``, stage configs, model files) are taken from the workflow
file's directory. ``on_success`` and custom-column functions are ``module:function``
strings; ``gristmill run`` puts the workflow file's directory on ``sys.path`` first.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gristmill.config.dataset import DatasetConfig
from gristmill.config.errors_format import first_problem
from gristmill.config.run import RunConfig
from gristmill.errors import ConfigError
from gristmill.workflow.composite import CompositeWorkflow
from gristmill.workflow.stage import StageOptions

if TYPE_CHECKING:
    from gristmill.engine.services import EngineServices


class StageSpec(StageOptions):
    """One stage of a workflow file: a name, a config and the ``StageOptions`` fields."""

    name: str = Field(description="Stage name (also part of its directory name).")
    config: str | dict[str, object] = Field(description="Path of a DatasetConfig YAML/JSON file, or the config inline.")

    def options(self) -> StageOptions:
        """The stage's options without its name and config (already validated)."""
        return StageOptions.model_construct(**{key: getattr(self, key) for key in StageOptions.model_fields})


class WorkflowSpec(BaseModel):
    """A whole workflow file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Workflow name; its directory is <artifact_path>/<name>.")
    artifact_path: str = Field(default="artifacts", description="Where workflow directories live.")
    run: dict[str, object] = Field(default_factory=dict, description="RunConfig fields (batch_size, seed, ...).")
    model_providers: str | None = Field(default=None, description="Model providers file.")
    model_configs: str | None = Field(default=None, description="Model configs file.")
    tools: str | None = Field(default=None, description="Tools file (tool_providers and tool_configs, "
                                                        "docs/tools.md) for columns with tool_alias.")
    stages: list[StageSpec] = Field(min_length=1, description="Stages, in order.")


def load_workflow_spec(path: str | Path) -> WorkflowSpec:
    """Read and validate a workflow file; ``ConfigError`` names the file and the bad field."""
    source = Path(path)
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read workflow file {str(source)!r}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with 'name' and 'stages' at the top level")
    try:
        spec = WorkflowSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {first_problem(exc)}") from None
    _check_model_files(spec, source)
    return spec


def _check_model_files(spec: WorkflowSpec, source: Path) -> None:
    """A model file the workflow names must exist: ignoring it would run with other models."""
    base = source.resolve().parent
    for field in ("model_providers", "model_configs", "tools"):
        name = getattr(spec, field)
        if name is not None and not (base / name).is_file():
            raise ConfigError(f"{source}: {field} names {name!r}, but {base / name} does not exist; fix the path "
                              "(relative paths are taken from the workflow file's directory) or remove the line")


def build_workflow(spec: WorkflowSpec, *, base_dir: Path, services: EngineServices,
                   artifact_path: Path) -> CompositeWorkflow:
    """The ``CompositeWorkflow`` a spec describes; config paths are relative to ``base_dir``."""
    workflow = CompositeWorkflow(services, spec.name, artifact_path=artifact_path)
    for stage in spec.stages:
        workflow.add_stage_options(stage.name, _stage_config(stage, base_dir), stage.options())
    return workflow


def spec_run_config(spec: WorkflowSpec) -> RunConfig:
    """The spec's ``run:`` section as a RunConfig; ``ConfigError`` names the bad field."""
    try:
        return RunConfig.model_validate(spec.run)
    except ValidationError as exc:
        raise ConfigError(f"workflow {spec.name!r}: {first_problem(exc, prefix='run')}") from None


def _stage_config(stage: StageSpec, base_dir: Path) -> DatasetConfig:
    if isinstance(stage.config, dict):
        return DatasetConfig.from_dict(stage.config, source=f"config of stage {stage.name!r}")
    path = base_dir / stage.config
    if path.suffix.lower() == ".json":
        return DatasetConfig.from_json(path)
    return DatasetConfig.from_yaml(path)
