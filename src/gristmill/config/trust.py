"""Which modules a config may name callables from: configs are data (see ``docs/trust.md``).

A ``"module:qualname"`` string in a config (a custom column's ``function``, a workflow stage's
``on_success``) is resolved only when its module is allowed, and checked *before* anything is
imported, so ``gristmill validate`` of a config from someone else never runs its code.
Allowed are:

1. modules the user lists: :func:`allow_modules` in Python, or ``GRISTMILL_ALLOW_MODULES=a,b``
   in the environment (a name allows its submodules too);
2. modules in a directory the user trusts with :func:`allow_directory` (the CLI trusts the
   directory of the config file it was given: a ``.py`` file beside the YAML is code the user
   has on disk, unlike a string in a config);
3. modules of registered plugins: the package of each ``gristmill.plugins`` entry point, and every
   module a registration names (``registry.add_column_type(..., generator="my_pkg.gen:Gen")``);
4. gristmill's own built-in implementations (``gristmill.config``, ``gristmill.engine``).

A callable object passed in Python is never checked: the user wrote or chose it.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from gristmill.errors import ConfigError

ENV_VAR = "GRISTMILL_ALLOW_MODULES"
_BUILTIN_PREFIXES = ("gristmill.config", "gristmill.engine")

_lock = threading.Lock()
_modules: set[str] = set()
_directories: set[Path] = set()
_sources: list[Callable[[], Iterable[str]]] = []


def allow_modules(*names: str) -> None:
    """Let configs name callables from these modules (and their submodules).

    >>> allow_modules("my_project.functions")  # doctest: +SKIP
    """
    for name in names:
        if not name or not all(part.isidentifier() for part in name.split(".")):
            raise ConfigError(f"allow_modules: {name!r} is not a module name such as 'my_pkg.functions'")
    with _lock:
        _modules.update(names)


def allow_directory(path: str | Path) -> None:
    """Let configs name callables from modules whose file (or package) lies directly in ``path``."""
    with _lock:
        _directories.add(Path(path).resolve())


def reset() -> None:
    """Forget every module and directory allowed in this process (for tests)."""
    with _lock:
        _modules.clear()
        _directories.clear()


def check_reference(reference: str) -> None:
    """Raise ``ConfigError`` saying how to allow it unless ``reference``'s module is allowed.
    Imports nothing the user has not allowed."""
    module = reference.partition(":")[0]
    if is_allowed(module):
        return
    top = module.split(".")[0]
    raise ConfigError(
        f"{reference!r} names a callable in module {module!r}, which configs may not use unless you allow "
        f"it (configs are data: see docs/trust.md). If you trust it: gristmill.config.trust.allow_modules"
        f"({top!r}) in Python, {ENV_VAR}={top} in the environment, or put the module in the config "
        "file's own directory")


def is_allowed(module: str) -> bool:
    """Whether configs may name callables from ``module`` (the rules in the module docstring)."""
    if _within(module, _BUILTIN_PREFIXES) or _within(module, _listed_modules()):
        return True
    return _in_allowed_directory(module) or _within(module, _plugin_modules())


def _within(module: str, packages: tuple[str, ...] | set[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _listed_modules() -> set[str]:
    from_env = {name.strip() for name in os.environ.get(ENV_VAR, "").split(",") if name.strip()}
    with _lock:
        return _modules | from_env


def _in_allowed_directory(module: str) -> bool:
    with _lock:
        directories = set(_directories)
    if not directories:
        return False
    try:
        # The top-level name only: find_spec of 'a.b' would import (run) package 'a' to find it.
        spec = importlib.util.find_spec(module.split(".")[0])
    except (ImportError, ValueError):
        return False
    if spec is None or spec.origin is None:
        return False
    origin = Path(spec.origin).resolve()
    home = origin.parent.parent if spec.submodule_search_locations else origin.parent
    return home in directories


def add_trusted_source(source: Callable[[], Iterable[str]]) -> None:
    """Let ``source()`` name more allowed modules (the registry adds its plugins' modules this way,
    so this module needs no import of the registry, which imports the reference resolver)."""
    with _lock:
        _sources.append(source)


def _plugin_modules() -> set[str]:
    """Modules named by registered sources: plugin packages and registrations."""
    with _lock:
        sources = list(_sources)
    return {module for source in sources for module in source()}
