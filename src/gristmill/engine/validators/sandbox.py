"""Run one Python snippet in a subprocess: the ``execute: true`` option of the python validator.

The snippet runs as ``python -I snippet.py`` in a fresh temporary directory (also its HOME and
TMPDIR), in its own session, with stdin closed and an environment holding only ``PATH`` (so
API keys in the parent's environment are not visible). It is stopped (its whole process group
killed) when it outlives ``timeout`` or prints more than ``max_output_bytes``. This limits
accidents, not attacks: the code can still read files and open connections as the user.
POSIX only (process groups, ``select`` on pipes).
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SNIPPET_NAME = "snippet.py"
_TRACEBACK_LINE = re.compile(rf'File ".*{re.escape(SNIPPET_NAME)}", line (\d+)')


class SandboxError(Exception):
    """The check itself could not run (no interpreter, no ruff): the cells fail, nothing is judged."""


@dataclass(frozen=True)
class RunProblem:
    """Why a snippet's run made it invalid."""

    message: str
    code: str  # "timeout", "output-limit" or "exit-status"
    line: int | None = None


def run_snippet(code: str, *, timeout: float, max_output_bytes: int) -> RunProblem | None:
    """Run ``code``; None when it exits with status 0 in time, else what went wrong."""
    with tempfile.TemporaryDirectory(prefix="gristmill-run-") as tmp:
        (Path(tmp) / SNIPPET_NAME).write_text(code, encoding="utf-8")
        env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": tmp, "TMPDIR": tmp, "PYTHONIOENCODING": "utf-8"}
        try:
            process = subprocess.Popen([sys.executable, "-I", SNIPPET_NAME], cwd=tmp, env=env,
                                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        except OSError as exc:
            raise SandboxError(f"cannot start {sys.executable}: {exc}") from None
        with process:
            output, stopped = _collect(process, timeout, max_output_bytes)
    if stopped == "timeout":
        return RunProblem(f"did not finish within {timeout:g} s", "timeout")
    if stopped == "output-limit":
        return RunProblem(f"printed more than {max_output_bytes} bytes", "output-limit")
    if process.returncode == 0:
        return None
    text = output.decode("utf-8", errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    where = _TRACEBACK_LINE.findall(text)
    detail = lines[-1].strip() if lines else "no output"
    return RunProblem(f"exited with status {process.returncode}: {detail}", "exit-status",
                      int(where[-1]) if where else None)


def _collect(process: subprocess.Popen[bytes], timeout: float, limit: int) -> tuple[bytes, str | None]:
    """The process's output until it exits, or until it runs out of time or prints too much
    (then it is killed); the second value names why it was stopped."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    output = bytearray()
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return _kill(process, output, "timeout")
            if not selector.select(left):
                continue
            data = os.read(process.stdout.fileno(), 65536)
            if not data:
                break
            output += data
            if len(output) > limit:
                return _kill(process, output, "output-limit")
    try:  # output closed: the process is exiting (or closed its stdout and runs on)
        process.wait(max(deadline - time.monotonic(), 0.001))
    except subprocess.TimeoutExpired:
        return _kill(process, output, "timeout")
    return bytes(output), None


def _kill(process: subprocess.Popen[bytes], output: bytearray, why: str) -> tuple[bytes, str]:
    try:
        os.killpg(process.pid, signal.SIGKILL)  # the snippet's children too
    except ProcessLookupError:
        pass
    process.wait()
    return bytes(output), why
