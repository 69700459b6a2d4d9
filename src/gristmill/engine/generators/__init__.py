"""Column generators; importing this package registers every built-in column type's generator."""

from gristmill.engine.generators import custom, expression, llm  # noqa: F401  (registration)
from gristmill.engine.generators.base import (
    BatchFrame,
    ColumnGenerator,
    EngineContext,
    build_generator,
    register_generator,
)

__all__ = ["BatchFrame", "ColumnGenerator", "EngineContext", "build_generator", "register_generator"]
