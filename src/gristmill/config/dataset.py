"""``DatasetConfig`` (what a dataset contains) and ``ConfigBuilder`` (a fluent way to write one)."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    Field,
    PrivateAttr,
    SerializeAsAny,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from gristmill.config.base import ConfigModel
from gristmill.config.columns import ColumnConfig, parse_column
from gristmill.config.constraints import Constraint
from gristmill.config.errors_format import config_error
from gristmill.config.fingerprint import FINGERPRINT_VERSION, sha256_json, short_hash
from gristmill.config.models import ModelConfig
from gristmill.config.processors import ProcessorConfig, parse_processor
from gristmill.config.seeds import SamplingStrategy, SeedConfig, SelectionStrategy
from gristmill.errors import ConfigError


class DatasetConfig(ConfigModel):
    """Everything that decides what a dataset contains. Build one with ``ConfigBuilder`` or
    load one with ``DatasetConfig.from_yaml(path)``."""

    columns: list[SerializeAsAny[ColumnConfig]] = Field(default_factory=list,
                                                        description="Columns, in any order.")
    constraints: list[Annotated[Constraint, Field(discriminator="constraint_type")]] = Field(
        default_factory=list, description="Constraints on sampler columns (rejection sampling).")
    processors: list[SerializeAsAny[ProcessorConfig]] = Field(
        default_factory=list, description="Per-batch processors, run after all columns.")
    seed: SeedConfig | None = Field(default=None, description="Seed dataset the columns build on.")
    models: list[ModelConfig] = Field(default_factory=list, description="Model configs local to this dataset.")
    description: str | None = Field(default=None, description="Free text; not fingerprinted.")
    # (as written in the config file, as resolved from its folder): see ``_relative_to_file``.
    _seed_path_as_written: tuple[str, str] | None = PrivateAttr(default=None)

    @field_validator("columns", mode="before")
    @classmethod
    def _parse_columns(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        parsed = []
        for index, item in enumerate(value):
            try:
                parsed.append(parse_column(item))
            except ValidationError as exc:
                name = item.get("name") if isinstance(item, dict) else None
                raise config_error(exc, source=f"column {name!r}" if name else "column",
                                   prefix=("columns", index)) from None
        return parsed

    @field_validator("processors", mode="before")
    @classmethod
    def _parse_processors(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        parsed = []
        for index, item in enumerate(value):
            try:
                parsed.append(parse_processor(item))
            except ConfigError as exc:
                raise ConfigError(f"invalid config: processors[{index}]: {exc}") from None
            except ValidationError as exc:
                name = item.get("name") if isinstance(item, dict) else None
                raise config_error(exc, source=f"processor {name!r}" if name else "processor",
                                   prefix=("processors", index)) from None
        return parsed

    @model_validator(mode="after")
    def _check_unique_names(self) -> DatasetConfig:
        seen: dict[str, str] = {}
        for column in self.columns:
            for out in column.output_columns():
                if out in seen:
                    raise ConfigError(f"duplicate column name {out!r} (columns {seen[out]!r} and {column.name!r}); "
                                      "rename one of them")
                seen[out] = column.name
        names = [p.name for p in self.processors]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"duplicate processor name(s) {', '.join(map(repr, dupes))}; "
                              "processor names must be unique")
        return self

    @field_serializer("seed")
    def _serialize_seed(self, seed: SeedConfig | None) -> Any:
        if seed is None:
            return None
        data = seed.model_dump(mode="json", exclude={"source"})
        data["source"] = {"dataframe_sha256": dataframe_digest(seed.source)} if seed.is_dataframe else seed.source
        return data

    # -- identity ---------------------------------------------------------------------------
    def fingerprint_components(self, *, include_seed_source: bool = True) -> dict[str, Any]:
        """Per-part digests of the data-relevant fields, so a change can be named precisely:
        ``columns`` maps column -> field -> digest.

        A seed file loaded from a config file enters as the path written there (relative to
        that file), not as resolved from the working directory: a rerun from another folder is
        the same config. Its content is covered by ``seed_digest``, beside the fingerprint."""
        columns = {}
        for column in self.columns:
            payload = column.fingerprint_payload()
            columns[column.name] = {key: short_hash(value) for key, value in sorted(payload.items())}
        seed: Any = None
        if self.seed is not None:
            seed = self._serialize_seed(self.seed)
            written = self._seed_path_as_written
            if written is not None and self.seed.source == written[1]:  # not changed since loading
                seed["source"] = written[0]
            if self.seed.selection_strategy is not None:
                seed["selection_strategy"] = self.seed.selection_strategy.fingerprint_payload()
            if not include_seed_source:
                seed.pop("source")
        return {
            "version": FINGERPRINT_VERSION,
            "columns": columns,
            "constraints": short_hash([c.fingerprint_payload() for c in self.constraints]),
            "processors": {p.name: short_hash(p.fingerprint_payload()) for p in self.processors},
            "seed": short_hash(seed),
            "models": {m.alias: short_hash(m.fingerprint_payload()) for m in self.models},
        }

    def fingerprint(self, *, include_seed_source: bool = True) -> str:
        """sha256 over the canonical JSON of the data-relevant fields (see ``config.fingerprint``)."""
        return sha256_json(self.fingerprint_components(include_seed_source=include_seed_source))

    # -- (de)serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict; secrets are never included (API keys live in provider registries)."""
        return self.model_dump(mode="json", exclude_none=True)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "config") -> DatasetConfig:
        """Validate a dict, raising ConfigError that names each bad field."""
        if not isinstance(data, dict):
            raise ConfigError(f"invalid {source}: expected a mapping at the top level, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise config_error(exc, source=source) from None

    def to_yaml(self, path: str | Path | None = None) -> str:
        """YAML text of the config (written to ``path`` when given)."""
        self._refuse_dataframe_seed("YAML")
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def to_json(self, path: str | Path | None = None) -> str:
        """JSON text of the config (written to ``path`` when given)."""
        self._refuse_dataframe_seed("JSON")
        text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    @classmethod
    def from_yaml(cls, path_or_text: str | Path) -> DatasetConfig:
        """Load from a YAML file path (or YAML text containing a newline)."""
        text, source = _read_text(path_or_text)
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source} is not valid YAML: {exc}") from None
        return _relative_to_file(cls.from_dict(data, source=source), path_or_text, source)

    @classmethod
    def from_json(cls, path_or_text: str | Path) -> DatasetConfig:
        """Load from a JSON file path (or JSON text)."""
        text, source = _read_text(path_or_text)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source} is not valid JSON: {exc}") from None
        return _relative_to_file(cls.from_dict(data, source=source), path_or_text, source)

    def _refuse_dataframe_seed(self, fmt: str) -> None:
        if self.seed is not None and self.seed.is_dataframe:
            raise ConfigError(f"cannot write a config with an in-memory DataFrame seed to {fmt}; "
                              "save the DataFrame as parquet and use its path as the seed source")

    def column(self, name: str) -> ColumnConfig:
        """The column config named ``name``."""
        for column in self.columns:
            if column.name == name:
                return column
        raise ConfigError(f"no column named {name!r}; columns: {', '.join(c.name for c in self.columns)}")


def _relative_to_file(config: DatasetConfig, path_or_text: str | Path, source: str) -> DatasetConfig:
    """A relative seed path in a config file means relative to that file (as a user reading
    the file would expect), unless it already names something from the working directory.
    The path as written is kept for the fingerprint, which must not depend on the folder the
    config was loaded from. A SQL validator's ``database`` follows the same rule (resolved when
    it is opened, see ``SQLValidatorParams.database_path``)."""
    if source != "config":
        from gristmill.config.validation import SQLValidatorParams

        for column in config.columns:
            params = getattr(column, "params", None)
            if isinstance(params, SQLValidatorParams):
                params._config_dir = str(Path(path_or_text).parent)
    seed = config.seed
    if source == "config" or seed is None or seed.is_dataframe:
        return config
    relative = Path(seed.source)
    if relative.is_absolute() or relative.exists():
        return config
    candidate = Path(path_or_text).parent / relative
    if candidate.exists() or any(ch in seed.source for ch in "*?["):
        written = seed.source
        seed.source = str(candidate)
        config._seed_path_as_written = (written, seed.source)
    return config


def _read_text(path_or_text: str | Path) -> tuple[str, str]:
    if isinstance(path_or_text, str) and ("\n" in path_or_text or path_or_text.lstrip().startswith("{")):
        return path_or_text, "config"
    path = Path(path_or_text)
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror or exc}") from None


def dataframe_digest(frame: Any) -> str:
    """Content digest of an in-memory DataFrame (columns, dtypes and values)."""
    import pandas as pd

    hasher = hashlib.sha256()
    hasher.update(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
    try:
        hasher.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    except TypeError:  # unhashable cells (lists, dicts): fall back to their JSON text
        hasher.update(frame.to_json(orient="records", date_format="iso").encode())
    return hasher.hexdigest()


class ConfigBuilder:
    """Fluent construction of a ``DatasetConfig``.

    >>> cfg = (ConfigBuilder()
    ...        .add_column(name="n", column_type="sampler", sampler_type="uniform",
    ...                    params={"low": 1, "high": 6, "integer": True})
    ...        .add_column(name="msg", column_type="expression", expr="rolled {{ n }}")
    ...        .build())
    """

    def __init__(self, models: list[ModelConfig] | None = None) -> None:
        self._columns: list[ColumnConfig] = []
        self._constraints: list[Any] = []
        self._processors: list[Any] = []
        self._seed: SeedConfig | None = None
        self._seed_path_as_written: tuple[str, str] | None = None  # of a config loaded from a file
        self._models: list[ModelConfig] = list(models or [])
        self._description: str | None = None

    @classmethod
    def from_config(cls, config: DatasetConfig) -> ConfigBuilder:
        """A builder holding a deep copy of ``config``."""
        builder = cls(models=[m.model_copy(deep=True) for m in config.models])
        builder._columns = [c.model_copy(deep=True) for c in config.columns]
        builder._constraints = [c.model_copy(deep=True) for c in config.constraints]
        builder._processors = [p.model_copy(deep=True) for p in config.processors]
        builder._seed = config.seed.model_copy() if config.seed else None
        builder._seed_path_as_written = config._seed_path_as_written
        builder._description = config.description
        return builder

    def add_column(self, column: ColumnConfig | dict[str, Any] | None = None, /, **kwargs: Any) -> ConfigBuilder:
        """Add a column object, or build one from keyword arguments with ``column_type=``."""
        data = column if column is not None else kwargs
        if column is not None and kwargs:
            raise ConfigError("add_column takes a column object or keyword arguments, not both")
        try:
            self._columns.append(parse_column(copy.deepcopy(data) if isinstance(data, dict) else data))
        except ValidationError as exc:
            name = data.get("name") if isinstance(data, dict) else None
            raise config_error(exc, source=f"column {name!r}", prefix=("columns", len(self._columns))) from None
        return self

    def add_constraint(self, constraint: Any = None, /, **kwargs: Any) -> ConfigBuilder:
        """Add a constraint object, or one from keyword arguments with ``constraint_type=``."""
        self._constraints.append(constraint if constraint is not None else kwargs)
        return self

    def add_processor(self, processor: Any = None, /, **kwargs: Any) -> ConfigBuilder:
        """Add a processor object, or one from keyword arguments with ``processor_type=``."""
        self._processors.append(processor if processor is not None else kwargs)
        return self

    def with_seed_dataset(self, source: Any, *, sampling_strategy: SamplingStrategy | str = SamplingStrategy.ORDERED,
                          selection_strategy: SelectionStrategy | None = None, reader: str | None = None,
                          reader_options: dict[str, Any] | None = None) -> ConfigBuilder:
        """Use existing rows (a path, glob, parquet directory, hf:// path or DataFrame) as the seed;
        ``reader`` names the seed reader (``"directory"``, ``"chat"``, ``"hf"``...) with its options."""
        try:
            self._seed = SeedConfig(source=source, sampling_strategy=SamplingStrategy(sampling_strategy),
                                    selection_strategy=selection_strategy, reader=reader,
                                    reader_options=dict(reader_options or {}))
            self._seed_path_as_written = None
        except (ValidationError, ValueError) as exc:
            if isinstance(exc, ValidationError):
                raise config_error(exc, source="seed dataset") from None
            raise ConfigError(f"invalid seed dataset: {exc}") from None
        return self

    def with_description(self, text: str) -> ConfigBuilder:
        self._description = text
        return self

    def build(self) -> DatasetConfig:
        """Validate and return the config (a new object; the builder can keep being used)."""
        data: dict[str, Any] = {
            "columns": [c.model_copy(deep=True) for c in self._columns],
            "constraints": copy.deepcopy(self._constraints),
            "processors": copy.deepcopy(self._processors),
            "seed": self._seed,
            "models": [m.model_copy(deep=True) for m in self._models],
            "description": self._description,
        }
        try:
            config = DatasetConfig.model_validate(data)
        except ValidationError as exc:
            raise config_error(exc) from None
        config._seed_path_as_written = self._seed_path_as_written
        return config
