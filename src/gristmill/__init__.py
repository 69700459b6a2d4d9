"""gristmill: synthetic datasets from configs, chained into resumable composite workflows.

>>> import gristmill as gm
>>> cfg = (gm.ConfigBuilder()
...        .add_column(name="n", column_type="sampler", sampler_type="uniform",
...                    params={"low": 1, "high": 6, "integer": True})
...        .build())

Public names are loaded on first use (PEP 562): ``import gristmill`` alone must stay fast for
the CLI and for notebooks, and pandas / pyarrow load only when something needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gristmill.lazy import lazy_exports
from gristmill.version import __version__

# Public name -> the module it is loaded from: the one table ``__getattr__`` reads. A new
# public name is one line here, its entry in ``__all__`` (a literal list, so that type checkers
# understand ``from gristmill import *``) and its import under TYPE_CHECKING (for types);
# tests/test_import_time.py fails, naming the name, when the three disagree.
_EXPORTS: dict[str, str] = {
    "allow_directory": "gristmill.config.trust",
    "allow_modules": "gristmill.config.trust",
    "dataset_config_json_schema": "gristmill.config.schema",
    "ArtifactError": "gristmill.errors",
    "ColumnInequality": "gristmill.config",
    "CompositeWorkflow": "gristmill.workflow",
    "ConfigBuilder": "gristmill.config",
    "ConfigError": "gristmill.errors",
    "ConstraintError": "gristmill.errors",
    "CustomColumn": "gristmill.config",
    "DatasetConfig": "gristmill.config",
    "DatasetResults": "gristmill.results",
    "DropColumnsProcessor": "gristmill.config",
    "ExpressionColumn": "gristmill.config",
    "GenerationError": "gristmill.errors",
    "GristmillError": "gristmill.errors",
    "IndexRange": "gristmill.config",
    "InferenceParameters": "gristmill.config",
    "LLMCodeColumn": "gristmill.config",
    "LLMJudgeColumn": "gristmill.config",
    "LLMStructuredColumn": "gristmill.config",
    "LLMTextColumn": "gristmill.config",
    "LockedError": "gristmill.errors",
    "Mill": "gristmill.mill",
    "ModelAuthError": "gristmill.errors",
    "ModelUnreachableError": "gristmill.errors",
    "ModelConfig": "gristmill.config",
    "ModelError": "gristmill.errors",
    "ModelProvider": "gristmill.config",
    "ModelRateLimitError": "gristmill.errors",
    "ModelResponseError": "gristmill.errors",
    "PartitionBlock": "gristmill.config",
    "ResumeError": "gristmill.errors",
    "ResumeMode": "gristmill.config.run",
    "RunConfig": "gristmill.config",
    "SamplerColumn": "gristmill.config",
    "SamplingStrategy": "gristmill.config",
    "ScalarInequality": "gristmill.config",
    "SchemaTransformProcessor": "gristmill.config",
    "Score": "gristmill.config",
    "SeedConfig": "gristmill.config",
    "SeedDatasetError": "gristmill.errors",
    "SkippedStageResult": "gristmill.workflow",
    "StageAction": "gristmill.workflow",
    "WorkflowError": "gristmill.errors",
    "WorkflowPlan": "gristmill.workflow",
    "WorkflowResults": "gristmill.workflow",
    "load_workflow": "gristmill.mill",
}

__all__ = [
    "ArtifactError",
    "ColumnInequality",
    "CompositeWorkflow",
    "ConfigBuilder",
    "ConfigError",
    "ConstraintError",
    "CustomColumn",
    "DatasetConfig",
    "DatasetResults",
    "DropColumnsProcessor",
    "ExpressionColumn",
    "GenerationError",
    "GristmillError",
    "IndexRange",
    "InferenceParameters",
    "LLMCodeColumn",
    "LLMJudgeColumn",
    "LLMStructuredColumn",
    "LLMTextColumn",
    "LockedError",
    "Mill",
    "ModelAuthError",
    "ModelConfig",
    "ModelError",
    "ModelProvider",
    "ModelRateLimitError",
    "ModelResponseError",
    "ModelUnreachableError",
    "PartitionBlock",
    "ResumeError",
    "ResumeMode",
    "RunConfig",
    "SamplerColumn",
    "SamplingStrategy",
    "ScalarInequality",
    "SchemaTransformProcessor",
    "Score",
    "SeedConfig",
    "SeedDatasetError",
    "SkippedStageResult",
    "StageAction",
    "WorkflowError",
    "WorkflowPlan",
    "WorkflowResults",
    "__version__",
    "allow_directory",
    "allow_modules",
    "dataset_config_json_schema",
    "load_workflow",
]

if TYPE_CHECKING:
    from gristmill.config import (
        ColumnInequality,
        ConfigBuilder,
        CustomColumn,
        DatasetConfig,
        DropColumnsProcessor,
        ExpressionColumn,
        IndexRange,
        InferenceParameters,
        LLMCodeColumn,
        LLMJudgeColumn,
        LLMStructuredColumn,
        LLMTextColumn,
        ModelConfig,
        ModelProvider,
        PartitionBlock,
        RunConfig,
        SamplerColumn,
        SamplingStrategy,
        ScalarInequality,
        SchemaTransformProcessor,
        Score,
        SeedConfig,
    )
    from gristmill.config.run import ResumeMode
    from gristmill.config.schema import dataset_config_json_schema
    from gristmill.config.trust import allow_directory, allow_modules
    from gristmill.errors import (
        ArtifactError,
        ConfigError,
        ConstraintError,
        GenerationError,
        GristmillError,
        LockedError,
        ModelAuthError,
        ModelError,
        ModelRateLimitError,
        ModelResponseError,
        ModelUnreachableError,
        ResumeError,
        SeedDatasetError,
        WorkflowError,
    )
    from gristmill.mill import Mill, load_workflow
    from gristmill.results import DatasetResults
    from gristmill.workflow import CompositeWorkflow, SkippedStageResult, StageAction, WorkflowPlan, WorkflowResults


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals(), __all__)
