"""The response cache: every successful, parsed LLM answer, written as it arrives.

One SQLite file in WAL mode per dataset (or per workflow), keyed by sha256 of (model identity:
provider and model names, never the endpoint string; the full request body, column name, dataset
row index). Each answer is committed on
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
from urllib.parse import quote

from gristmill.errors import ArtifactError

_SCHEMA = ("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, column_name TEXT NOT NULL, "
           "value TEXT NOT NULL, created REAL NOT NULL)")
_CHUNK = 500  # keys per SELECT ... IN (...)
_COLUMNS = {"key", "column_name", "value", "created"}


def _uri(path: Path, mode: str) -> str:
    return f"file:{quote(str(path.absolute()))}?mode={mode}"


def _check_responses_table(db: sqlite3.Connection, schema: str, path: Path) -> None:
    """ArtifactError unless ``schema`` (main/attached name) of ``db`` is a gristmill response cache."""
    try:
        columns = {row[1] for row in db.execute(f"PRAGMA {schema}.table_info(responses)")}
    except sqlite3.DatabaseError as exc:
        raise ArtifactError(f"{path} is not a SQLite file ({exc})") from None
    if not _COLUMNS <= columns:
        raise ArtifactError(f"{path} is not a gristmill response cache (no 'responses' table)")


class ResponseCache:
    """A crash-safe key -> parsed value store. Thread-safe; cheap per call.

    >>> cache = ResponseCache(tmp_path / "response-cache.sqlite")  # doctest: +SKIP
    >>> cache.put(key, {"value": "Paris"}); cache.get(key)         # doctest: +SKIP
    {'value': 'Paris'}
    """

    def __init__(self, path: str | Path, *, mode: str = "create") -> None:
        """``mode``: ``"create"`` (the file and table are made if missing), ``"existing"`` (read-write,
        but only an existing response cache) or ``"readonly"``. The last two raise ArtifactError
        for a missing file, a non-SQLite file or a SQLite file without a ``responses`` table, and
        never write to such a file."""
        self.path = Path(path)
        if mode == "create":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif not self.path.is_file():
            raise ArtifactError(f"no response cache at {self.path}")
        # Autocommit (isolation_level=None): each put is its own transaction, durable against a
        # process crash once it returns (WAL + synchronous=NORMAL; an OS crash may lose the last few).
        uri_mode = {"create": "rwc", "existing": "rw", "readonly": "ro"}[mode]
        try:
            self._db = sqlite3.connect(_uri(self.path, uri_mode), uri=True, isolation_level=None,
                                       check_same_thread=False, timeout=30)
        except sqlite3.Error as exc:
            raise ArtifactError(f"cannot open the response cache {self.path}: {exc}") from None
        self._lock = threading.Lock()
        try:
            if mode != "create":
                _check_responses_table(self._db, "main", self.path)
            if mode != "readonly":
                with self._lock:
                    self._db.execute("PRAGMA journal_mode=WAL")
                    self._db.execute("PRAGMA synchronous=NORMAL")
                    self._db.execute(_SCHEMA)
        except sqlite3.DatabaseError as exc:  # garbled or foreign file: name it, never a raw sqlite error
            self._db.close()
            raise ArtifactError(f"{self.path} is not a usable response cache ({exc})") from None
        except BaseException:
            self._db.close()
            raise

    @staticmethod
    def key(*, identity: str, body: dict[str, Any], column: str, row: int) -> str:
        """sha256 of (model identity, full request body, column name, dataset row index).

        ``identity`` is ``ResolvedModel.identity``: provider and model names (and the provider's
        ``cache_namespace``), so the same request to a moved or respelled endpoint still hits."""
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

    def import_from(self, path: str | Path) -> int:
        """Copy every entry of another response-cache file (opened read-only) that this one lacks;
        returns how many were copied. ArtifactError when ``path`` is not a response cache."""
        source = Path(path)
        if not source.is_file():
            raise ArtifactError(f"no response cache at {source}")
        with self._lock:
            try:
                self._db.execute("ATTACH DATABASE ? AS source", (_uri(source, "ro"),))
            except sqlite3.Error as exc:
                raise ArtifactError(f"{source} is not a SQLite file ({exc})") from None
            try:
                _check_responses_table(self._db, "source", source)
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO main.responses (key, column_name, value, created) "
                    "SELECT key, column_name, value, created FROM source.responses")
                return max(cursor.rowcount, 0)
            finally:
                self._db.execute("DETACH DATABASE source")

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
