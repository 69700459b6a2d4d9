"""The test server in its own process, for benchmarks and crash tests (its counters survive
the death of the process under test)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from typing import Any


class ServerProcess:
    """``python -m gristmill.testing.server`` as a context manager; counters over HTTP.

    >>> with ServerProcess(latency=0.05) as server:   # doctest: +SKIP
    ...     server.stats()["completions"]
    0
    """

    def __init__(self, **behavior: Any) -> None:
        self.behavior = behavior
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    @property
    def root(self) -> str:
        return self.url.removesuffix("/v1")

    def start(self) -> ServerProcess:
        args = [sys.executable, "-m", "gristmill.testing.server"]
        for name, value in self.behavior.items():
            if value is not None:
                args += [f"--{name.replace('_', '-')}", str(value)]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"test server did not start: {line!r}")
        self.url = line.split()[-1]
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self.proc = None

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(self.root + path, data=data, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/stats")  # type: ignore[no-any-return]

    def configure(self, **changes: Any) -> None:
        self._call("POST", "/control", changes)

    def reset_stats(self) -> None:
        self._call("POST", "/reset", {})
