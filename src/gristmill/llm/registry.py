"""Which alias means which model on which provider.

Sources, later ones winning per name: ``providers.yaml`` / ``models.yaml`` in the gristmill
home (``$GRISTMILL_HOME``, else ``~/.gristmill``), or lists/paths passed to ``Mill(...)``,
then the ``models`` of a dataset config (``extra_models`` of :meth:`ModelRegistry.resolve`).

``providers.yaml``::

    - name: openai
      endpoint: https://api.openai.com/v1
      api_key: $OPENAI_API_KEY      # a variable; a literal key as is, or 'literal:...'

``models.yaml``::

    - alias: default
      model: gpt-4o-mini
      provider: openai
      inference_parameters: {temperature: 0.7}

When no provider is configured at all, alias ``default`` resolves to the embedded local
model (SmolLM2-135M on llama.cpp), with a one-line warning.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gristmill.config.models import ModelConfig, ModelProvider
from gristmill.errors import ConfigError
from gristmill.llm.local import LOCAL_MODEL_NAME

logger = logging.getLogger("gristmill")

LOCAL_PROVIDER = ModelProvider(name="local", provider_type="local")
LOCAL_DEFAULT = ModelConfig(alias="default", model=LOCAL_MODEL_NAME, provider="local", max_parallel_requests=1)


@dataclass(frozen=True)
class ResolvedModel:
    """A model config with its provider."""

    model: ModelConfig
    provider: ModelProvider

    @property
    def alias(self) -> str:
        return self.model.alias

    @property
    def identity(self) -> str:
        """Provider name + model name (+ the provider's ``cache_namespace``): what the response
        cache keys on. Never the endpoint: a trailing slash, ``localhost`` for ``127.0.0.1`` or a
        local server back on another port must not re-pay cached answers."""
        namespace = self.provider.cache_namespace
        suffix = "" if namespace is None else f"|ns={namespace}"
        return f"{self.provider.name}|{self.model.model}{suffix}"

    @property
    def throttle_key(self) -> tuple[str, str]:
        return (self.provider.name, self.model.model)


def gristmill_home(home: str | Path | None = None) -> Path:
    """``home``, else ``$GRISTMILL_HOME``, else ``~/.gristmill``."""
    if home is not None:
        return Path(home)
    env = os.environ.get("GRISTMILL_HOME")
    return Path(env) if env else Path.home() / ".gristmill"


def _read_list(path: Path, key: str) -> list[Any]:
    try:
        data = yaml.safe_load(path.read_text()) or []
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        # from None, and no text of the error: PyYAML quotes the offending line, which may be
        # the one holding a literal API key.
        raise ConfigError(f"{path}: {_yaml_error_location(exc)}; fix the YAML there "
                          "(the line is not shown: it may hold an API key)") from None
    if isinstance(data, dict):
        data = data.get(key, [data] if "name" in data or "alias" in data else [])
    if not isinstance(data, list):
        raise ConfigError(f"{path}: expected a list of {key}")
    return data


def _yaml_error_location(exc: yaml.YAMLError) -> str:
    """'invalid YAML at line 4, column 1 (in what starts at line 3, column 12)': positions only."""
    problem = getattr(exc, "problem_mark", None)
    context = getattr(exc, "context_mark", None)
    if problem is None:
        return "invalid YAML"
    text = f"invalid YAML at line {problem.line + 1}, column {problem.column + 1}"
    if context is not None and context.line != problem.line:
        text += f" (in what starts at line {context.line + 1}, column {context.column + 1})"
    return text


def load_items(source: Any, cls: type[Any], key: str, default_path: Path) -> list[Any]:
    """Entries of ``cls`` from a list, a YAML file (a list, or a mapping with a ``key`` list), or
    ``default_path`` when ``source`` is None (none when it does not exist). Errors never quote a
    value: entries may hold keys and tokens."""
    if source is None:
        if not default_path.exists():
            return []
        source = default_path
    if isinstance(source, str | Path):
        where = str(source)
        source = _read_list(Path(source), key)
    else:
        where = f"{key} argument"
    items = []
    for index, item in enumerate(source):
        if isinstance(item, cls):
            items.append(item)
            continue
        try:
            items.append(cls.model_validate(item))
        except ValidationError as exc:
            # Never echo the entry or pydantic's input values: they may hold a literal API key.
            raise ConfigError(f"{where}: invalid entry {_entry_name(item, index, key)}: "
                              f"{_validation_summary(exc)}") from None
    return items


def _entry_name(item: Any, index: int, key: str) -> str:
    """``'openai'`` (by name or alias), else ``#2`` (position in the list)."""
    if isinstance(item, dict):
        for field in ("name", "alias"):
            if isinstance(item.get(field), str):
                return repr(item[field])
    return f"#{index + 1} of the {key}"


def _validation_summary(exc: ValidationError) -> str:
    """'field: message; ...' without the input values."""
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'entry'}: {err['msg']}"
                     for err in exc.errors(include_input=False, include_url=False))


class ModelRegistry:
    """Providers by name and models by alias."""

    def __init__(self, providers: Iterable[ModelProvider], models: Iterable[ModelConfig]) -> None:
        self.providers: dict[str, ModelProvider] = {p.name: p for p in providers}
        self.models: dict[str, ModelConfig] = {m.alias: m for m in models}
        self._configured = bool(self.providers)
        self.providers.setdefault(LOCAL_PROVIDER.name, LOCAL_PROVIDER)
        self._warned = False
        # False when a client of the caller's answers the 'local' provider: the warning about the
        # embedded model would then be wrong.
        self.warn_local = True

    @classmethod
    def load(cls, *, providers: Sequence[ModelProvider] | str | Path | None = None,
             models: Sequence[ModelConfig] | str | Path | None = None,
             home: str | Path | None = None) -> ModelRegistry:
        """Read providers and models from arguments (lists or YAML paths), else from the home dir.

        >>> ModelRegistry.load(providers=[ModelProvider(name="vllm", endpoint="http://gpu:8000/v1")],
        ...                    models=[ModelConfig(alias="default", model="qwen", provider="vllm")]).aliases()
        ['default']
        """
        root = gristmill_home(home)
        return cls(load_items(providers, ModelProvider, "providers", root / "providers.yaml"),
                   load_items(models, ModelConfig, "models", root / "models.yaml"))

    def aliases(self, extra_models: Iterable[ModelConfig] = ()) -> list[str]:
        names = set(self.models) | {m.alias for m in extra_models}
        if not self._configured:
            names.add("default")
        return sorted(names)

    def resolve(self, alias: str, extra_models: Iterable[ModelConfig] = ()) -> ResolvedModel:
        """The model behind ``alias``; ConfigError naming the known aliases when there is none."""
        extra = {m.alias: m for m in extra_models}
        model = extra.get(alias) or self.models.get(alias)
        if model is None and alias == "default" and not self._configured:
            self._warn_local()
            model = LOCAL_DEFAULT
        if model is None:
            known = ", ".join(self.aliases(extra.values())) or "none"
            raise ConfigError(f"unknown model alias {alias!r}; known aliases: {known}. Add it to models.yaml "
                              f"in {gristmill_home()} or pass it in the config's models.")
        provider = self.providers.get(model.provider)
        if provider is None:
            raise ConfigError(f"model alias {alias!r} uses provider {model.provider!r}, which is not configured; "
                              f"known providers: {', '.join(sorted(self.providers))}")
        return ResolvedModel(model=model, provider=provider)

    def _warn_local(self) -> None:
        if self.warn_local and not self._warned:
            self._warned = True
            logger.warning("gristmill: no model provider configured; alias 'default' uses the embedded "
                           "SmolLM2-135M, a tiny model for trying gristmill out")
