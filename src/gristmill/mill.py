"""The ``Mill``: the one object a user creates to generate datasets and run workflows."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from gristmill.config.base import ConfigValidationError
from gristmill.config.dataset import ConfigBuilder, DatasetConfig
from gristmill.config.models import ModelConfig, ModelProvider
from gristmill.config.run import ResumeMode, RunConfig
from gristmill.config.tools import ToolConfig, ToolProvider
from gristmill.config.trust import allow_directory
from gristmill.engine.bill import DatasetBill, decision_bill
from gristmill.engine.dataset_plan import (
    DatasetDecision,
    DatasetObservation,
    DatasetRequest,
    dataset_identity,
    observe_dataset,
    plan_dataset,
)
from gristmill.engine.dataset_run import DatasetJob, DatasetRun
from gristmill.engine.preview import preview_rows
from gristmill.engine.seeds import seed_column_names
from gristmill.engine.services import EngineServices, ModelSources, uses_models
from gristmill.errors import ConfigError
from gristmill.results import DatasetResults
from gristmill.sampling.rng import stream_key
from gristmill.storage.layout import DatasetLayout, check_name_fits
from gristmill.storage.lock import DirectoryLock
from gristmill.storage.metadata import DatasetMetadata
from gristmill.workflow.composite import CompositeWorkflow
from gristmill.workflow.spec import build_workflow, load_workflow_spec, spec_run_config

if TYPE_CHECKING:
    import pandas as pd

    from gristmill.llm.types import ChatClient

__all__ = ["Mill", "ResumeMode", "load_workflow"]


class Mill:
    """Generates datasets under ``artifact_path`` and composes workflows.

    >>> mill = Mill(artifact_path="artifacts")            # doctest: +SKIP
    >>> results = mill.create(config, num_records=1000)     # doctest: +SKIP

    ``clients={"provider-name": client}`` answers that provider's requests with your own
    client (``gristmill.testing.FunctionModel`` for tests) instead of an HTTP or local one.
    """

    def __init__(self, artifact_path: str | os.PathLike[str] = "artifacts", *,
                 run_config: RunConfig | Mapping[str, Any] | None = None,
                 model_providers: Sequence[ModelProvider] | str | Path | None = None,
                 model_configs: Sequence[ModelConfig] | str | Path | None = None,
                 clients: Mapping[str, ChatClient] | None = None,
                 tool_providers: Sequence[ToolProvider] | str | Path | None = None,
                 tool_configs: Sequence[ToolConfig] | str | Path | None = None) -> None:
        """``run_config`` may be a ``RunConfig`` or a dict of its fields; a bad argument of any
        kind is a ``ConfigError`` now, not an ``AttributeError`` at the first ``create``.
        ``tool_providers`` / ``tool_configs``: MCP servers and the tool configs LLM columns name
        with ``tool_alias`` (default: ``tools.yaml`` in the gristmill home; docs/tools.md)."""
        self.artifact_path = _artifact_path(artifact_path)
        models = ModelSources(providers=model_providers, models=model_configs, clients=clients,
                              tool_providers=tool_providers, tool_configs=tool_configs)
        self.services = EngineServices(run_config=_run_config(run_config), models=models)

    @property
    def run_config(self) -> RunConfig:
        return self.services.run_config

    # -- datasets ----------------------------------------------------------------------------
    def create(self, config: DatasetConfig | ConfigBuilder, *, num_records: int, dataset_name: str = "dataset",
               resume: ResumeMode | str = ResumeMode.IF_POSSIBLE, verify: bool = False,
               retry_failed: bool = False, target_valid_records: int | None = None,
               max_records: int | None = None, valid_filter: str | None = None) -> DatasetResults:
        """Generate ``num_records`` rows into ``<artifact_path>/<dataset_name>``.

        By default (``resume=IF_POSSIBLE``) a rerun continues a run that crashed or was stopped,
        extends a dataset to a larger ``num_records``, reuses a complete one as it is, and after a
        config change starts fresh beside it, answering unchanged LLM requests from the earlier
        run's cache. ``plan_dataset`` says beforehand which of these a call will do. ``verify``
        also compares the sha256 of every stored file (the CRC-32 is always checked).

        ``retry_failed``: after the dataset is complete, regenerate only its failed cells (those
        listed in ``__errors``, and the cells they blocked), in place, one batch at a time; no
        other cell is regenerated or paid for.

        ``target_valid_records``: keep generating (``num_records`` rows first, then as many more as
        the pass rate so far says are needed, up to ``max_records``) until that many rows pass
        ``valid_filter`` (a Jinja condition; without one, every validation column's ``is_valid``;
        without those, no failed cell). The dataset then holds exactly that many rows; the others
        are kept under ``dropped-rows/`` with the reason.
        """
        config, mode = _as_config(config), ResumeMode.parse(resume)
        _check_num_records(num_records)
        _check_dataset_name(dataset_name)
        run_config = _gate(self.run_config, target_valid_records, max_records, valid_filter)
        self.validate(config)
        identity = dataset_identity(config)
        root = self.artifact_path / dataset_name
        # Observed and decided under the lock, so nobody changes it meanwhile; a directory that is
        # not a gristmill dataset is never written to, not even a lock file.
        with DirectoryLock(root) if _may_write(root) else contextlib.nullcontext():
            observation = observe_dataset(root, identity, look_for_earlier=mode is ResumeMode.IF_POSSIBLE,
                                          verify=verify)
            decision = plan_dataset(observation, identity, DatasetRequest(num_records, run_config, mode))
            target = decision.path
            if decision.warning:
                warnings.warn(decision.warning, stacklevel=2)
            stored = _stored_metadata(observation, decision)
            seed = stored.run_seed if stored else dataset_run_seed(dataset_name, self.run_config.seed)
            batch_size = run_config.rows_per_batch(uses_models=uses_models(config),
                                                   stored=stored.batch_size if stored else None)
            job = DatasetJob(config=config, layout=DatasetLayout(target), dataset_name=dataset_name,
                             num_records=num_records,
                             run_config=run_config.model_copy(update={"seed": seed, "batch_size": batch_size}),
                             identity=identity)
            run = DatasetRun(job, self.services, import_caches=decision.import_caches,
                             move_damaged_cache=mode is not ResumeMode.ALWAYS, retry_failed=retry_failed)
            if target == root:
                meta = run.execute(stored)
            else:
                with DirectoryLock(target):
                    meta = run.execute(stored)
        results = DatasetResults(target, meta, generated_rows=run.generated_rows, run_usage=run.run_usage)
        if self.run_config.analysis:
            results.load_analysis()
        return results

    def plan_dataset(self, config: DatasetConfig | ConfigBuilder, *, num_records: int,
                     dataset_name: str = "dataset", resume: ResumeMode | str = ResumeMode.IF_POSSIBLE,
                     verify: bool = False, target_valid_records: int | None = None,
                     max_records: int | None = None, valid_filter: str | None = None) -> DatasetDecision:
        """What ``create`` with these arguments would do, and why; reads stored state only."""
        config, mode = _as_config(config), ResumeMode.parse(resume)
        _check_num_records(num_records)
        _check_dataset_name(dataset_name)
        run_config = _gate(self.run_config, target_valid_records, max_records, valid_filter)
        self.validate(config)
        identity = dataset_identity(config)
        root = self.artifact_path / dataset_name
        observation = observe_dataset(root, identity, look_for_earlier=mode is ResumeMode.IF_POSSIBLE,
                                          verify=verify)
        return plan_dataset(observation, identity, DatasetRequest(num_records, run_config, mode))

    def bill_dataset(self, config: DatasetConfig | ConfigBuilder, *, num_records: int, dataset_name: str = "dataset",
                     resume: ResumeMode | str = ResumeMode.IF_POSSIBLE, target_valid_records: int | None = None,
                     max_records: int | None = None, valid_filter: str | None = None) -> DatasetBill:
        """What ``create`` with these arguments would pay for: model requests per column and model,
        those the response cache answers, an upper bound, and a cost estimate when models have
        prices. Reads stored state only: nothing is written and no model endpoint is contacted.
        Under ``target_valid_records`` the rows of later rounds are in the upper bound only."""
        config, mode = _as_config(config), ResumeMode.parse(resume)
        _check_num_records(num_records)
        _check_dataset_name(dataset_name)
        run_config = _gate(self.run_config, target_valid_records, max_records, valid_filter)
        self.validate(config)
        identity = dataset_identity(config)
        observation = observe_dataset(self.artifact_path / dataset_name, identity,
                                      look_for_earlier=mode is ResumeMode.IF_POSSIBLE)
        decision = plan_dataset(observation, identity, DatasetRequest(num_records, run_config, mode))
        stored = _stored_metadata(observation, decision)
        seed = stored.run_seed if stored else dataset_run_seed(dataset_name, run_config.seed)
        return decision_bill(self.services, config, decision=decision, stored=stored, num_records=num_records,
                             run_seed=seed, run_config=run_config)

    def preview(self, config: DatasetConfig | ConfigBuilder, num_records: int = 10) -> pd.DataFrame:
        """Generate ``num_records`` rows in memory; nothing is written where datasets live.

        The rows are the first ones ``create(config, num_records=...)`` would write with the default
        ``dataset_name`` (same derived seed unless ``RunConfig.seed`` is set), and LLM answers are
        kept in a response cache for the Mill's life: a repeated or grown preview pays only for new
        requests (``RunConfig(cache=False)`` turns that off).
        """
        config = _as_config(config)
        _check_num_records(num_records)
        self.validate(config)
        # A fixed seed (not a fresh random one per call) is what lets a repeated preview hit the cache.
        run_config = self.run_config.model_copy(update={"seed": dataset_run_seed("dataset", self.run_config.seed)})
        llm = self.services.llm_for(config)
        return preview_rows(config, num_records=num_records, run_config=run_config, loop=self.services.loop,
                            llm=llm, response_cache=self.services.preview_cache() if llm is not None else None)

    def validate(self, config: DatasetConfig | ConfigBuilder) -> None:
        """Static checks (column graph, seed readable, model aliases known); raises ConfigError."""
        config = _as_config(config)
        seed_columns = seed_column_names(config.seed) if config.seed is not None else []
        self.services.check_config(config, seed_columns)

    # -- workflows ---------------------------------------------------------------------------
    def compose_workflow(self, name: str) -> CompositeWorkflow:
        """A new composite workflow named ``name`` (its directory: ``<artifact_path>/<name>``)."""
        return CompositeWorkflow(self.services, name, artifact_path=self.artifact_path)

    def close(self) -> None:
        """Release connection pools and the background loop (``with Mill(...) as mill:`` does it for you)."""
        self.services.close()

    def __enter__(self) -> Mill:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_workflow(path: str | Path, *, mill: Mill | None = None,
                  run_options: Mapping[str, object] | None = None, model_providers: str | Path | None = None,
                  model_configs: str | Path | None = None, tools: str | Path | None = None) -> CompositeWorkflow:
    """A ``CompositeWorkflow`` from a YAML workflow file; paths in it are relative to the file.

    Without ``mill``, one is made from the file's ``artifact_path``, ``run`` and model files;
    ``run_options`` override fields of its ``run:`` section (``{"executor": "ray"}``), and
    ``model_providers`` / ``model_configs`` its model files and ``tools`` its tools file.
    """
    source = Path(path)
    spec = load_workflow_spec(source)
    base = source.resolve().parent
    allow_directory(base)  # callbacks beside the file are the user's code, as for the CLI (docs/trust.md)
    if mill is None:
        if run_options:
            spec = spec.model_copy(update={"run": {**spec.run, **run_options}})
        mill = Mill((base / spec.artifact_path).resolve(), run_config=spec_run_config(spec),
                    model_providers=model_providers or (base / spec.model_providers if spec.model_providers else None),
                    model_configs=model_configs or (base / spec.model_configs if spec.model_configs else None),
                    tool_providers=tools or (base / spec.tools if spec.tools else None),
                    tool_configs=tools or (base / spec.tools if spec.tools else None))
    return build_workflow(spec, base_dir=base, services=mill.services, artifact_path=mill.artifact_path)


def dataset_run_seed(dataset_name: str, explicit: int | None) -> int:
    """The run seed of a fresh dataset: ``explicit`` when given, else derived from its name, so a
    rerun after a config change draws the same values and unchanged LLM requests hit the cache."""
    return explicit if explicit is not None else stream_key("dataset", dataset_name) % 2**63


def _stored_metadata(observation: DatasetObservation, decision: DatasetDecision) -> DatasetMetadata | None:
    if not decision.continues:
        return None
    run = next(r for r in (observation.main, *observation.earlier) if r.path == decision.path)
    return run.metadata


def _may_write(root: Path) -> bool:
    """False for a non-empty directory without metadata.json: someone else's files."""
    layout = DatasetLayout(root)
    return layout.is_empty() or layout.metadata_path.exists()


def _artifact_path(value: object) -> Path:
    """``value`` as the directory datasets are written under; ConfigError for anything else."""
    if isinstance(value, str | os.PathLike):
        with contextlib.suppress(TypeError):  # a bytes path
            return Path(value)
    raise ConfigError(f"artifact_path must be a directory path (a str or pathlib.Path), got {type(value).__name__}; "
                      "e.g. Mill(artifact_path='artifacts')")


def _run_config(value: object) -> RunConfig:
    """``value`` as a RunConfig: None means the defaults, a mapping is validated field by field."""
    if value is None:
        return RunConfig()
    if isinstance(value, RunConfig):
        return value
    if isinstance(value, Mapping):
        try:
            return RunConfig.model_validate(dict(value))
        except ValidationError as exc:
            raise ConfigValidationError.of(exc, RunConfig) from None
    raise ConfigError(f"run_config must be a RunConfig or a dict of its fields, got {type(value).__name__}; "
                      "e.g. run_config=RunConfig(batch_size=100)")


def _as_config(config: object) -> DatasetConfig:
    if isinstance(config, ConfigBuilder):
        return config.build()
    if not isinstance(config, DatasetConfig):
        raise ConfigError(f"expected a DatasetConfig or ConfigBuilder, got {type(config).__name__}")
    return config


def _gate(run_config: RunConfig, target: int | None, max_records: int | None, valid_filter: str | None) -> RunConfig:
    """``run_config`` with the quality gate of one ``create`` call (ConfigError for bad values)."""
    given = {"target_valid_records": target, "max_records": max_records, "valid_filter": valid_filter}
    updates = {key: value for key, value in given.items() if value is not None}
    if not updates:
        return run_config
    if run_config.target_valid_records is None and target is None:
        raise ConfigError("max_records and valid_filter apply only with target_valid_records=N")
    try:
        return RunConfig.model_validate({**run_config.model_dump(), **updates})
    except ValidationError as exc:
        raise ConfigValidationError.of(exc, RunConfig) from None


def _check_num_records(num_records: object) -> None:
    if isinstance(num_records, bool) or not isinstance(num_records, int) or num_records < 1:
        raise ConfigError(f"num_records must be a positive integer, got {num_records!r}")


def _check_dataset_name(name: object) -> None:
    if not isinstance(name, str) or not name or name in {".", ".."} or any(c in name for c in "/\\\x00"):
        raise ConfigError(f"dataset_name {name!r} must be a plain directory name (no path separators)")
    check_name_fits(name, what="dataset_name")
