"""Composite workflows: named stages chained on disk, resumed stage by stage.

``stage`` (definitions, checked when added), ``fingerprint`` (stage identity), ``validate``
(static checks of the stages a plan will run),
``observe`` (reads prior state), ``plan`` (the pure planner), ``runner`` (executes a plan),
``outputs`` (output processors, callbacks), ``results``, ``composite`` (the user-facing
``CompositeWorkflow``) and ``spec`` (YAML workflow files).

Names load on first use (PEP 562), so reading ``workflow-metadata.json`` does not import the
engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gristmill.lazy import lazy_exports

# Public name -> its module, read by ``__getattr__``; ``__all__`` and the TYPE_CHECKING imports
# list the same names (checked by tests/test_import_time.py).
_EXPORTS: dict[str, str] = {
    "FORMAT_VERSION": "gristmill.workflow.fingerprint",
    "WORKFLOW_METADATA_FILE": "gristmill.workflow.metadata",
    "CompositeWorkflow": "gristmill.workflow.composite",
    "SkippedStageResult": "gristmill.workflow.results",
    "StageAction": "gristmill.workflow.plan",
    "StagePlan": "gristmill.workflow.plan",
    "StageStatus": "gristmill.workflow.metadata",
    "WorkflowMetadata": "gristmill.workflow.metadata",
    "WorkflowPlan": "gristmill.workflow.plan",
    "WorkflowResults": "gristmill.workflow.results",
    "load_workflow_metadata": "gristmill.workflow.metadata",
    "TrashEntry": "gristmill.workflow.clean",
    "empty_trash": "gristmill.workflow.clean",
    "trash_entries": "gristmill.workflow.clean",
    "leftover_runs": "gristmill.workflow.clean",
    "remove_leftover_runs": "gristmill.workflow.clean",
}

__all__ = [
    "FORMAT_VERSION",
    "WORKFLOW_METADATA_FILE",
    "CompositeWorkflow",
    "SkippedStageResult",
    "StageAction",
    "StagePlan",
    "StageStatus",
    "TrashEntry",
    "WorkflowMetadata",
    "WorkflowPlan",
    "WorkflowResults",
    "empty_trash",
    "leftover_runs",
    "load_workflow_metadata",
    "remove_leftover_runs",
    "trash_entries",
]

if TYPE_CHECKING:
    from gristmill.workflow.clean import TrashEntry, empty_trash, leftover_runs, remove_leftover_runs, trash_entries
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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals(), __all__)
