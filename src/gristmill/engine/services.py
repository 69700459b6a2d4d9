"""What one ``Mill`` shares with every dataset and workflow stage it runs.

``EngineServices`` is the only object the workflow layer gets from the Mill: the event loop,
the LLM runtime (clients and throttles, built on first use), the batch executor
(``RunConfig.executor``), progress display, run options, response caches and the static checks
of a config. Nothing outside this module reaches into
a Mill's private state.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import shutil
import tempfile
import warnings
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gristmill.config.dataset import DatasetConfig
from gristmill.config.models import ModelConfig, ModelProvider
from gristmill.config.processors import DropColumnsProcessor, SchemaTransformProcessor
from gristmill.config.run import RunConfig
from gristmill.config.tools import ToolConfig, ToolProvider
from gristmill.engine.batches import check_columns
from gristmill.engine.loop import BackgroundLoop
from gristmill.engine.processors import columns_to_drop
from gristmill.engine.progress import ProgressReporter, default_progress
from gristmill.engine.template_check import check_struct_fields
from gristmill.errors import ArtifactError, ConfigError
from gristmill.storage.layout import fresh_sibling

if TYPE_CHECKING:
    from gristmill.engine.executor import BatchExecutor
    from gristmill.llm.cache import ResponseCache
    from gristmill.llm.runtime import LLMRuntime
    from gristmill.llm.types import ChatClient


@dataclass(frozen=True)
class ModelSources:
    """Where a Mill's models come from: lists, YAML files, or ``~/.gristmill`` (None); plus
    clients that replace the built-in ones for the providers they are keyed by."""

    providers: Sequence[ModelProvider] | str | Path | None = None
    models: Sequence[ModelConfig] | str | Path | None = None
    clients: Mapping[str, ChatClient] | None = None
    tool_providers: Sequence[ToolProvider] | str | Path | None = None
    tool_configs: Sequence[ToolConfig] | str | Path | None = None

    def __post_init__(self) -> None:
        # Checked now: the registry is read lazily, at the first LLM column, where a wrong type
        # would surface as a TypeError far from the argument that caused it.
        object.__setattr__(self, "providers", _model_source("model_providers", self.providers, ModelProvider))
        object.__setattr__(self, "models", _model_source("model_configs", self.models, ModelConfig))
        object.__setattr__(self, "tool_providers", _model_source("tool_providers", self.tool_providers, ToolProvider))
        object.__setattr__(self, "tool_configs", _model_source("tool_configs", self.tool_configs, ToolConfig))
        if self.clients is not None and not isinstance(self.clients, Mapping):
            raise ConfigError(f"clients must be a mapping of provider name to client, got "
                              f"{type(self.clients).__name__}; e.g. clients={{fm.name: fm}}")


def _model_source(argument: str, value: Any, kind: type[Any]) -> Any:
    """``value`` as the registry takes it: None, a YAML path or a list (one model is wrapped in one)."""
    if value is None or isinstance(value, str | Path):
        return value
    if isinstance(value, os.PathLike):
        return Path(value)
    if isinstance(value, kind):
        return [value]
    if isinstance(value, Sequence):
        return list(value)
    raise ConfigError(f"{argument} must be a list of {kind.__name__}, a YAML file path or None, "
                      f"got {type(value).__name__}")


# Processors known to leave the main table's columns alone; any other (a plugin's) may add columns.
_COLUMN_KEEPING_PROCESSORS = (DropColumnsProcessor, SchemaTransformProcessor)


def check_some_column_is_kept(config: DatasetConfig, seed_columns: Sequence[str]) -> None:
    """ConfigError when every column is dropped: such a run would report rows it never wrote
    (parquet files without columns), and every later resume would call its batches corrupt."""
    if any(not isinstance(p, _COLUMN_KEEPING_PROCESSORS) for p in config.processors):
        return
    names = list(dict.fromkeys([*seed_columns, *(o for c in config.columns for o in c.output_columns())]))
    flagged = [o for c in config.columns if c.drop for o in c.output_columns()]
    dropped = columns_to_drop(config.processors, names, flagged)
    if set(names) - set(dropped):
        return
    by_reason: dict[str, list[str]] = {}
    for name in names:
        by_reason.setdefault("drop=True" if name in flagged else _dropping_processor(config, name), []).append(name)
    reasons = "; ".join(f"{', '.join(map(repr, group))} ({reason})" for reason, group in by_reason.items())
    raise ConfigError(f"every column is dropped, so the dataset would have no columns: {reasons}; "
                      "keep at least one column (set drop=False on it, or leave it out of drop_columns)")


def _dropping_processor(config: DatasetConfig, name: str) -> str:
    """'processor <name>' of the first drop_columns processor whose patterns match ``name``."""
    for proc in config.processors:
        if isinstance(proc, DropColumnsProcessor) and any(fnmatch.fnmatchcase(name, p) for p in proc.column_names):
            return f"processor {proc.name!r}"
    return "dropped"


def uses_models(config: DatasetConfig) -> bool:
    """True when some column of ``config`` calls a model."""
    return any(column.model_aliases() for column in config.columns)


class EngineServices:
    """Event loop, LLM runtime, progress and caches shared by one Mill's runs."""

    def __init__(self, *, run_config: RunConfig, models: ModelSources | None = None) -> None:
        self.run_config = run_config
        self.models = models or ModelSources()
        self.loop = BackgroundLoop()
        self._llm: LLMRuntime | None = None
        self._executor: BatchExecutor | None = None
        if run_config.executor == "ray":
            from gristmill.engine.ray_executor import import_ray

            import_ray()  # without the extra: a ConfigError naming it now, before any work
        self._preview_cache: ResponseCache | None = None
        self._preview_cleanup: weakref.finalize[Any, Any] | None = None

    def llm(self) -> LLMRuntime:
        """The LLM runtime, created on first use (loading the model registry)."""
        if self._llm is None:
            from gristmill.llm.mcp import ToolRuntime
            from gristmill.llm.registry import ModelRegistry
            from gristmill.llm.runtime import LLMRuntime

            registry = ModelRegistry.load(providers=self.models.providers, models=self.models.models)
            tools = ToolRuntime.load(providers=self.models.tool_providers, configs=self.models.tool_configs)
            self._llm = LLMRuntime(registry, clients=self.models.clients, tools=tools)
        return self._llm

    def llm_for(self, config: DatasetConfig) -> LLMRuntime | None:
        """The LLM runtime when ``config`` has LLM columns, else None (no registry is loaded)."""
        return self.llm() if uses_models(config) else None

    def executor(self) -> BatchExecutor:
        """The executor ``RunConfig.executor`` names, built (and, for Ray, connected) on first use."""
        if self._executor is None:
            if self.run_config.executor == "ray":
                from gristmill.engine.ray_executor import RayExecutor

                self._executor = RayExecutor.connect(self.run_config.ray_address)
            else:
                from gristmill.engine.executor import LocalExecutor

                self._executor = LocalExecutor()
        return self._executor

    def progress(self) -> ProgressReporter:
        return default_progress(self.run_config.show_progress)

    def check_config(self, config: DatasetConfig, seed_columns: Sequence[str] | None) -> None:
        """Static checks, raising ConfigError: the column graph against ``seed_columns`` (skipped
        when they cannot be known yet, None), processors, fields read of struct columns
        (``{{ person.first_name }}``), and every model alias."""
        if not config.columns:
            raise ConfigError("the config has no columns; add at least one with add_column(...)")
        if seed_columns is not None:
            check_columns(config, seed_columns)
            check_some_column_is_kept(config, seed_columns)
        check_struct_fields(config)
        tool_columns = {c.name: a for c in config.columns if (a := getattr(c, "tool_alias", None)) is not None}
        if tool_columns and self.run_config.executor == "ray":
            name = next(iter(tool_columns))
            raise ConfigError(f"column {name!r} calls tools (tool_alias {tool_columns[name]!r}), which runs on the "
                              "local executor only: MCP sessions do not travel to Ray workers; use executor local")
        for tool_alias in sorted(set(tool_columns.values())):
            self.llm().tools.check_alias(tool_alias)  # tool use (docs/tools.md)
        aliases = {alias for column in config.columns for alias in column.model_aliases()}
        if aliases:
            llm = self.llm()
            llm.check_aliases(aliases, config.models)
            if self.run_config.executor == "ray":  # each worker would load its own copy of the model
                from gristmill.engine.ray_executor import refuse_local_models

                refuse_local_models(config, llm.registry, self.models.clients)

    @contextlib.contextmanager
    def response_cache(self, path: Path, *, needed: bool, import_from: Sequence[Path] = (),
                       move_damaged: bool = True) -> Iterator[ResponseCache | None]:
        """The response cache at ``path`` while a run needs one (None when nothing calls a model
        or caching is off). ``import_from``: earlier caches whose answers a fresh run starts from.

        A damaged cache file is moved aside (``<name>.damaged-<timestamp>``, kept, never deleted)
        with a warning and a new one started: its answers are paid again, the run goes on. With
        ``move_damaged=False`` (``resume=always``) it raises ``ArtifactError`` naming the file."""
        if not needed or not self.run_config.cache:
            yield None
            return
        cache = _open_cache(path, move_damaged=move_damaged)
        for earlier in import_from:
            try:
                cache.import_from(earlier)
            except ArtifactError as exc:  # an unreadable old cache only means paying again
                warnings.warn(f"not reusing answers from {earlier}: {exc}", stacklevel=3)
        try:
            yield cache
        finally:
            cache.close()

    def preview_cache(self) -> ResponseCache | None:
        """The response cache every preview of this Mill shares (None with ``cache=False``).

        It lives in a private temporary directory for the Mill's life and is removed by
        ``close()`` (or when the Mill is garbage-collected): a preview writes nothing where
        datasets live, yet repeating one, or growing it, pays only for new requests.
        """
        if not self.run_config.cache:
            return None
        if self._preview_cache is None:
            from gristmill.llm.cache import ResponseCache

            directory = Path(tempfile.mkdtemp(prefix="gristmill-preview-"))
            self._preview_cache = ResponseCache(directory / "response-cache.sqlite")
            self._preview_cleanup = weakref.finalize(self, _remove_preview_cache, self._preview_cache, directory)
        return self._preview_cache

    def preview_cache_path(self) -> Path | None:
        """Where the preview cache lives, once a preview has opened it."""
        return self._preview_cache.path if self._preview_cache is not None else None

    def close(self) -> None:
        """Release connection pools, the preview cache and the background loop."""
        if self._preview_cleanup is not None:
            self._preview_cleanup()  # runs once; a later finalizer call does nothing
            self._preview_cache = self._preview_cleanup = None
        if self._llm is not None:
            self.loop.run(self._llm.aclose())
            self._llm = None
        if self._executor is not None:
            self._executor.close()
            self._executor = None
        self.loop.close()


def _remove_preview_cache(cache: ResponseCache, directory: Path) -> None:
    """Close the preview cache and delete its temporary directory (never references the Mill)."""
    cache.close()
    shutil.rmtree(directory, ignore_errors=True)


def _open_cache(path: Path, *, move_damaged: bool) -> ResponseCache:
    from gristmill.llm.cache import ResponseCache

    try:
        return ResponseCache(path)
    except ArtifactError as exc:
        if not move_damaged or not path.is_file():
            raise
        aside = fresh_sibling(path.with_name(f"{path.name}.damaged"))
        path.rename(aside)
        warnings.warn(f"{exc}; moved it to {aside.name} and started a new response cache: requests it "
                      "held are paid again", stacklevel=4)
        return ResponseCache(path)
