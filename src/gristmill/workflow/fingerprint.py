"""Stage fingerprints: what must be unchanged for a stage's stored output to be reused.

The fingerprint is sha256 over the canonical JSON of its components (DESIGN.md "Resume
semantics"). The components are stored in ``workflow-metadata.json`` so a plan can name
what changed. The path of the upstream hand-off is never part of it (moving the workflow
directory keeps every stage reusable); the upstream stage's output identity is: its
fingerprint and the recorded sha256 of its output files (or of an approved override).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import JsonValue

from gristmill.config.fingerprint import describe_changes, sha256_json
from gristmill.workflow.metadata import OutputFile
from gristmill.workflow.stage import StageDefinition

#: Bumped only when the same stage definition would produce different data (never with the
#: package version), so upgrading gristmill does not discard paid work.
FORMAT_VERSION = 1

#: Placeholder seed source used when only the fingerprint of a hand-off config is wanted.
HANDOFF_PLACEHOLDER = "<upstream output>"


#: A stage's fingerprint components: JSON data, stored in ``workflow-metadata.json``.
StageComponents = dict[str, JsonValue]

#: The identity of an upstream stage's selected output as the next stage sees it: the upstream
#: fingerprint plus a digest of the output files' recorded sha256s, or of the approved override.
UpstreamIdentity = dict[str, str]


@dataclass(frozen=True)
class StageInputs:
    """What a stage's fingerprint depends on beyond its definition."""

    num_records: int
    upstream_identity: UpstreamIdentity | None = None  # the seed parent's output
    seed_content: str | None = None
    parents_identity: Mapping[str, UpstreamIdentity] | None = None  # joined parents and side inputs


def stage_components(stage: StageDefinition, inputs: StageInputs) -> StageComponents:
    """The fingerprint components of ``stage`` given its resolved inputs."""
    config = stage.with_handoff(HANDOFF_PLACEHOLDER)
    components: StageComponents = {
        "format_version": FORMAT_VERSION,
        "config": config.fingerprint_components(include_seed_source=False),
        "seed_content": inputs.seed_content,
        "num_records": inputs.num_records,
        **stage.options.fingerprint_components(first_stage=not stage.parents),
        "upstream": dict(inputs.upstream_identity) if inputs.upstream_identity is not None else None,
    }
    if stage.extra_parents:  # absent for one parent, so a linear chain keeps its fingerprints
        known = inputs.parents_identity
        components["parents"] = None if known is None else {p: dict(known[p]) for p in sorted(known)}
    return components


@dataclass(frozen=True)
class StageIdentity:
    """A stage's resolved inputs, fingerprint components and fingerprint."""

    inputs: StageInputs
    components: StageComponents
    fingerprint: str


def stage_identity(stage: StageDefinition, *, first_seed_digest: str | None,
                   upstream: UpstreamIdentity | None = None, upstream_rows: int | None = None,
                   parents: Mapping[str, UpstreamIdentity] | None = None) -> StageIdentity | None:
    """The identity of ``stage``: the one computation the planner and the runner share.

    A root stage is identified by its own seed's content digest (``first_seed_digest``); a
    stage with parents by the identity and row count of its seed parent's output
    (``upstream``) and the identities of its other parents' outputs (``parents``: joined ones
    and side inputs). None when one of them is not known yet (that parent has not produced it).
    """
    if not stage.parents:
        # define_stage requires num_records for a root stage.
        inputs = StageInputs(stage.options.num_records or 0, None, first_seed_digest)
    else:
        rows = stage.options.num_records if stage.options.num_records is not None else upstream_rows
        extra = {p: (parents or {}).get(p) for p in stage.extra_parents}
        if upstream is None or not rows or any(identity is None for identity in extra.values()):
            return None
        known = {p: identity for p, identity in extra.items() if identity is not None}
        inputs = StageInputs(rows, upstream, None, known if stage.extra_parents else None)
    components = stage_components(stage, inputs)
    return StageIdentity(inputs, components, stage_fingerprint(components))


def stage_fingerprint(components: StageComponents) -> str:
    """sha256 of the canonical JSON of ``components``."""
    return sha256_json(components)


def output_identity(fingerprint: str, output_files: Sequence[OutputFile],
                    override_sha256: str | None) -> UpstreamIdentity:
    """Identity of a stage's selected output, as seen by the next stage.

    The stage fingerprint alone is not enough: a stage rerun with an unchanged fingerprint (a
    targeted ``rerun_from``, an interrupted run) may produce different rows (LLM answers,
    custom code), so the recorded sha256 of every output file joins in, and a downstream stage
    built from the old output no longer matches. An approved override replaces the output:
    its content digest stands in for the stage's own files, so the same override again keeps
    the descendants reusable and a different one reruns them.
    """
    if override_sha256 is not None:
        return {"fingerprint": fingerprint, "override": override_sha256}
    return {"fingerprint": fingerprint, "output": sha256_json([f.sha256 for f in output_files])}


def own_changes(old: StageComponents, new: StageComponents, *, inherited_rows: bool) -> list[str]:
    """The changes of the stage's own components (not ``upstream``; not ``num_records`` when it
    is inherited from the upstream output): what ``resume="always"`` refuses."""
    skip = {"upstream", "num_records"} if inherited_rows else {"upstream"}
    return [text for key, text in stage_changes(old, new, upstream=None) if key not in skip]


def describe_stage_changes(old: StageComponents, new: StageComponents, *, upstream: str | None) -> str:
    """Name what differs between two sets of stage components, e.g. "prompt of column 'answer' changed"."""
    return "; ".join(text for _, text in stage_changes(old, new, upstream=upstream)) or "fingerprint differs"


def stage_changes(old: StageComponents, new: StageComponents, *, upstream: str | None) -> list[tuple[str, str]]:
    """(component, human description) of every component that differs."""
    changes: list[tuple[str, str]] = []
    if old.get("upstream") != new.get("upstream"):
        changes.append(("upstream", _describe_upstream(old.get("upstream"), new.get("upstream"), upstream)))
    old_parents, new_parents = _mapping(old.get("parents")), _mapping(new.get("parents"))
    for parent in sorted(set(old_parents) | set(new_parents)):
        if old_parents.get(parent) != new_parents.get(parent):  # an upstream change: not the stage's own
            changes.append(("upstream", _describe_upstream(old_parents.get(parent), new_parents.get(parent),
                                                           parent)))
    if old.get("format_version") != new.get("format_version"):
        changes.append(("format_version",
                        f"data format {old.get('format_version')} -> {new.get('format_version')}"))
    old_config, new_config = _mapping(old.get("config")), _mapping(new.get("config"))
    if new.get("sampling_strategy") is not None or old.get("sampling_strategy") is not None:
        # A downstream stage's seed is the hand-off, described by the two strategies below.
        old_config = {k: v for k, v in old_config.items() if k != "seed"}
        new_config = {k: v for k, v in new_config.items() if k != "seed"}
    if old_config != new_config:  # the config part is described by the dataset describer, not here
        changes.append(("config", describe_changes(old_config, new_config)))
    if old.get("seed_content") != new.get("seed_content"):
        changes.append(("seed_content", "seed dataset content changed"))
    if old.get("num_records") != new.get("num_records"):
        changes.append(("num_records", f"num_records {old.get('num_records')} -> {new.get('num_records')}"))
    for key in ("sampling_strategy", "selection_strategy", "allow_empty", "join", "side_inputs", "gate"):
        if old.get(key) != new.get(key):
            changes.append((key, _describe_value(key, old.get(key), new.get(key))))
    if old.get("output_processors") != new.get("output_processors"):
        changes.append(("output_processors",
                        _describe_processors(old.get("output_processors"), new.get("output_processors"))))
    if old.get("callback") != new.get("callback"):
        changes.append(("callback", _describe_callback(old.get("callback"), new.get("callback"))))
    if old.get("output") != new.get("output"):
        changes.append(("output", f"output {old.get('output')!r} -> {new.get('output')!r}"))
    return changes


def _mapping(value: JsonValue) -> dict[str, JsonValue]:
    """``value`` when it is a JSON object, else empty (stored components may predate a key)."""
    return value if isinstance(value, dict) else {}


def _describe_upstream(old: JsonValue, new: JsonValue, upstream: str | None) -> str:
    name = f"upstream {upstream!r}" if upstream else "upstream"
    old_override, new_override = _mapping(old).get("override"), _mapping(new).get("override")
    if new_override is not None and new_override != old_override:
        return f"output of {name} overridden"
    if old_override is not None and new_override is None:
        return f"override of {name} removed"
    return f"{name} output changed"


def _describe_value(key: str, old: JsonValue, new: JsonValue) -> str:
    if key == "allow_empty":
        return f"allow_empty {old} -> {new}"
    label = f"{key.replace('_', ' ')} changed"
    return f"{label} ({old!r} -> {new!r})" if isinstance(old, str) and isinstance(new, str) else label


def _describe_processors(old: JsonValue, new: JsonValue) -> str:
    old_map = {str(p.get("name")): p.get("digest") for p in _list(old) if isinstance(p, dict)}
    new_map = {str(p.get("name")): p.get("digest") for p in _list(new) if isinstance(p, dict)}
    parts = [f"output processor {n!r} added" for n in new_map if n not in old_map]
    parts += [f"output processor {n!r} removed" for n in old_map if n not in new_map]
    parts += [f"output processor {n!r} changed" for n in new_map if n in old_map and old_map[n] != new_map[n]]
    if not parts:
        parts.append(f"output processors reordered: {list(old_map)} -> {list(new_map)}")
    return "; ".join(parts)


def _describe_callback(old: JsonValue, new: JsonValue) -> str:
    if old is None:
        return "on_success callback added"
    if new is None:
        return "on_success callback removed"
    return f"on_success_version {_mapping(old).get('version')!r} -> {_mapping(new).get('version')!r}"


def _list(value: JsonValue) -> list[JsonValue]:
    return value if isinstance(value, list) else []
