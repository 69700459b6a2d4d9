"""Column generators. Which generator a column type uses is registered with its config model in
``config/registry.py`` (built-ins in ``config/builtins.py``) and resolved here on first use."""

from gristmill.engine.generators.base import (
    BatchFrame,
    ColumnGenerator,
    EngineContext,
    GroupGeneratorFactory,
    build_generator,
    generator_factory,
    register_generator,
)

__all__ = ["BatchFrame", "ColumnGenerator", "EngineContext", "GroupGeneratorFactory", "build_generator",
           "generator_factory", "register_generator"]
