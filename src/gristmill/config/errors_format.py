"""Turn pydantic validation errors into one clear ConfigError naming the field."""

from __future__ import annotations

import re

from pydantic import ValidationError

from gristmill.errors import ConfigError

_NESTED_PATH = re.compile(r"^((?:params|conditional_params\[[^\]]*\])(?:\.[\w\[\]]+)*): (.*)$", re.S)


def format_location(loc: tuple[int | str, ...]) -> str:
    """('columns', 2, 'params', 'low') -> 'columns[2].params.low'."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "<config>"


def config_error(exc: ValidationError, *, source: str = "config", prefix: tuple[int | str, ...] = ()) -> ConfigError:
    """A ConfigError listing each invalid field as 'where: what'."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in (*prefix, *err["loc"]) if not (isinstance(p, str) and p.startswith("function-")))
        message = err["msg"].removeprefix("Value error, ")
        where = format_location(loc)
        nested = _NESTED_PATH.match(message)
        if nested:  # a validator reported a field below this location ("params.low: ...")
            where, message = (f"{where}.{nested[1]}" if loc else nested[1]), nested[2]
        lines.append(f"{where}: {message}")
    detail = "; ".join(lines)
    return ConfigError(f"invalid {source}: {detail}")


def first_problem(exc: ValidationError, *, prefix: str = "") -> str:
    """'where: what' of the first invalid field (for one-line errors about stored files)."""
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in (*([prefix] if prefix else []), *first["loc"])) or "<root>"
    return f"{where}: {first['msg']}"
