"""gristmill: synthetic datasets from configs, chained into resumable composite workflows.

>>> import gristmill as gm
>>> cfg = (gm.ConfigBuilder()
...        .add_column(name="n", column_type="sampler", sampler_type="uniform",
...                    params={"low": 1, "high": 6, "integer": True})
...        .build())
"""

from __future__ import annotations

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
    ResumeError,
    SeedDatasetError,
    WorkflowError,
)
from gristmill.mill import Mill, ResumeMode, load_workflow
from gristmill.results import DatasetResults
from gristmill.version import __version__
from gristmill.workflow import CompositeWorkflow, SkippedStageResult, StageAction, WorkflowPlan, WorkflowResults

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
    "load_workflow",
]
