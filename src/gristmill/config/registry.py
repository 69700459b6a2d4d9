"""The one registry of column types, processors and seed readers, built-ins and plugins alike.

A column type is registered once, pairing its config model with its generator::

    def register(registry: Registry) -> None:
        registry.add_column_type(ShoutColumn, generator="my_pkg.gen:ShoutGenerator")
        registry.add_processor_type(UpperProcessor, implementation="my_pkg.proc:Upper")
        registry.add_seed_reader("tsv", suffixes=(".tsv",), read="my_pkg.seeds:read_tsv")

Implementations are given as ``"module:attr"`` references (or the objects themselves) and are
resolved by the engine when a run needs them, so config parsing never imports the engine.

Built-in types register through :func:`gristmill.config.builtins.register`, a function of this
exact shape. Third-party packages name theirs in the ``gristmill.plugins`` entry point group
(see ``docs/plugins.md``); every entry point names a ``register(registry)`` callable. Built-ins
load on the first lookup; plugins on the first lookup that misses (or the first listing of all
types), never at ``import gristmill``. A plugin that fails to load is a warning naming its entry
point, so one broken package cannot stop unrelated work.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from gristmill.config.base import ConfigModel, import_reference
from gristmill.config.trust import add_trusted_source
from gristmill.errors import ConfigError, GristmillError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

PLUGIN_GROUP = "gristmill.plugins"
BUILTIN_PLUGINS = ("gristmill.config.builtins:register",)

# An implementation: "module:attr", or the object itself. Config cannot name the engine's types,
# so the engine checks what it resolves (``engine/generators/base.py``, ``engine/processors.py``).
Implementation = str | Callable[..., object]


@dataclass(frozen=True)
class ColumnType:
    """A column type: its config model and the generator factory the engine builds it with."""

    name: str
    model: type[ConfigModel]  # a ColumnConfig subclass (checked by ``add_column_type``)
    generator: Implementation | None = None
    source: str = "gristmill"  # who registered it, for error messages


@dataclass(frozen=True)
class ProcessorType:
    """A processor type: its config model and the engine implementation applying it to a batch."""

    name: str
    model: type[ConfigModel]  # a ProcessorConfig subclass (checked by ``add_processor_type``)
    implementation: Implementation | None = None
    source: str = "gristmill"


@dataclass(frozen=True)
class SeedReaderType:
    """A seed reader: the file suffixes that pick it (none: picked by name only) and
    ``read(source, **options) -> pyarrow.Table``."""

    name: str
    suffixes: tuple[str, ...]
    read: Implementation
    source: str = "gristmill"


def discriminator_default(model: type[object], field: str) -> str:
    """The string default of a model's discriminator field (``column_type="expression"``)."""
    fields = getattr(model, "model_fields", {})
    value = fields[field].default if field in fields else None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{getattr(model, '__name__', model)}.{field} needs a string default naming the type, "
                          f"e.g. {field}: Literal['my_type'] = 'my_type'")
    return value


def _check_base(model: type[object], base: str) -> None:
    # By name: the base classes' modules import this one, so it cannot import them.
    if not any(cls.__name__ == base and cls.__module__.startswith("gristmill.config.") for cls in model.__mro__):
        raise ConfigError(f"{getattr(model, '__name__', model)} must subclass gristmill {base} to be registered")


E = TypeVar("E", ColumnType, ProcessorType, SeedReaderType)


class Registry:
    """Column types, processor types and seed readers by name; thread-safe, loads plugins lazily."""

    def __init__(self, *, builtins: tuple[str, ...] = BUILTIN_PLUGINS, group: str = PLUGIN_GROUP) -> None:
        self._columns: dict[str, ColumnType] = {}
        self._processors: dict[str, ProcessorType] = {}
        self._seed_readers: dict[str, SeedReaderType] = {}
        self._builtins = builtins
        self._group = group
        self._lock = threading.RLock()
        self._builtins_loaded = False
        self._plugins_loaded = False
        self._loading = "gristmill"  # the source recorded for what is registered right now

    # -- registration (what a plugin's register(registry) calls) ------------------------------------
    def add_column_type(self, model: type[ConfigModel], *, generator: Implementation | None = None,
                        replace: bool = False) -> ColumnType:
        """Register ``model`` (its ``column_type`` default is the name) with its generator factory:
        ``"module:attr"`` or a callable ``(column, context) -> generator``."""
        _check_base(model, "ColumnConfig")
        entry = ColumnType(discriminator_default(model, "column_type"), model, generator, self._loading)
        self._add(self._columns, entry, "column type", replace)
        return entry

    def add_processor_type(self, model: type[ConfigModel], *, implementation: Implementation | None = None,
                           replace: bool = False) -> ProcessorType:
        """Register ``model`` (its ``processor_type`` default is the name) with its engine implementation:
        ``"module:attr"`` or a callable ``(processor) -> object with apply(table)``."""
        _check_base(model, "ProcessorConfig")
        entry = ProcessorType(discriminator_default(model, "processor_type"), model, implementation, self._loading)
        self._add(self._processors, entry, "processor type", replace)
        return entry

    def add_seed_reader(self, name: str, *, suffixes: tuple[str, ...] = (), read: Implementation,
                        replace: bool = False) -> SeedReaderType:
        """Register ``read(source, **options) -> pyarrow.Table`` for seed files ending in one of
        ``suffixes``; a reader without suffixes is picked only by name (``SeedConfig.reader``)."""
        normalised = tuple(s.lower() if s.startswith(".") else f".{s.lower()}" for s in suffixes)
        entry = SeedReaderType(name, normalised, read, self._loading)
        with self._lock:
            taken = {s: r.name for r in self._seed_readers.values() for s in r.suffixes if r.name != name}
            clash = sorted(s for s in normalised if s in taken)
            if clash and not replace:
                raise ConfigError(f"seed reader {name!r} ({entry.source}) claims {clash}, already read by "
                                  f"{taken[clash[0]]!r}; pass replace=True to take them over")
            if replace:
                self._drop_suffixes(normalised)
            self._add(self._seed_readers, entry, "seed reader", replace)
        return entry

    def _drop_suffixes(self, suffixes: tuple[str, ...]) -> None:
        for name, reader in list(self._seed_readers.items()):
            kept = tuple(s for s in reader.suffixes if s not in suffixes)
            self._seed_readers[name] = SeedReaderType(reader.name, kept, reader.read, reader.source)

    def _add(self, table: dict[str, E], entry: E, kind: str, replace: bool) -> None:
        with self._lock:
            old = table.get(entry.name)
            if old is not None and old != entry and not replace:
                raise ConfigError(f"{kind} {entry.name!r} is registered twice (by {old.source} and by "
                                  f"{entry.source}); rename one, or pass replace=True to override")
            table[entry.name] = entry

    # -- lookups (what config parsing and the engine call) --------------------------------------------
    def column_type(self, name: str) -> ColumnType | None:
        """The column type ``name``, loading plugins on a miss; None if nobody registers it."""
        return self._lookup(self._columns, name)

    def processor_type(self, name: str) -> ProcessorType | None:
        """The processor type ``name``, loading plugins on a miss; None if nobody registers it."""
        return self._lookup(self._processors, name)

    def seed_reader_for(self, suffix: str) -> SeedReaderType | None:
        """The seed reader of files ending in ``suffix`` ('.csv'), loading plugins on a miss."""
        self._load_builtins()
        found = self._by_suffix(suffix.lower())
        if found is None and not self._plugins_loaded:
            self.load_plugins()
            found = self._by_suffix(suffix.lower())
        return found

    def _by_suffix(self, suffix: str) -> SeedReaderType | None:
        return next((r for r in self._seed_readers.values() if suffix in r.suffixes), None)

    def column_types(self) -> dict[str, ColumnType]:
        """Every column type, plugins included."""
        self.load_plugins()
        return dict(self._columns)

    def processor_types(self) -> dict[str, ProcessorType]:
        """Every processor type, plugins included."""
        self.load_plugins()
        return dict(self._processors)

    def seed_readers(self) -> dict[str, SeedReaderType]:
        """Every seed reader, plugins included."""
        self.load_plugins()
        return dict(self._seed_readers)

    def _lookup(self, table: dict[str, E], name: str) -> E | None:
        self._load_builtins()
        if name not in table and not self._plugins_loaded:
            self.load_plugins()
        return table.get(name)

    # -- loading ---------------------------------------------------------------------------------------
    def _load_builtins(self) -> None:
        if self._builtins_loaded:
            return
        with self._lock:
            if self._builtins_loaded:
                return
            self._builtins_loaded = True  # first, so a lookup made while registering does not recurse
            for reference in self._builtins:
                register = import_reference(reference)
                register(self)

    def load_plugins(self) -> None:
        """Call ``register(registry)`` of every ``gristmill.plugins`` entry point, once."""
        self._load_builtins()
        if self._plugins_loaded:
            return
        with self._lock:
            if self._plugins_loaded:
                return
            self._plugins_loaded = True
            from importlib import metadata  # here: scanning installed packages is not free

            for entry_point in metadata.entry_points(group=self._group):
                self._load_plugin(entry_point)

    def _load_plugin(self, entry_point: EntryPoint) -> None:
        label = f"{entry_point.name} = {entry_point.value}"
        self._loading = f"plugin {label!r}"
        try:
            register = entry_point.load()
            if not callable(register):
                raise TypeError(f"it names {type(register).__name__}, not a register(registry) function")
            register(self)
        except Exception as exc:  # third-party code: warn and go on, the other plugins still load
            warnings.warn(f"gristmill plugin {label!r} (entry point group {self._group!r}) failed to load: "
                          f"{type(exc).__name__}: {exc}; its column types, processors and seed readers are "
                          "unavailable. Fix or uninstall the package providing it.", RuntimeWarning, stacklevel=2)
        finally:
            self._loading = "gristmill"


_REGISTRY = Registry()


def resolve_implementation(value: Implementation, *, what: str, source: str,
                           error: type[GristmillError] = ConfigError) -> object:
    """A registered implementation: the object itself, or the one its ``"module:attr"`` names;
    ``error`` (``what`` names the reference and its use, ``source`` who registered it) when that
    cannot be imported."""
    if not isinstance(value, str):
        return value
    try:
        return import_reference(value)
    except (ImportError, AttributeError) as exc:
        raise error(f"{what} ({source}) cannot be imported: {type(exc).__name__}: {exc}; reinstall the "
                    "package providing it") from exc


def get_registry() -> Registry:
    """The process-wide registry that config parsing and the engine use."""
    return _REGISTRY


def _registered_modules() -> set[str]:
    """Packages of installed plugins' entry points and modules named by registrations: configs may
    name callables from these (``config/trust.py``)."""
    from importlib import metadata  # here: scanning installed packages is not free

    modules = {ep.module.rpartition(".")[0] or ep.module for ep in metadata.entry_points(group=PLUGIN_GROUP)}
    registry = get_registry()
    entries: list[object] = [*registry.column_types().values(), *registry.processor_types().values(),
                             *registry.seed_readers().values()]
    for entry in entries:
        for field in ("generator", "implementation", "read"):
            value = getattr(entry, field, None)
            if isinstance(value, str):
                modules.add(value.partition(":")[0])
    return modules


add_trusted_source(_registered_modules)
