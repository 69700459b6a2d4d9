"""Column generators; importing this package registers every built-in column type's generator."""

from gristmill.engine.generators import custom, expression  # noqa: F401  (registration)
from gristmill.engine.generators.base import (
    BatchFrame,
    ColumnGenerator,
    EngineContext,
    build_generator,
    register_generator,
)

try:  # LLM column generators register themselves when their module is present
    import gristmill.engine.generators.llm  # noqa: F401
except ModuleNotFoundError as _exc:  # pragma: no cover - only while the LLM layer is absent
    if _exc.name != "gristmill.engine.generators.llm":
        raise

__all__ = ["BatchFrame", "ColumnGenerator", "EngineContext", "build_generator", "register_generator"]
