"""Column dependency graph: which column reads which, in what order to generate them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from gristmill.config.columns import ColumnConfig
from gristmill.errors import ConfigError


def generation_order(columns: Sequence[ColumnConfig], *, available: Iterable[str] = ()) -> list[ColumnConfig]:
    """Columns sorted so each comes after every column it reads (stable: config order breaks ties).

    ``available`` names columns that exist before generation (seed columns). Raises
    ``ConfigError`` naming a missing reference or the columns of a cycle.
    """
    available = set(available)
    producer: dict[str, ColumnConfig] = {}
    for column in columns:
        for out in column.output_columns():
            if out in available:
                raise ConfigError(f"column {out!r} is both a seed column and a generated column; rename the "
                                  "generated column or drop it from the seed")
            producer[out] = column
    deps: dict[str, set[str]] = {}
    for column in columns:
        needed = set()
        for ref in sorted(column.dependencies()):
            if ref in available:
                continue
            if ref not in producer:
                known = sorted(available | set(producer))
                raise ConfigError(f"column {column.name!r} references {ref!r}, which is not a column "
                                  f"(known: {', '.join(known) or 'none'})")
            if producer[ref] is not column:
                needed.add(producer[ref].name)
            else:  # its own name, or another column it writes itself
                what = "itself" if ref == column.name else f"{ref!r}, which it writes itself"
                raise ConfigError(f"column {column.name!r} references {what}")
        deps[column.name] = needed
    return _topological(columns, deps)


def _topological(columns: Sequence[ColumnConfig], deps: dict[str, set[str]]) -> list[ColumnConfig]:
    done: set[str] = set()
    order: list[ColumnConfig] = []
    remaining = list(columns)
    while remaining:
        ready = [c for c in remaining if deps[c.name] <= done]
        if not ready:
            raise ConfigError(f"columns {', '.join(repr(c.name) for c in remaining if _in_cycle(c.name, deps))} "
                              "form a dependency cycle; break it by removing one reference")
        for column in ready:
            order.append(column)
            done.add(column.name)
        remaining = [c for c in remaining if c.name not in done]
    return order


def _in_cycle(start: str, deps: dict[str, set[str]]) -> bool:
    stack, seen = list(deps.get(start, ())), set()
    while stack:
        node = stack.pop()
        if node == start:
            return True
        if node not in seen:
            seen.add(node)
            stack.extend(deps.get(node, ()))
    return False
