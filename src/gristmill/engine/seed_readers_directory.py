"""The ``directory`` seed reader: one row per file of a folder, with its relative path and text.

``seed: {source: src/, reader: directory, reader_options: {glob: "*.py"}}`` gives the columns
``path`` (relative to the folder, ``/``-separated), ``content`` (the file's UTF-8 text) and
``size`` (bytes), rows sorted by ``path``. Hidden files and folders (a name starting with ``.``)
are left out unless ``include_hidden``; symlinked folders are not followed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

import pyarrow as pa

from gristmill.errors import SeedDatasetError

BinaryPolicy = Literal["error", "skip", "bytes"]
_BINARY_POLICIES = ("error", "skip", "bytes")


def read_directory(source: Path | str, *, glob: str | list[str] = "*", exclude: str | list[str] | None = None,
                   binary: BinaryPolicy = "error", include_hidden: bool = False) -> pa.Table:
    """One row per file under ``source`` whose relative path matches ``glob`` and no ``exclude``
    pattern. A pattern without ``/`` matches the file name at any depth (``*.py``); one with ``/``
    matches the whole relative path, ``**`` standing for any number of folders (``src/**/*.py``).

    A file that is not UTF-8 text is an error naming it, unless ``binary`` is ``"skip"`` (leave
    such files out) or ``"bytes"`` (add a ``bytes`` column with every file's raw bytes; ``content``
    is null for the files that are not text).
    """
    root = Path(source)
    if not root.is_dir():
        raise SeedDatasetError(f"the directory seed reader reads a folder; {str(source)!r} is not one")
    if binary not in _BINARY_POLICIES:
        raise SeedDatasetError(f"directory seed reader: binary must be one of {', '.join(_BINARY_POLICIES)}, "
                               f"got {binary!r}")
    include = _patterns(glob, "glob")
    excluded = _patterns(exclude or [], "exclude")
    names = [rel for rel in _walk(root, include_hidden)
             if any(p.fullmatch(rel) for p in include) and not any(p.fullmatch(rel) for p in excluded)]
    if not names:
        raise SeedDatasetError(f"seed directory {str(source)!r} holds no files matching glob {glob!r}"
                               f"{f' (exclude {exclude!r})' if exclude else ''}; check the pattern")
    return _rows(root, sorted(names), binary)


def _rows(root: Path, names: list[str], binary: BinaryPolicy) -> pa.Table:
    paths: list[str] = []
    texts: list[str | None] = []
    sizes: list[int] = []
    raw: list[bytes] = []
    for name in names:
        data = (root / name).read_bytes()
        text = _text(data)
        if text is None and binary == "error":
            raise SeedDatasetError(f"seed file {name!r} in directory {str(root)!r} is not UTF-8 text; leave it out "
                                   "with the reader option `glob` or `exclude`, or set `binary: skip` (drop such "
                                   "files) or `binary: bytes` (keep every file's raw bytes in a `bytes` column)")
        if text is None and binary == "skip":
            continue
        paths.append(name)
        texts.append(text)
        sizes.append(len(data))
        raw.append(data)
    columns: dict[str, pa.Array] = {"path": pa.array(paths, pa.string()), "content": pa.array(texts, pa.string()),
                                    "size": pa.array(sizes, pa.int64())}
    if binary == "bytes":
        columns["bytes"] = pa.array(raw, pa.binary())
    return pa.table(columns)


def _text(data: bytes) -> str | None:
    """The UTF-8 text of ``data``; None for binary content (undecodable, or holding NUL bytes)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if "\x00" in text else text


def _walk(root: Path, include_hidden: bool) -> list[str]:
    """Relative ``/``-separated paths of the files under ``root`` (symlinked folders not followed)."""
    found: list[str] = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        if not include_hidden:
            dirs[:] = [d for d in dirs if not d.startswith(".")]
        base = Path(folder).relative_to(root)
        found.extend((base / f).as_posix() for f in files if include_hidden or not f.startswith("."))
    return found


def _patterns(value: str | list[str], option: str) -> list[re.Pattern[str]]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(p, str) and p for p in items):
        raise SeedDatasetError(f"directory seed reader: {option} must be a pattern or a list of patterns "
                               f"('*.py', 'src/**/*.md'), got {value!r}")
    return [glob_to_regex(p) for p in items]


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """A compiled regex for ``pattern`` over ``/``-separated relative paths: ``*`` and ``?`` stay
    within one name, ``**/`` spans folders, ``[...]`` is a character class; a pattern without ``/``
    matches a file name in any folder."""
    if "/" not in pattern:
        pattern = "**/" + pattern
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        else:
            token, i = _glob_token(pattern, i)
            out.append(token)
    return re.compile("".join(out))


def _glob_token(pattern: str, i: int) -> tuple[str, int]:
    char = pattern[i]
    if char == "*":
        return "[^/]*", i + 1
    if char == "?":
        return "[^/]", i + 1
    if char == "[":
        end = pattern.find("]", i + 2)  # a ']' right after '[' (or '[!') belongs to the class
        if end != -1:
            body = pattern[i + 1:end]
            body = "^" + body[1:] if body.startswith("!") else body
            return f"[{body.replace(chr(92), chr(92) * 2)}]", end + 1
    return re.escape(char), i + 1


__all__ = ["glob_to_regex", "read_directory"]
