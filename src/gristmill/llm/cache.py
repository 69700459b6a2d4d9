"""The response cache: every successful, parsed LLM answer, written as it arrives.

One SQLite file in WAL mode per dataset (or per workflow), keyed by sha256 of (endpoint +
model, the full request body, column name, dataset row index). Each answer is committed on
its own, so a process killed at any moment loses at most the answers still in flight: a
resume, a larger ``num_records`` or a rerun of a changed stage asks the endpoint only for
requests whose inputs changed. Errors and unparseable answers are never stored.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_SCHEMA = ("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, column_name TEXT NOT NULL, "
           "value TEXT NOT NULL, created REAL NOT NULL)")
_CHUNK = 500  # keys per SELECT ... IN (...)


class ResponseCache:
    """A crash-safe key -> parsed value store. Thread-safe; cheap per call.

    >>> cache = ResponseCache(tmp_path / "response-cache.sqlite")  # doctest: +SKIP
    >>> cache.put(key, {"value": "Paris"}); cache.get(key)         # doctest: +SKIP
    {'value': 'Paris'}
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit (isolation_level=None): each put is its own transaction, durable against a
        # process crash once it returns (WAL + synchronous=NORMAL; an OS crash may lose the last few).
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)

    @staticmethod
    def key(*, identity: str, body: dict[str, Any], column: str, row: int) -> str:
        """sha256 of (endpoint + model, full request body, column name, dataset row index)."""
        payload = json.dumps([identity, body, column, row], sort_keys=True, separators=(",", ":"),
                             ensure_ascii=False, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()

    def get(self, key: str) -> Any | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        """The stored values of those ``keys`` that are present."""
        found: dict[str, Any] = {}
        with self._lock:
            for start in range(0, len(keys), _CHUNK):
                chunk = list(keys[start:start + _CHUNK])
                marks = ",".join("?" * len(chunk))
                for key, value in self._db.execute(
                        f"SELECT key, value FROM responses WHERE key IN ({marks})", chunk):
                    found[key] = json.loads(value)
        return found

    def put(self, key: str, value: Any, *, column: str = "") -> None:
        """Store ``value`` now (committed before returning)."""
        row = (key, column, json.dumps(value, ensure_ascii=False, separators=(",", ":")), time.time())
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?)", row)

    def stats(self) -> dict[str, Any]:
        """Entries in total and per column, and the size on disk."""
        with self._lock:
            total = self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
            per_column = dict(self._db.execute(
                "SELECT column_name, COUNT(*) FROM responses GROUP BY column_name ORDER BY column_name"))
        size = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
        return {"path": str(self.path), "entries": total, "columns": per_column, "bytes": size}

    def clear(self) -> int:
        """Remove every entry; returns how many there were."""
        with self._lock:
            count = self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
            self._db.execute("DELETE FROM responses")
            self._db.execute("VACUUM")
        return int(count)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
