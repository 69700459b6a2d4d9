"""Exclusive lock on a dataset or workflow directory for the length of a run.

The lock is an OS file lock (``filelock``: ``flock`` on POSIX), so the kernel releases it when
the holding process dies: a lock left by a crashed or SIGKILLed run is recovered by simply
acquiring it. Who holds it (pid, host, start time) is written beside it so a refused run
can name the holder.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from filelock import FileLock, Timeout

from gristmill.errors import ArtifactError, LockedError
from gristmill.storage.atomic import write_json_atomic
from gristmill.storage.layout import LOCK_FILE


class DirectoryLock:
    """``with DirectoryLock(path):`` holds ``path/.gristmill.lock`` or raises ``LockedError`` at once."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = FileLock(str(directory / LOCK_FILE), timeout=0)
        self._holder_path = directory / f"{LOCK_FILE}.json"

    def acquire(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ArtifactError(f"cannot create {self.directory}: {exc.strerror or exc}; choose a writable "
                                "artifact path") from None
        try:
            self._lock.acquire()
        except Timeout:
            raise LockedError(f"{self.directory} is locked by another run ({self._describe_holder()}); "
                              "wait for it to finish or stop it, then run again") from None
        write_json_atomic(self._holder_path, {
            "pid": os.getpid(), "host": socket.gethostname(),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds")})

    def release(self) -> None:
        self._holder_path.unlink(missing_ok=True)
        self._lock.release()

    def _describe_holder(self) -> str:
        try:
            info = json.loads(self._holder_path.read_text(encoding="utf-8"))
            return f"pid {info['pid']} on {info['host']}, started {info['started_at']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "holder unknown"

    def __enter__(self) -> DirectoryLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
