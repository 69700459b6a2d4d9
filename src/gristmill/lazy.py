"""Public names a package loads on first use (PEP 562), so ``import gristmill`` stays cheap.

A package lists ``{name: module}`` and gets its module-level ``__getattr__`` and ``__dir__``:

    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals(), __all__)

Its ``TYPE_CHECKING`` imports of the same names keep them visible to mypy and editors.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str], namespace: MutableMapping[str, Any],
                 public: Sequence[str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``: a name is imported from its module
    on first use and then kept in ``namespace`` (the package's globals)."""

    def load(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def names() -> list[str]:
        return sorted({*namespace, *public})

    return load, names
