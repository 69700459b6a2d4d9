"""Exclusive lock on a dataset or workflow directory for the length of a run.

The lock is an OS file lock (``filelock``: ``flock`` on POSIX), so the kernel releases it when
the holding process dies: a lock left by a crashed or SIGKILLed run is recovered by simply
acquiring it. Who holds it (pid, host, start time) is written beside it so a refused run
can name the holder. Once held, temp files that a killed writer left in the directory are
removed (``remove_orphan_temp_files``): nobody else may write there now.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from filelock import FileLock, Timeout

from gristmill.errors import ArtifactError, ConfigError, LockedError
from gristmill.storage.atomic import remove_orphan_temp_files, write_json_atomic
from gristmill.storage.layout import LOCK_FILE, MAX_NAME_BYTES

# The holder writes its file just after it takes the lock; a run refused in between waits this
# long for it rather than saying "holder unknown".
_HOLDER_WAIT_SECONDS = 0.5


class DirectoryLock:
    """``with DirectoryLock(path):`` holds ``path/.gristmill.lock`` or raises ``LockedError`` at once."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = FileLock(str(directory / LOCK_FILE), timeout=0)
        self._holder_path = directory / f"{LOCK_FILE}.json"

    def acquire(self) -> None:
        """Take the lock, record the holder, clear orphan temp files; ``LockedError`` when held."""
        self._make_directory()
        try:
            self._lock.acquire()
        except Timeout:
            raise LockedError(f"{self.directory} is locked by {self._describe_holder()}; wait for it to finish "
                              "or stop it, then run again") from None
        except OSError as exc:  # a read-only directory, or one owned by another user
            raise ArtifactError(f"cannot lock {self.directory}: {exc.strerror or exc}; a run needs write access "
                                "to it (choose another artifact path, or fix its permissions)") from None
        try:
            write_json_atomic(self._holder_path, {
                "pid": os.getpid(), "host": socket.gethostname(),
                "started_at": datetime.now(UTC).isoformat(timespec="seconds")})
            remove_orphan_temp_files(self.directory)
        except OSError as exc:
            self._lock.release()
            raise ArtifactError(f"cannot write in {self.directory}: {exc.strerror or exc}; a run needs write "
                                "access to it (choose another artifact path, or fix its permissions)") from None

    def _make_directory(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                raise ConfigError(f"cannot create {self.directory}: a name in it is longer than the "
                                  f"{MAX_NAME_BYTES} bytes a filesystem allows; choose a shorter name") from None
            raise ArtifactError(f"cannot create {self.directory}: {exc.strerror or exc}; choose a writable "
                                "artifact path") from None

    def release(self) -> None:
        self._holder_path.unlink(missing_ok=True)
        self._lock.release()

    def _describe_holder(self) -> str:
        """Who holds the lock, from the holder file (waiting briefly for a holder still writing it)."""
        deadline = time.monotonic() + _HOLDER_WAIT_SECONDS
        while True:
            info = self._read_holder()
            if info is not None or time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        if info is None:
            return "another run (holder unknown: it did not record itself)"
        pid, host = info.get("pid"), info.get("host")
        started = info.get("started_at", "?")
        if pid == os.getpid() and host == socket.gethostname():
            return (f"this process (pid {pid}, since {started}): another run in this same process still holds it, "
                    "e.g. an earlier call in a notebook that is still running or was interrupted without release")
        return f"another run (pid {pid} on {host}, started {started})"

    def _read_holder(self) -> dict[str, object] | None:
        try:
            info = json.loads(self._holder_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) and "pid" in info and "host" in info else None

    def __enter__(self) -> DirectoryLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
