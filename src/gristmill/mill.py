"""The ``Mill``: the one object a user creates to generate datasets and run workflows."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from gristmill.config.dataset import DatasetConfig
from gristmill.config.models import ModelConfig, ModelProvider
from gristmill.config.run import RunConfig
from gristmill.engine.dataset_run import (
    DatasetIdentity,
    DatasetRun,
    dataset_identity,
    resume_mismatches,
    verify_batches,
)
from gristmill.engine.loop import BackgroundLoop
from gristmill.engine.progress import ProgressReporter, default_progress
from gristmill.errors import ArtifactError, ConfigError, ResumeError
from gristmill.results import DatasetResults
from gristmill.storage.layout import DatasetLayout
from gristmill.storage.metadata import DatasetMetadata

if TYPE_CHECKING:
    from gristmill.workflow.composite import CompositeWorkflow


class ResumeMode(StrEnum):
    """What to do with what an earlier run left on disk (same meaning for ``create`` and ``run``).

    - ``NEVER``: never continue; never overwrite either (a new directory is used).
    - ``IF_POSSIBLE``: continue when the stored run matches; otherwise start fresh and say why.
    - ``ALWAYS``: continue, or raise ``ResumeError`` saying what differs.
    """

    NEVER = "never"
    IF_POSSIBLE = "if-possible"
    ALWAYS = "always"


@dataclass(frozen=True)
class _Target:
    layout: DatasetLayout
    resume: bool
    previous_caches: tuple[Path, ...] = ()  # a fresh run starts from the responses earlier runs paid for


class Mill:
    """Generates datasets under ``artifact_path`` and composes workflows.

    >>> mill = Mill(artifact_path="artifacts")            # doctest: +SKIP
    >>> results = mill.create(config, num_records=1000)     # doctest: +SKIP
    """

    def __init__(self, artifact_path: str | Path = "artifacts", *, run_config: RunConfig | None = None,
                 model_providers: list[ModelProvider] | str | Path | None = None,
                 model_configs: list[ModelConfig] | str | Path | None = None) -> None:
        self.artifact_path = Path(artifact_path)
        self.run_config = run_config or RunConfig()
        self._model_providers = model_providers
        self._model_configs = model_configs
        self._loop = BackgroundLoop()
        self._llm: Any = None

    # -- datasets ----------------------------------------------------------------------------
    def create(self, config: DatasetConfig, *, num_records: int, dataset_name: str = "dataset",
               resume: ResumeMode | str = ResumeMode.NEVER) -> DatasetResults:
        """Generate ``num_records`` rows into ``<artifact_path>/<dataset_name>``.

        With ``resume``, continue a run that crashed or was stopped, or extend a dataset to a
        larger ``num_records``; a complete dataset resumes as a no-op.
        """
        mode = _resume_mode(resume)
        _check_num_records(num_records)
        _check_dataset_name(dataset_name)
        self.validate(config)
        identity = dataset_identity(config)
        target = self._choose_target(dataset_name, mode, identity, num_records)
        run = DatasetRun(config, layout=target.layout, dataset_name=dataset_name, num_records=num_records,
                         run_config=self.run_config, loop=self._loop, llm=self._llm_runtime(config),
                         progress=self._progress(), identity=identity, import_caches=target.previous_caches)
        meta = run.execute(resume=target.resume)
        results = DatasetResults(target.layout.root, meta, generated_rows=run.generated_rows,
                                 run_usage=run.run_usage)
        if self.run_config.analysis:
            results.load_analysis()
        return results

    def preview(self, config: DatasetConfig, num_records: int = 10) -> pd.DataFrame:
        """Generate ``num_records`` rows in memory; nothing is written."""
        from gristmill.engine.preview import preview_rows

        _check_num_records(num_records)
        self.validate(config)
        return preview_rows(config, num_records=num_records, run_config=self.run_config, loop=self._loop,
                            llm=self._llm_runtime(config))

    def validate(self, config: DatasetConfig) -> None:
        """Static checks (column graph, seed readable, model aliases known); raises ConfigError."""
        from gristmill.engine.batches import check_columns
        from gristmill.engine.seeds import seed_column_names

        if not isinstance(config, DatasetConfig):
            raise ConfigError(f"expected a DatasetConfig (use ConfigBuilder(...).build()), got {type(config).__name__}")
        if not config.columns:
            raise ConfigError("the config has no columns; add at least one with add_column(...)")
        seed_columns = seed_column_names(config.seed) if config.seed is not None else []
        check_columns(config, seed_columns)
        aliases = {a for c in config.columns for a in c.model_aliases()}
        if aliases:
            self._llm_runtime(config).check_aliases(aliases, config.models)

    def _choose_target(self, name: str, mode: ResumeMode, identity: DatasetIdentity, num_records: int) -> _Target:
        layout = DatasetLayout(self.artifact_path / name)
        if layout.is_empty():
            if mode is ResumeMode.ALWAYS:
                raise ResumeError(f"resume=ALWAYS but {layout.root} holds no dataset to resume; use "
                                  "resume=IF_POSSIBLE or NEVER to start one")
            return _Target(layout, resume=False)
        if mode is ResumeMode.NEVER:
            fresh = self._fresh_layout(name)
            warnings.warn(f"{layout.root} already holds data; writing to {fresh.root} instead (pass "
                          "resume=IF_POSSIBLE to continue the existing dataset)", stacklevel=3)
            return _Target(fresh, resume=False)
        if mode is ResumeMode.ALWAYS:
            reasons = self._resume_blockers(layout, identity, num_records)  # ArtifactError propagates
            if reasons:
                raise ResumeError(f"cannot resume {layout.root}: " + "; ".join(reasons))
            return _Target(layout, resume=True)
        return self._if_possible(name, layout, identity, num_records)

    def _if_possible(self, name: str, layout: DatasetLayout, identity: DatasetIdentity,
                     num_records: int) -> _Target:
        """Continue the newest run under ``name`` (or an earlier fresh start, ``name_<timestamp>``)
        that matches; else start fresh, seeded with their paid responses, saying why."""
        candidates = [layout, *self._earlier_fresh_starts(name)]
        reasons: list[str] = []
        for candidate in candidates:
            try:
                blockers = self._resume_blockers(candidate, identity, num_records)
            except ArtifactError as exc:  # unusable stored state: start fresh elsewhere, deleting nothing
                blockers = [str(exc)]
            if not blockers:
                if candidate is not layout:
                    warnings.warn(f"{layout.root} does not match ({'; '.join(reasons)}); continuing the matching "
                                  f"earlier run in {candidate.root}", stacklevel=4)
                return _Target(candidate, resume=True)
            if candidate is layout:
                reasons = blockers
        fresh = self._fresh_layout(name)
        warnings.warn(f"not resuming {layout.root} ({'; '.join(reasons)}); starting fresh in {fresh.root}",
                      stacklevel=4)
        # Unchanged LLM requests of the new run are served from the earlier runs' responses.
        caches = tuple(c.response_cache_path for c in candidates if c.response_cache_path.is_file())
        return _Target(fresh, resume=False, previous_caches=caches)

    def _earlier_fresh_starts(self, name: str, *, limit: int = 5) -> list[DatasetLayout]:
        """``<name>_<timestamp>`` directories made by earlier fresh starts, newest first."""
        pattern = re.compile(rf"{re.escape(name)}_(\d{{8}}-\d{{6}})(?:-(\d+))?")
        stamped = [(match[1], int(match[2] or 1), path) for path in self.artifact_path.glob(f"{name}_*")
                   if path.is_dir() and (match := pattern.fullmatch(path.name))]
        found = [path for _, _, path in sorted(stamped, reverse=True)]
        return [DatasetLayout(p) for p in found[:limit]]

    def _resume_blockers(self, layout: DatasetLayout, identity: DatasetIdentity, num_records: int) -> list[str]:
        if not layout.metadata_path.exists():
            raise ArtifactError(f"{layout.root} is not empty but has no metadata.json, so it is not a gristmill "
                                "dataset; choose another dataset_name or move the directory away")
        meta = DatasetMetadata.load(layout.metadata_path)
        reasons = resume_mismatches(meta, identity, self.run_config)
        if meta.actual_rows > num_records:
            reasons.append(f"it holds {meta.actual_rows} rows, more than the {num_records} requested")
        if not reasons:
            verify_batches(meta, layout)
        return reasons

    def _fresh_layout(self, name: str) -> DatasetLayout:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        candidate, n = self.artifact_path / f"{name}_{stamp}", 1
        while candidate.exists():
            n += 1
            candidate = self.artifact_path / f"{name}_{stamp}-{n}"
        return DatasetLayout(candidate)

    # -- workflows ---------------------------------------------------------------------------
    def compose_workflow(self, name: str) -> CompositeWorkflow:
        """A new composite workflow named ``name`` (its directory: ``<artifact_path>/<name>``)."""
        from gristmill.workflow.composite import CompositeWorkflow

        return CompositeWorkflow(self, name)

    # -- shared services ---------------------------------------------------------------------
    def _progress(self) -> ProgressReporter:
        return default_progress(self.run_config.show_progress)

    def _llm_runtime(self, config: DatasetConfig | None = None) -> Any:
        """The Mill's LLM runtime (clients, throttles), created on first use by an LLM column."""
        if config is not None and not any(c.model_aliases() for c in config.columns):
            return self._llm
        if self._llm is None:
            from gristmill.llm.registry import ModelRegistry
            from gristmill.llm.runtime import LLMRuntime

            registry = ModelRegistry.load(providers=self._model_providers, models=self._model_configs)
            self._llm = LLMRuntime(registry)
        return self._llm

    def close(self) -> None:
        """Release connection pools and the background loop (``with Mill(...) as mill:`` does it for you)."""
        if self._llm is not None:
            self._loop.run(self._llm.aclose())
            self._llm = None
        self._loop.close()

    def __enter__(self) -> Mill:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_workflow(path: str | Path, *, mill: Mill | None = None) -> CompositeWorkflow:
    """A ``CompositeWorkflow`` from a YAML workflow file; paths in it are relative to the file.

    Without ``mill``, one is made from the file's ``artifact_path``, ``run`` and model files.
    """
    from gristmill.workflow.spec import build_workflow, load_workflow_spec, spec_run_config

    source = Path(path)
    spec = load_workflow_spec(source)
    base = source.resolve().parent
    if mill is None:
        mill = Mill((base / spec.artifact_path).resolve(), run_config=spec_run_config(spec),
                    model_providers=base / spec.model_providers if spec.model_providers else None,
                    model_configs=base / spec.model_configs if spec.model_configs else None)
    return build_workflow(spec, base_dir=base, mill=mill)


def _resume_mode(value: Any) -> ResumeMode:
    try:
        return ResumeMode(value)
    except ValueError:
        raise ConfigError(f"resume must be one of {', '.join(m.value for m in ResumeMode)}, got {value!r}") from None


def _check_num_records(num_records: Any) -> None:
    if isinstance(num_records, bool) or not isinstance(num_records, int) or num_records < 1:
        raise ConfigError(f"num_records must be a positive integer, got {num_records!r}")


def _check_dataset_name(name: str) -> None:
    if not name or name in {".", ".."} or "/" in name or "\\" in name or "\x00" in name:
        raise ConfigError(f"dataset_name {name!r} must be a plain directory name (no path separators)")
