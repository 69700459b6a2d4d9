"""What one ``Mill`` shares with every dataset and workflow stage it runs.

``EngineServices`` is the only object the workflow layer gets from the Mill: the event loop,
the LLM runtime (clients and throttles, built on first use), progress display, run options,
response caches and the static checks of a config. Nothing outside this module reaches into
a Mill's private state.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gristmill.config.dataset import DatasetConfig
from gristmill.config.models import ModelConfig, ModelProvider
from gristmill.config.run import RunConfig
from gristmill.engine.batches import check_columns
from gristmill.engine.loop import BackgroundLoop
from gristmill.engine.progress import ProgressReporter, default_progress
from gristmill.errors import ArtifactError, ConfigError

if TYPE_CHECKING:
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

    def llm(self) -> LLMRuntime:
        """The LLM runtime, created on first use (loading the model registry)."""
        if self._llm is None:
            from gristmill.llm.registry import ModelRegistry
            from gristmill.llm.runtime import LLMRuntime

            registry = ModelRegistry.load(providers=self.models.providers, models=self.models.models)
            self._llm = LLMRuntime(registry, clients=self.models.clients)
        return self._llm

    def llm_for(self, config: DatasetConfig) -> LLMRuntime | None:
        """The LLM runtime when ``config`` has LLM columns, else None (no registry is loaded)."""
        return self.llm() if uses_models(config) else None

    def progress(self) -> ProgressReporter:
        return default_progress(self.run_config.show_progress)

    def check_config(self, config: DatasetConfig, seed_columns: Sequence[str] | None) -> None:
        """Static checks, raising ConfigError: the column graph against ``seed_columns`` (skipped
        when they cannot be known yet, None), processors, and every model alias."""
        if not config.columns:
            raise ConfigError("the config has no columns; add at least one with add_column(...)")
        if seed_columns is not None:
            check_columns(config, seed_columns)
        aliases = {alias for column in config.columns for alias in column.model_aliases()}
        if aliases:
            self.llm().check_aliases(aliases, config.models)

    @contextlib.contextmanager
    def response_cache(self, path: Path, *, needed: bool,
                       import_from: Sequence[Path] = ()) -> Iterator[ResponseCache | None]:
        """The response cache at ``path`` while a run needs one (None when nothing calls a model
        or caching is off). ``import_from``: earlier caches whose answers a fresh run starts from."""
        if not needed or not self.run_config.cache:
            yield None
            return
        from gristmill.llm.cache import ResponseCache

        cache = ResponseCache(path)
        for earlier in import_from:
            try:
                cache.import_from(earlier)
            except ArtifactError as exc:  # an unreadable old cache only means paying again
                warnings.warn(f"not reusing answers from {earlier}: {exc}", stacklevel=3)
        try:
            yield cache
        finally:
            cache.close()

    def close(self) -> None:
        """Release connection pools and the background loop."""
        if self._llm is not None:
            self.loop.run(self._llm.aclose())
            self._llm = None
        self.loop.close()

