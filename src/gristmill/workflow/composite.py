"""``CompositeWorkflow``: named stages chained on disk, each seeded from the previous one's output.

>>> wf = mill.compose_workflow("persona-conversations")                  # doctest: +SKIP
>>> wf.add_stage("personas", cfg_personas, num_records=100)              # doctest: +SKIP
>>> wf.add_stage("judged", cfg_judge, on_success=keep_good, on_success_version="v1")  # doctest: +SKIP
>>> print(wf.plan(resume="if-possible").format_table())                  # doctest: +SKIP
>>> out = wf.run(resume="if-possible")                                   # doctest: +SKIP

How ``resume`` works for a workflow (DESIGN.md "Resume semantics"):

- ``never``: every stage runs fresh. If the workflow directory already holds a run, a new
  sibling directory ``<name>_<timestamp>`` is used (nothing is overwritten), with a warning.
- ``if-possible``: follow the plan (REUSE / RESUME / RUN / SKIP_EMPTY). Missing, corrupt,
  wrongly shaped, unknown-version or foreign (other workflow name) metadata: start fresh in
  place with a warning.
- ``always``: decided on the complete plan before any stage runs or any directory is
  touched. It raises ``ResumeError`` when the prior metadata is missing or unusable, or when
  any stage would RUN for a reason of its own: new stage, changed fingerprint (the message
  names the change), missing or altered output, callback without ``on_success_version``, or
  a partial stage that cannot continue. Stages that RUN only because an upstream stage
  resumed (or because of ``rerun_from``) are allowed, as is SKIP_EMPTY.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gristmill.config.dataset import ConfigBuilder, DatasetConfig
from gristmill.config.seeds import SamplingStrategy, SelectionStrategy
from gristmill.errors import WorkflowError
from gristmill.sampling.rng import stream_key
from gristmill.storage.layout import DatasetLayout
from gristmill.storage.lock import DirectoryLock
from gristmill.workflow.observe import OverrideInput, PriorState, check_overrides, observe_workflow
from gristmill.workflow.plan import PlanOptions, WorkflowPlan, plan_stages, resume_value
from gristmill.workflow.results import WorkflowResults
from gristmill.workflow.runner import WorkflowRunner
from gristmill.workflow.stage import StageDefinition, check_workflow_name, define_stage

if TYPE_CHECKING:
    from gristmill.mill import Mill


def stage_run_seed(workflow: str, stage: str, base_seed: int | None) -> int:
    """The run seed of a stage: stable across reruns, so a rerun stage reproduces its unchanged rows."""
    parts: tuple[object, ...] = (workflow, stage) if base_seed is None else (base_seed, workflow, stage)
    return stream_key("workflow-stage", *parts) % 2**63


class CompositeWorkflow:
    """A chain of stages; create one with ``Mill.compose_workflow(name)``."""

    def __init__(self, mill: Mill, name: str) -> None:
        check_workflow_name(name)
        self.mill = mill
        self.name = name
        self._stages: list[StageDefinition] = []

    @property
    def workflow_dir(self) -> Path:
        """``<artifact_path>/<name>``."""
        return Path(self.mill.artifact_path) / self.name

    @property
    def stages(self) -> tuple[StageDefinition, ...]:
        return tuple(self._stages)

    def add_stage(self, name: str, config: DatasetConfig | ConfigBuilder, *, num_records: int | None = None,
                  on_success: Callable[[Path], Any] | str | None = None, on_success_version: str | None = None,
                  output_processors: Sequence[Any] | None = None, output: str = "final", allow_empty: bool = False,
                  sampling_strategy: SamplingStrategy | str = SamplingStrategy.ORDERED,
                  selection_strategy: SelectionStrategy | dict[str, Any] | None = None) -> CompositeWorkflow:
        """Append a stage (validated now, config copied now); returns the workflow for chaining.

        Stage ``i > 0`` is seeded from stage ``i - 1``'s selected output with
        ``sampling_strategy`` / ``selection_strategy``; ``num_records`` defaults to that
        output's row count (more records than seed rows cycle the seed).
        ``on_success(stage_dir) -> path`` returns a parquet file or directory that becomes the
        stage's output; give ``on_success_version`` (bump it when the callback changes) or the
        stage is never reused.
        """
        stage = define_stage(len(self._stages), name, config, existing=[s.name for s in self._stages],
                             num_records=num_records, on_success=on_success, on_success_version=on_success_version,
                             output_processors=output_processors, output=output, allow_empty=allow_empty,
                             sampling_strategy=sampling_strategy, selection_strategy=selection_strategy)
        self._stages.append(stage)
        return self

    def plan(self, *, resume: Any, targets: Sequence[str] | None = None, rerun_from: str | None = None,
             stage_output_overrides: Mapping[str, str | Path] | None = None, verify: bool = False) -> WorkflowPlan:
        """Decide every stage (REUSE / RESUME / RUN / SKIP_EMPTY, with reasons) without doing any.

        Reads stored state only: it never writes and never contacts a model endpoint. Under
        ``resume="always"`` the plan lists what would be refused; ``plan.check()`` (called by
        ``run``) raises. ``verify=True`` also compares the sha256 of every recorded output file.
        """
        plan, _, _ = self._make_plan(resume, targets, rerun_from, stage_output_overrides, verify, self.workflow_dir)
        return plan

    def run(self, *, resume: Any = "never", targets: Sequence[str] | None = None, rerun_from: str | None = None,
            stage_output_overrides: Mapping[str, str | Path] | None = None, verify: bool = False,
            on_plan: Callable[[WorkflowPlan], None] | None = None) -> WorkflowResults:
        """Plan, check the plan, then execute it, holding the workflow directory lock throughout.

        ``on_plan`` is called with the checked plan before any stage runs (the CLI prints it).

        ``targets``: materialise only up to these stages. ``rerun_from``: force that stage and
        every later one to run (needs resume other than never). ``stage_output_overrides``:
        ``{stage: approved.parquet}`` replaces a stage's output for its descendants (review
        gates); a different override reruns them.
        """
        mode = resume_value(resume)
        if rerun_from is not None and mode == "never":
            raise WorkflowError("rerun_from needs resume=if-possible or always (resume=never reruns everything)")
        workflow_dir = self._directory_for(mode)
        with DirectoryLock(workflow_dir):
            plan, prior, overrides = self._make_plan(mode, targets, rerun_from, stage_output_overrides, verify,
                                                     workflow_dir)
            plan.check()
            if on_plan is not None:
                on_plan(plan)
            if mode == "if-possible" and prior.problem is not None:
                warnings.warn(f"workflow {self.name!r}: not resuming ({prior.problem}); starting fresh in "
                              f"{workflow_dir}", stacklevel=2)
            runner = WorkflowRunner(self.mill, workflow_dir=workflow_dir, workflow_name=self.name,
                                    stages=self._stages, plan=plan, prior=prior, overrides=overrides,
                                    run_seeds=self._run_seeds())
            return runner.execute()

    def _make_plan(self, resume: Any, targets: Sequence[str] | None, rerun_from: str | None,
                   overrides: Mapping[str, str | Path] | None, verify: bool,
                   workflow_dir: Path) -> tuple[WorkflowPlan, PriorState, dict[str, OverrideInput]]:
        mode = resume_value(resume)
        checked = check_overrides(overrides, self._stages)
        prior = observe_workflow(workflow_dir, self.name, self._stages, verify=verify, read_prior=mode != "never")
        options = PlanOptions(resume=mode, targets=tuple(targets or ()), rerun_from=rerun_from, overrides=checked,
                              batch_size=self.mill.run_config.batch_size, run_seeds=self._run_seeds())
        return plan_stages(self._stages, prior, options), prior, checked

    def _run_seeds(self) -> dict[str, int]:
        return {s.name: stage_run_seed(self.name, s.name, self.mill.run_config.seed) for s in self._stages}

    def _directory_for(self, mode: str) -> Path:
        """The workflow directory, or under ``never`` a new sibling when it already holds a run."""
        base = self.workflow_dir
        if mode != "never" or DatasetLayout(base).is_empty():
            return base
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        candidate, n = base.with_name(f"{self.name}_{stamp}"), 1
        while candidate.exists():
            n += 1
            candidate = base.with_name(f"{self.name}_{stamp}-{n}")
        warnings.warn(f"{base} already holds a workflow run; writing to {candidate} instead (pass "
                      "resume='if-possible' to continue the existing one)", stacklevel=3)
        return candidate

    def __repr__(self) -> str:
        return f"CompositeWorkflow({self.name!r}, stages={[s.name for s in self._stages]})"
