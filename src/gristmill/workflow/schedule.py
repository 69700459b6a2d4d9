"""Runs the stages of a DAG as their parents finish, independent branches in parallel threads.

The scheduler knows nothing about datasets: it calls ``work(name)`` for every stage once all
its parents succeeded, and ``done(name, value)`` on the calling thread with what it returned.
A stage whose only company is itself (a linear chain, always) runs on the calling thread, as
before DAGs: Ctrl-C reaches it and tracebacks stay simple. When several stages are ready they
run in a small thread pool; they share the Mill's services (its one event loop, throttles and
response cache are safe to use from several threads).

A failure does not stop independent branches: every stage that does not descend from a failed
one still runs and records its result (paid work is kept), then the first failure is raised.
Ctrl-C while branches run in threads starts nothing new and waits for the running stages (a
second Ctrl-C stops waiting); a stage cut off that way resumes on the next run.
"""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TypeVar

T = TypeVar("T")

#: At most this many stages run at once: branches share one event loop and the model throttles,
#: so more threads add little but contention.
MAX_PARALLEL_STAGES = 4


def run_dag(order: Sequence[str], parents: Mapping[str, Sequence[str]], work: Callable[[str], T],
            done: Callable[[str, T], None], *, max_parallel: int = MAX_PARALLEL_STAGES) -> None:
    """Run ``work`` for every stage of ``order`` (parents listed before children) once its
    parents succeeded; raise the first failure after every independent stage has finished."""
    state = _State(order, parents)
    with cf.ThreadPoolExecutor(max_workers=max(1, max_parallel), thread_name_prefix="gristmill-stage") as pool:
        running: dict[cf.Future[T], str] = {}
        try:
            while True:
                ready = state.ready(exclude=running.values())
                if not ready and not running:
                    break
                if len(ready) == 1 and not running:  # nothing else to do meanwhile: run it here
                    state.finish(ready[0], _call(work, ready[0]), done)
                    continue
                for name in ready[: max(0, max_parallel - len(running))]:
                    running[pool.submit(work, name)] = name
                finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for future in finished:
                    name = running.pop(future)
                    value: T | _Failed = _outcome(future)
                    state.finish(name, value, done)
        except BaseException:
            for future in running:
                future.cancel()
            raise
    if state.failure is not None:
        raise state.failure


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def _call(work: Callable[[str], T], name: str) -> T | _Failed:
    try:
        return work(name)
    except Exception as exc:  # kept, raised once the independent branches are done
        return _Failed(exc)


def _outcome(future: cf.Future[T]) -> T | _Failed:
    error = future.exception()
    return _Failed(error) if error is not None else future.result()


class _State:
    def __init__(self, order: Sequence[str], parents: Mapping[str, Sequence[str]]) -> None:
        self.pending = list(order)
        self.parents = parents
        self.succeeded: set[str] = set()
        self.blocked: set[str] = set()  # failed, or descends from a failed stage
        self.failure: BaseException | None = None

    def ready(self, *, exclude: Collection[str]) -> list[str]:
        running = set(exclude)
        for name in self.pending:  # descendants of a failure never run
            if name not in running and any(p in self.blocked for p in self.parents.get(name, ())):
                self.blocked.add(name)
        self.pending = [n for n in self.pending if n not in self.blocked]
        return [n for n in self.pending
                if n not in running and all(p in self.succeeded for p in self.parents.get(n, ()))]

    def finish(self, name: str, value: T | _Failed, done: Callable[[str, T], None]) -> None:
        self.pending.remove(name)
        if isinstance(value, _Failed):
            self.blocked.add(name)
            self.failure = self.failure or value.error
            return
        self.succeeded.add(name)
        done(name, value)
