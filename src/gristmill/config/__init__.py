"""User-facing configuration: columns, samplers, seeds, processors, models, datasets."""

from gristmill.config.columns import ColumnConfig, CustomColumn, ExpressionColumn, column_types, register_column_type
from gristmill.config.dataset import ConfigBuilder, DatasetConfig
from gristmill.config.fingerprint import FINGERPRINT_VERSION
from gristmill.config.llm_columns import LLMCodeColumn, LLMJudgeColumn, LLMStructuredColumn, LLMTextColumn, Score
from gristmill.config.models import InferenceParameters, ModelConfig, ModelProvider
from gristmill.config.processors import (
    DropColumnsProcessor,
    ProcessorConfig,
    SchemaTransformProcessor,
    parse_processor,
    processor_types,
)
from gristmill.config.registry import ColumnType, ProcessorType, Registry, SeedReaderType, get_registry
from gristmill.config.run import RunConfig
from gristmill.config.samplers import ColumnInequality, SamplerColumn, ScalarInequality
from gristmill.config.schema import dataset_config_json_schema
from gristmill.config.seeds import IndexRange, PartitionBlock, SamplingStrategy, SeedConfig

__all__ = [
    "FINGERPRINT_VERSION",
    "ColumnConfig",
    "ColumnInequality",
    "ColumnType",
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
    "ProcessorConfig",
    "ProcessorType",
    "Registry",
    "RunConfig",
    "SamplerColumn",
    "SamplingStrategy",
    "ScalarInequality",
    "SchemaTransformProcessor",
    "Score",
    "SeedConfig",
    "SeedReaderType",
    "column_types",
    "dataset_config_json_schema",
    "get_registry",
    "parse_processor",
    "processor_types",
    "register_column_type",
]
