"""Stage fingerprints: what must be unchanged for a stage's stored output to be reused.

The fingerprint is sha256 over the canonical JSON of its components (DESIGN.md "Resume
semantics"). The components are stored in ``workflow-metadata.json`` so a plan can name
what changed. The path of the upstream hand-off is never part of it (moving the workflow
directory keeps every stage reusable); the upstream stage's output identity is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gristmill.config.fingerprint import sha256_json, short_hash
from gristmill.engine.dataset_run import describe_changes
from gristmill.workflow.stage import StageDefinition

#: Bumped only when the same stage definition would produce different data (never with the
#: package version), so upgrading gristmill does not discard paid work.
FORMAT_VERSION = 1

#: Placeholder seed source used when only the fingerprint of a hand-off config is wanted.
HANDOFF_PLACEHOLDER = "<upstream output>"


@dataclass(frozen=True)
class StageInputs:
    """What a stage's fingerprint depends on beyond its definition."""

    num_records: int
    upstream_identity: str | None = None
    seed_content: str | None = None


def stage_components(stage: StageDefinition, inputs: StageInputs) -> dict[str, Any]:
    """The fingerprint components of ``stage`` given its resolved inputs."""
    config = stage.with_handoff(HANDOFF_PLACEHOLDER)
    selection = stage.selection_strategy.model_dump(mode="json") if stage.selection_strategy else None
    return {
        "format_version": FORMAT_VERSION,
        "config": config.fingerprint_components(include_seed_source=False),
        "seed_content": inputs.seed_content,
        "num_records": inputs.num_records,
        "sampling_strategy": stage.sampling_strategy.value if stage.index > 0 else None,
        "selection_strategy": selection if stage.index > 0 else None,
        "allow_empty": stage.allow_empty,
        "callback": None if stage.on_success is None else {"version": stage.on_success_version},
        "output_processors": [{"name": p.name, "digest": short_hash(p.fingerprint_payload())}
                              for p in stage.output_processors],
        "output": stage.output,
        "upstream": inputs.upstream_identity,
    }


def stage_fingerprint(components: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of ``components``."""
    return sha256_json(components)


def output_identity(fingerprint: str, override_sha256: str | None) -> str:
    """Identity of a stage's selected output, as seen by the next stage.

    Without an override it is the stage fingerprint; an approved override replaces the output,
    so its content digest joins in and a different override reruns the descendants.
    """
    if override_sha256 is None:
        return fingerprint
    return sha256_json({"fingerprint": fingerprint, "override": override_sha256})


def describe_stage_changes(old: dict[str, Any], new: dict[str, Any], *, upstream: str | None) -> str:
    """Name what differs between two sets of stage components, e.g. "prompt of column 'answer' changed"."""
    changes: list[str] = []
    if old.get("upstream") != new.get("upstream"):
        changes.append(f"output of upstream {upstream!r} changed" if upstream else "upstream changed")
    if old.get("format_version") != new.get("format_version"):
        changes.append(f"data format {old.get('format_version')} -> {new.get('format_version')}")
    if old.get("config") != new.get("config"):
        changes.append(describe_changes(old.get("config") or {}, new.get("config") or {}))
    if old.get("seed_content") != new.get("seed_content"):
        changes.append("seed dataset content changed")
    if old.get("num_records") != new.get("num_records"):
        changes.append(f"num_records {old.get('num_records')} -> {new.get('num_records')}")
    for key in ("sampling_strategy", "selection_strategy", "allow_empty", "output_processors"):
        if old.get(key) != new.get(key):
            changes.append(f"{key.replace('_', ' ')} changed")
    if old.get("callback") != new.get("callback"):
        changes.append(_describe_callback(old.get("callback"), new.get("callback")))
    if old.get("output") != new.get("output"):
        changes.append(f"output {old.get('output')!r} -> {new.get('output')!r}")
    return "; ".join(changes) or "fingerprint differs"


def _describe_callback(old: Any, new: Any) -> str:
    if old is None:
        return "on_success callback added"
    if new is None:
        return "on_success callback removed"
    return f"on_success_version {old.get('version')!r} -> {new.get('version')!r}"
