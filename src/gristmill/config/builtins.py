"""The built-in column types, processors and seed readers, registered the way a plugin registers.

:func:`register` has the shape every ``gristmill.plugins`` entry point names; the registry calls
it on its first lookup. Implementations are ``"module:attr"`` references into the engine, which
config must not import: the engine resolves them when a run needs them.
"""

from __future__ import annotations

from gristmill.config.columns import CustomColumn, ExpressionColumn
from gristmill.config.embedding import EmbeddingColumn
from gristmill.config.image import ImageColumn
from gristmill.config.llm_columns import LLMCodeColumn, LLMJudgeColumn, LLMStructuredColumn, LLMTextColumn
from gristmill.config.processors import DropColumnsProcessor, SchemaTransformProcessor
from gristmill.config.registry import Registry
from gristmill.config.samplers import SamplerColumn
from gristmill.config.validation import ValidationColumn

_GENERATORS = "gristmill.engine.generators"
_SEED_READERS = "gristmill.engine.seed_readers"


def register(registry: Registry) -> None:
    """Register every built-in type with ``registry``."""
    registry.add_column_type(SamplerColumn, generator=f"{_GENERATORS}.sampler:SamplerGroupGenerator")
    registry.add_column_type(ExpressionColumn, generator=f"{_GENERATORS}.expression:ExpressionGenerator")
    registry.add_column_type(CustomColumn, generator=f"{_GENERATORS}.custom:CustomGenerator")
    registry.add_column_type(LLMTextColumn, generator=f"{_GENERATORS}.llm:llm_text_generator")
    registry.add_column_type(LLMCodeColumn, generator=f"{_GENERATORS}.llm:llm_code_generator")
    registry.add_column_type(LLMStructuredColumn, generator=f"{_GENERATORS}.llm:llm_structured_generator")
    registry.add_column_type(LLMJudgeColumn, generator=f"{_GENERATORS}.llm:llm_judge_generator")
    registry.add_column_type(ValidationColumn, generator=f"{_GENERATORS}.validation:ValidationGenerator")
    registry.add_column_type(EmbeddingColumn, generator=f"{_GENERATORS}.embedding:EmbeddingGenerator")
    registry.add_column_type(ImageColumn, generator=f"{_GENERATORS}.image:ImageGenerator")
    registry.add_processor_type(DropColumnsProcessor, implementation="gristmill.engine.processors:DropColumns")
    registry.add_processor_type(SchemaTransformProcessor,
                                implementation="gristmill.engine.processors:SchemaTransform")
    registry.add_seed_reader("parquet", suffixes=(".parquet", ".pq"), read=f"{_SEED_READERS}:read_parquet")
    registry.add_seed_reader("csv", suffixes=(".csv",), read=f"{_SEED_READERS}:read_csv")
    registry.add_seed_reader("json", suffixes=(".json", ".jsonl", ".ndjson"), read=f"{_SEED_READERS}:read_json")
    registry.add_seed_reader("hf", read=f"{_SEED_READERS}_hf:read_hf")  # hf:// and save_to_disk folders
    registry.add_seed_reader("directory", read=f"{_SEED_READERS}_directory:read_directory")
    registry.add_seed_reader("chat", read=f"{_SEED_READERS}_chat:read_chat_jsonl")
