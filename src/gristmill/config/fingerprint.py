"""Config fingerprints: sha256 over canonical JSON of the data-relevant fields.

What is left out, and why (the one table of exclusions):

=========================================  ==============================================
field                                      why it does not change generated data
=========================================  ==============================================
``ModelProvider.api_key``                  a secret; never written anywhere
``ModelProvider.extra_headers``            transport (may carry credentials)
``ModelProvider.endpoint``                 where a model is served, not what it answers;
                                           neither the fingerprint nor the response cache uses it
``ModelConfig.max_parallel_requests``      concurrency
``ModelConfig.timeout``                    a timeout
``RunConfig`` (all of it)                  batch size, seed, cache, progress, error
                                           policy: checked separately on resume
``DatasetConfig.description``              documentation
seed ``source`` path (workflow stages)     the upstream hand-off; its fingerprint is used
=========================================  ==============================================

``FINGERPRINT_VERSION`` is bumped only when the same config would generate different
data, so upgrading gristmill does not throw away paid work.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

FINGERPRINT_VERSION = 1


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no spaces, non-JSON values as their str()."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def sha256_json(value: Any) -> str:
    """sha256 hex digest of ``canonical_json(value)``."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def short_hash(value: Any) -> str:
    """A 16-hex-digit digest, for per-field components (enough to tell a change)."""
    return sha256_json(value)[:16]


#: The named parts of a fingerprint (per column and field), stored so a change can be named.
FingerprintComponents = dict[str, Any]


def describe_changes(old: FingerprintComponents, new: FingerprintComponents) -> str:
    """Name what differs between two sets of fingerprint components, e.g. "expr of column 'x' changed"."""
    changes: list[str] = []
    if old.get("version") != new.get("version"):
        changes.append(f"fingerprint version {old.get('version')} -> {new.get('version')}")
    old_cols, new_cols = old.get("columns", {}), new.get("columns", {})
    for name in new_cols:
        if name not in old_cols:
            changes.append(f"column {name!r} added")
        elif old_cols[name] != new_cols[name]:
            fields = sorted(k for k in set(old_cols[name]) | set(new_cols[name])
                            if old_cols[name].get(k) != new_cols[name].get(k))
            changes.append(f"{', '.join(fields)} of column {name!r} changed")
    changes.extend(f"column {name!r} removed" for name in old_cols if name not in new_cols)
    for part in ("constraints", "processors", "seed", "models"):
        if old.get(part) != new.get(part):
            changes.append(f"{part} changed")
    return "; ".join(changes) or "fingerprint differs"
