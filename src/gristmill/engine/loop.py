"""One asyncio loop per ``Mill``, on a background thread.

Connection pools and throttles are bound to a loop; keeping one loop for the Mill's life
lets every dataset and workflow stage share them, and works the same in scripts and in
notebooks (whose main thread already runs a loop).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class BackgroundLoop:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="gristmill-loop", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for it; Ctrl-C cancels it and re-raises."""
        future = asyncio.run_coroutine_threadsafe(coro, self._ensure())
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()
            raise

    def close(self) -> None:
        with self._lock:
            if self._loop is not None and self._thread is not None:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(timeout=5)
                # A loop still running (a render that ignores Ctrl-C for longer) cannot be
                # closed; its daemon thread ends with the process.
                if not self._thread.is_alive():
                    self._loop.close()
            self._loop, self._thread = None, None
