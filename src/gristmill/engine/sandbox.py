"""The bounded Jinja sandbox every template renders in: immutable, and limited per cell.

Configs are data, and a template is part of a config, so a shared config must not be able
to hang a run or fill its memory. Jinja's sandbox already refuses unsafe attributes and
caps ``range()`` at 100,000 items per call; it does not bound time or output. This module
adds a per-cell *budget* (a deadline and an output size), checked:

- on every loop iteration (each ``{% for %}`` iterable is wrapped at parse time),
- on every call, attribute and item access, filter and binary ``*`` / ``**`` the template makes,
- on every chunk of output, and on the size of what each call or filter returns.

A cell over its budget raises :class:`TemplateLimitError`; ``templates.render_column`` turns it
into a ``GenerationError`` naming the template, the row and the limit.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, nodes, pass_context
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum

from gristmill.config.run import RunConfig

DEFAULT_TIME_LIMIT = 1.0
"""Seconds one cell's template may take to render (``RunConfig.template_time_limit``)."""
DEFAULT_OUTPUT_LIMIT = 1_000_000
"""Characters one cell's template may produce (``RunConfig.template_output_limit``)."""

_ITER_FILTER = "__gristmill_bounded_iter"
# Filters whose width argument multiplies the output: refused before they allocate.
_WIDTH_FILTERS = frozenset({"center", "indent"})


@dataclass(frozen=True)
class TemplateLimits:
    """Bounds of one cell's render: wall-clock seconds and output characters.

    >>> TemplateLimits(time_limit=5.0).output_limit
    1000000
    """

    time_limit: float = DEFAULT_TIME_LIMIT
    output_limit: int = DEFAULT_OUTPUT_LIMIT

    @classmethod
    def from_run_config(cls, run_config: RunConfig) -> TemplateLimits:
        """The limits a run asks for (``RunConfig.template_time_limit`` / ``template_output_limit``),
        the module defaults where it does not say."""
        time_limit, output_limit = run_config.template_time_limit, run_config.template_output_limit
        return cls(time_limit=DEFAULT_TIME_LIMIT if time_limit is None else float(time_limit),
                   output_limit=DEFAULT_OUTPUT_LIMIT if output_limit is None else int(output_limit))


class TemplateLimitError(Exception):
    """A cell went over its time or output budget (internal: rendered as a GenerationError)."""


class _Budget:
    """One cell's remaining allowance; lives in a thread-local while the cell renders."""

    def __init__(self, limits: TemplateLimits) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.time_limit

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise TemplateLimitError(f"rendering took longer than the time limit of {self.limits.time_limit:g} s "
                                     "per cell")

    def check_size(self, size: int, what: str = "output") -> None:
        if size > self.limits.output_limit:
            raise TemplateLimitError(f"{what} ({size:,} characters) is over the output limit of "
                                     f"{self.limits.output_limit:,} characters per cell")


_state = threading.local()
# Outside a cell (compile time, a test calling a filter directly) the defaults still bound work.
_UNBOUNDED_TIME = TemplateLimits(time_limit=math.inf)


def _budget() -> _Budget:
    budget: _Budget | None = getattr(_state, "budget", None)
    return budget if budget is not None else _Budget(_UNBOUNDED_TIME)


class cell_budget:  # noqa: N801  (used as a context manager, like contextlib's lower-case ones)
    """Context manager: the template renders inside it are bounded by ``limits``."""

    def __init__(self, limits: TemplateLimits) -> None:
        self.budget = _Budget(limits)
        self._previous: _Budget | None = None

    def __enter__(self) -> _Budget:
        self._previous = getattr(_state, "budget", None)
        _state.budget = self.budget
        return self.budget

    def __exit__(self, *exc: object) -> None:
        _state.budget = self._previous


def _sized(value: object) -> int:
    return len(value) if isinstance(value, str | bytes | list | tuple | dict) else 0


def _check_result(value: object) -> None:
    size = _sized(value)
    if size:
        _budget().check_size(size, "a value")


def _bounded_iter(value: Iterable[Any]) -> Iterator[Any]:
    """Iterate ``value``, checking the deadline on every item (wraps every for-loop)."""
    budget = _budget()
    for item in value:
        budget.tick()
        yield item


@pass_context
def _iter_filter(context: Context, value: Iterable[Any]) -> Iterator[Any]:
    # pass_context keeps Jinja from calling this at compile time (it cannot fold a context filter).
    return _bounded_iter(value)


def _bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` with a deadline check before and a size check after (``wraps`` keeps Jinja's
    pass_context / pass_environment marker)."""

    @functools.wraps(func)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        budget.tick()
        if name in _WIDTH_FILTERS:
            _check_widths(budget, args, kwargs)
        result = func(*args, **kwargs)
        _check_result(result)
        return result

    return bounded


def _check_widths(budget: _Budget, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool):
            budget.check_size(value, "a width")


def _bounded_lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002
    """Jinja's ``lipsum()``, refused when it could exceed the output limit (words of up to 12
    characters), so ``lipsum(n=10000000)`` fails at once instead of running for minutes."""
    _budget().check_size(n * max * 12, f"lipsum(n={n}, max={max}) output, up to")
    return str(generate_lorem_ipsum(n=n, html=html, min=min, max=max))


def _check_binop(budget: _Budget, operator: str, left: Any, right: Any) -> None:
    """Refuse ``'x' * 10**9`` and ``10 ** 10**9`` before Python starts computing them."""
    if operator == "*":
        for seq, times in ((left, right), (right, left)):
            if _sized(seq) and isinstance(times, int):
                budget.check_size(_sized(seq) * times, "a repeated value")
    elif operator == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0:
        budget.check_size(int(right * math.log10(abs(left))) + 1, "a power's digits")


def _wrap_loops(template: nodes.Template) -> nodes.Template:
    """Wrap every for-loop's iterable in the bounded iterator, so even a loop with an empty
    body (which makes no call the sandbox could see) checks the deadline per iteration."""
    for loop in list(template.find_all(nodes.For)):
        loop.iter = nodes.Filter(loop.iter, _ITER_FILTER, [], [], None, None, lineno=loop.iter.lineno)
    return template


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox with per-cell time and output budgets (see the module docstring)."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self) -> None:
        # optimized=False: constant folding would run filters at compile time, outside any budget.
        super().__init__(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True,
                         optimized=False)
        self.filters = {name: _bounded_filter(name, func) for name, func in self.filters.items()}
        self.filters[_ITER_FILTER] = _iter_filter
        self.globals["lipsum"] = _bounded_lipsum

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        return _wrap_loops(super()._parse(source, name, filename))

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Every call a template makes: deadline before, size of the result after."""
        _budget().tick()
        result = super().call(context, obj, *args, **kwargs)
        _check_result(result)
        return result

    def getattr(self, obj: Any, attribute: str) -> Any:
        _budget().tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _budget().tick()
        return super().getitem(obj, argument)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        budget = _budget()
        budget.tick()
        _check_binop(budget, operator, left, right)
        return super().call_binop(context, operator, left, right)
