"""Composite workflows: named stages chained on disk, resumed stage by stage.

``stage`` (definitions, checked when added), ``fingerprint`` (stage identity), ``validate``
(static checks of the stages a plan will run),
``observe`` (reads prior state), ``plan`` (the pure planner), ``runner`` (executes a plan),
``outputs`` (output processors, callbacks), ``results``, ``composite`` (the user-facing
``CompositeWorkflow``) and ``spec`` (YAML workflow files).
"""

from gristmill.workflow.composite import CompositeWorkflow
from gristmill.workflow.fingerprint import FORMAT_VERSION
from gristmill.workflow.metadata import (
    WORKFLOW_METADATA_FILE,
    StageStatus,
    WorkflowMetadata,
    load_workflow_metadata,
)
from gristmill.workflow.plan import StageAction, StagePlan, WorkflowPlan
from gristmill.workflow.results import SkippedStageResult, WorkflowResults

__all__ = [
    "FORMAT_VERSION",
    "WORKFLOW_METADATA_FILE",
    "CompositeWorkflow",
    "SkippedStageResult",
    "StageAction",
    "StagePlan",
    "StageStatus",
    "WorkflowMetadata",
    "WorkflowPlan",
    "WorkflowResults",
    "load_workflow_metadata",
]
