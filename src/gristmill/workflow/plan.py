"""The workflow planner: a pure function from (stages, prior state, options) to stage actions.

``plan_stages`` reads nothing and writes nothing; ``observe.observe_workflow`` gathers its
inputs. The rules are DESIGN.md "Resume semantics":

- **REUSE**: prior status ``completed``/``completed_empty``, same fingerprint, output present
  with its recorded sizes (hashes too under ``verify``), and a callback stage has an
  ``on_success_version``.
- **RESUME**: prior status ``running``/``failed``, same fingerprint, and the stage's dataset
  can continue (directory, metadata and recorded batches intact, same batch size and seed).
- **RUN**: anything else. Every stage after a RUN or RESUME stage runs, because it may see
  new data; ``rerun_from`` forces RUN from that stage on.
- **SKIP_EMPTY**: an upstream stage completed with zero rows under ``allow_empty``.

``resume="always"`` is decided on the finished plan (``WorkflowPlan.check``): it refuses a
plan made without usable prior metadata, and any stage that would RUN for a reason of its
own (new stage, changed fingerprint, missing or altered output, callback without version,
a partial dataset that cannot continue). A stage that RUNs only because an upstream stage
reran or resumed, or because of ``rerun_from``, is allowed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from gristmill.errors import ConfigError, ResumeError, WorkflowError
from gristmill.workflow.fingerprint import (
    StageInputs,
    describe_stage_changes,
    output_identity,
    stage_components,
    stage_fingerprint,
)
from gristmill.workflow.metadata import StageRecord, StageStatus
from gristmill.workflow.observe import OverrideInput, PriorState, StageObservation
from gristmill.workflow.stage import StageDefinition

ResumeValue = Literal["never", "if-possible", "always"]
_RESUME_VALUES: tuple[ResumeValue, ...] = ("never", "if-possible", "always")


def resume_value(mode: object) -> ResumeValue:
    """Normalise a ``ResumeMode`` (or its string value) to its value."""
    value = getattr(mode, "value", mode)
    for known in _RESUME_VALUES:
        if value == known:
            return known
    raise ConfigError(f"resume must be one of {', '.join(_RESUME_VALUES)}, got {mode!r}")


class StageAction(StrEnum):
    """What a run does with one stage."""

    REUSE = "reuse"
    RESUME = "resume"
    RUN = "run"
    SKIP_EMPTY = "skip_empty"


@dataclass(frozen=True)
class StagePlan:
    """The decision for one stage, with the reason a user reads."""

    index: int
    name: str
    action: StageAction
    reason: str
    own_reason: bool = False  # RUN because of the stage itself: what resume="always" refuses
    fingerprint: str | None = None  # known unless an upstream stage runs first
    num_records: int | None = None
    prior_status: str | None = None
    last_run: datetime | None = None


@dataclass(frozen=True)
class PlanOptions:
    """The run options the planner needs."""

    resume: ResumeValue = "if-possible"
    targets: tuple[str, ...] = ()
    rerun_from: str | None = None
    overrides: Mapping[str, OverrideInput] = field(default_factory=dict)
    batch_size: int = 1000
    run_seeds: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkflowPlan:
    """Per stage action and reason; stages after the last target are listed in ``not_targeted``."""

    resume: ResumeValue
    stages: tuple[StagePlan, ...]
    not_targeted: tuple[str, ...] = ()
    fresh_reason: str | None = None  # why prior metadata was not used (None when it was)

    def __getitem__(self, name: str) -> StagePlan:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)

    def actions(self) -> dict[str, StageAction]:
        """Stage name -> action."""
        return {s.name: s.action for s in self.stages}

    def always_blockers(self) -> list[str]:
        """Why ``resume="always"`` refuses this plan (empty: it accepts it)."""
        if self.fresh_reason is not None:
            return [f"no usable workflow metadata ({self.fresh_reason})"]
        return [f"stage {s.name!r} would run: {s.reason}" for s in self.stages
                if s.action is StageAction.RUN and s.own_reason]

    def check(self) -> None:
        """Raise ``ResumeError`` when ``resume="always"`` and some stage cannot be reused or resumed."""
        blockers = self.always_blockers() if self.resume == "always" else []
        if blockers:
            raise ResumeError("resume=always refused before any work: " + "; ".join(blockers)
                              + "; rerun with resume=if-possible to rebuild what changed")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (``gristmill plan --json``)."""
        return {"resume": self.resume, "fresh_reason": self.fresh_reason, "not_targeted": list(self.not_targeted),
                "stages": [{**asdict(s), "action": s.action.value,
                            "last_run": s.last_run.isoformat() if s.last_run else None} for s in self.stages]}

    def format_table(self) -> str:
        """A plain-text table: stage, action, reason."""
        rows = [(s.name, s.action.value.upper(), s.reason) for s in self.stages]
        rows += [(name, "-", "not targeted") for name in self.not_targeted]
        width = max([len("stage")] + [len(r[0]) for r in rows])
        lines = [f"{'stage':<{width}}  {'action':<10}  reason"]
        lines += [f"{name:<{width}}  {action:<10}  {reason}" for name, action, reason in rows]
        return "\n".join(lines)


def plan_stages(stages: Sequence[StageDefinition], prior: PriorState | None, options: PlanOptions) -> WorkflowPlan:
    """Decide every stage before any work starts (pure: no I/O, no model calls)."""
    selected = _select_targets(stages, options)
    if options.rerun_from is not None:
        if options.resume == "never":
            raise WorkflowError("rerun_from needs resume=if-possible or always (resume=never reruns everything)")
        _require_stage(stages, options.rerun_from, "rerun_from")
    usable = prior if prior is not None and prior.metadata is not None and options.resume != "never" else None
    fresh_reason = None
    if usable is None:
        fresh_reason = "resume=never" if options.resume == "never" else (
            prior.problem if prior is not None and prior.problem else "no prior run")
    walker = _Walker(prior=usable, options=options, fresh_reason=fresh_reason)
    planned = tuple(walker.decide(stage) for stage in selected)
    return WorkflowPlan(resume=options.resume, stages=planned,
                        not_targeted=tuple(s.name for s in stages[len(selected):]), fresh_reason=fresh_reason)


def _select_targets(stages: Sequence[StageDefinition], options: PlanOptions) -> Sequence[StageDefinition]:
    if not stages:
        raise WorkflowError("the workflow has no stages; add one with add_stage(...)")
    if not options.targets:
        return stages
    last = max(_require_stage(stages, name, "targets") for name in options.targets)
    return stages[: last + 1]


def _require_stage(stages: Sequence[StageDefinition], name: str, what: str) -> int:
    for stage in stages:
        if stage.name == name:
            return stage.index
    raise WorkflowError(f"{what} names unknown stage {name!r}; stages: {[s.name for s in stages]}")


@dataclass
class _Walker:
    """Walks the stages in order, carrying what downstream decisions depend on."""

    prior: PriorState | None
    options: PlanOptions
    fresh_reason: str | None
    forced: str | None = None  # why every later stage runs
    empty_upstream: str | None = None
    rerunning: bool = False
    upstream_name: str | None = None
    upstream_identity: str | None = None
    upstream_rows: int | None = None

    def decide(self, stage: StageDefinition) -> StagePlan:
        record = self.prior.metadata.stage(stage.index, stage.name) if self.prior and self.prior.metadata else None
        inputs = self._inputs(stage)
        fingerprint = stage_fingerprint(stage_components(stage, inputs)) if inputs else None
        decision = self._decision(stage, record, inputs, fingerprint)
        self._advance(stage, decision, record)
        return StagePlan(index=stage.index, name=stage.name, action=decision.action, reason=decision.reason,
                         own_reason=decision.own, fingerprint=fingerprint,
                         num_records=inputs.num_records if inputs else stage.num_records,
                         prior_status=record.status.value if record else None,
                         last_run=record.finished_at or record.started_at if record else None)

    def _inputs(self, stage: StageDefinition) -> StageInputs | None:
        if stage.index == 0:
            assert stage.num_records is not None  # checked by define_stage
            return StageInputs(stage.num_records, None, self.prior.first_seed_digest if self.prior else None)
        if self.forced is not None or self.upstream_identity is None:
            return None  # decided at run time, after the upstream stage has produced its output
        rows = stage.num_records if stage.num_records is not None else self.upstream_rows
        return StageInputs(rows, self.upstream_identity, None) if rows else None

    def _decision(self, stage: StageDefinition, record: StageRecord | None, inputs: StageInputs | None,
                  fingerprint: str | None) -> _Decision:
        if self.empty_upstream is not None:
            return _Decision(StageAction.SKIP_EMPTY, f"upstream {self.empty_upstream!r} produced no rows")
        if stage.name == self.options.rerun_from:
            self.rerunning = True
        if self.rerunning:
            return _Decision(StageAction.RUN, f"rerun_from {self.options.rerun_from!r}")
        if self.fresh_reason is not None:
            return _Decision(StageAction.RUN, _fresh_text(self.fresh_reason), own=True)
        if self.forced is not None:
            return _Decision(StageAction.RUN, self.forced)
        if record is None:
            return _Decision(StageAction.RUN, "new stage (no prior run)", own=True)
        assert inputs is not None and fingerprint is not None and self.prior is not None
        observed = self.prior.stages.get(stage.index, StageObservation(directory_exists=False))
        if record.fingerprint != fingerprint:
            return self._changed(stage, record, inputs)
        return self._same_fingerprint(stage, record, observed)

    def _changed(self, stage: StageDefinition, record: StageRecord, inputs: StageInputs) -> _Decision:
        if record.fingerprint is None:
            return _Decision(StageAction.RUN, f"not generated before (last status {record.status.value})", own=True)
        new = stage_components(stage, inputs)
        reason = describe_stage_changes(record.fingerprint_components, new, upstream=self.upstream_name)
        if self.upstream_name in self.options.overrides:
            reason = reason.replace(f"output of upstream {self.upstream_name!r} changed",
                                    f"output of upstream {self.upstream_name!r} overridden")
        return _Decision(StageAction.RUN, reason, own=True)

    def _same_fingerprint(self, stage: StageDefinition, record: StageRecord, observed: StageObservation) -> _Decision:
        if record.status in (StageStatus.COMPLETED, StageStatus.COMPLETED_EMPTY):
            if stage.on_success is not None and stage.on_success_version is None:
                return _Decision(StageAction.RUN, "callback has no on_success_version", own=True)
            if observed.output_problem is not None:
                return _Decision(StageAction.RUN, observed.output_problem, own=True)
            empty = " (empty output)" if record.status is StageStatus.COMPLETED_EMPTY else ""
            return _Decision(StageAction.REUSE, "unchanged" + empty)
        if record.status in (StageStatus.RUNNING, StageStatus.FAILED):
            return self._partial(stage, record, observed)
        return _Decision(StageAction.RUN, f"last status {record.status.value}", own=True)

    def _partial(self, stage: StageDefinition, record: StageRecord, observed: StageObservation) -> _Decision:
        snapshot = observed.dataset
        if not observed.directory_exists or snapshot is None:
            return _Decision(StageAction.RUN, f"partial run left no dataset ({observed.output_problem})", own=True)
        if snapshot.problem is not None:
            return _Decision(StageAction.RUN, f"partial run cannot continue: {snapshot.problem}", own=True)
        if snapshot.batch_size != self.options.batch_size:
            return _Decision(StageAction.RUN, f"batch_size is {self.options.batch_size}, the partial run used "
                                              f"{snapshot.batch_size}", own=True)
        seed = self.options.run_seeds.get(stage.name)
        if seed is not None and seed != snapshot.run_seed:
            return _Decision(StageAction.RUN, "run seed changed since the partial run", own=True)
        return _Decision(StageAction.RESUME, f"{snapshot.completed_batches} of {snapshot.total_batches} "
                                             f"batches done (last status {record.status.value})")

    def _advance(self, stage: StageDefinition, decision: _Decision, record: StageRecord | None) -> None:
        self.upstream_name = stage.name
        if decision.action is StageAction.SKIP_EMPTY:
            return
        if decision.action in (StageAction.RUN, StageAction.RESUME):
            # A stage that runs or resumes may produce new data, so descendants rebuild from it.
            verb = "reran" if decision.action is StageAction.RUN else "resumed"
            self.forced = self.forced or f"upstream {stage.name!r} {verb}"
            self.upstream_identity = self.upstream_rows = None
            return
        assert record is not None and record.fingerprint is not None
        override = self.options.overrides.get(stage.name)
        self.upstream_identity = output_identity(record.fingerprint, override.sha256 if override else None)
        self.upstream_rows = override.rows if override else record.output_rows
        if override is None and record.status is StageStatus.COMPLETED_EMPTY:
            self.empty_upstream = stage.name


@dataclass(frozen=True)
class _Decision:
    action: StageAction
    reason: str
    own: bool = False


def _fresh_text(reason: str) -> str:
    if reason in ("resume=never", "no prior run"):
        return reason
    return f"starting fresh: {reason}"
