"""User-facing configuration: columns, samplers, seeds, processors, models, datasets."""

from gristmill.config.columns import ColumnConfig, CustomColumn, ExpressionColumn, column_types, register_column_type
from gristmill.config.dataset import ConfigBuilder, DatasetConfig
from gristmill.config.fingerprint import FINGERPRINT_VERSION
from gristmill.config.llm_columns import LLMCodeColumn, LLMJudgeColumn, LLMStructuredColumn, LLMTextColumn, Score
from gristmill.config.models import InferenceParameters, ModelConfig, ModelProvider
from gristmill.config.processors import DropColumnsProcessor, SchemaTransformProcessor
from gristmill.config.run import RunConfig
from gristmill.config.samplers import ColumnInequality, SamplerColumn, ScalarInequality
from gristmill.config.seeds import IndexRange, PartitionBlock, SamplingStrategy, SeedConfig

__all__ = [
    "FINGERPRINT_VERSION",
    "ColumnConfig",
    "ColumnInequality",
    "ConfigBuilder",
    "CustomColumn",
    "DatasetConfig",
    "DropColumnsProcessor",
    "ExpressionColumn",
    "IndexRange",
    "InferenceParameters",
    "LLMCodeColumn",
    "LLMJudgeColumn",
    "LLMStructuredColumn",
    "LLMTextColumn",
    "ModelConfig",
    "ModelProvider",
    "PartitionBlock",
    "RunConfig",
    "SamplerColumn",
    "SamplingStrategy",
    "ScalarInequality",
    "SchemaTransformProcessor",
    "Score",
    "SeedConfig",
    "column_types",
    "register_column_type",
]
