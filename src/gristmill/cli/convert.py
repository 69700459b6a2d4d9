"""``gristmill convert FILE``: a reference-tool (NeMo Data Designer) config as a gristmill config.

The config goes to stdout as YAML, so ``gristmill convert reference.yaml > gristmill.yaml`` works;
what could not be mapped, and what maps with a different behaviour, goes to stderr, one line each
with the line of the reference file it comes from. Model providers and tool configs are not part of
a dataset config: ``--providers FILE`` and ``--tools FILE`` write them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

import gristmill as gm
from gristmill.cli.errors import DebugOption, err_console, user_errors
from gristmill.convert import ConversionLine, ConversionResult, convert_reference_config

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def register(app: typer.Typer) -> None:
    """Add the ``convert`` command to ``app``."""
    app.command("convert")(convert)


@user_errors
def convert(
    file: Annotated[Path, typer.Argument(help="The reference tool's config (YAML or JSON).")],
    providers: Annotated[Path | None, typer.Option(
        "--providers", help="Write the config's model providers to this providers.yaml.")] = None,
    tools: Annotated[Path | None, typer.Option(
        "--tools", help="Write the config's tool configs to this tools.yaml (add the MCP servers by hand).")] = None,
    debug: DebugOption = False,
) -> None:
    """Print FILE, a NeMo Data Designer config, as a gristmill config; list what did not map on stderr."""
    text = _read(file)
    data = _parse(text, file)
    result = convert_reference_config(data)
    typer.echo(yaml.safe_dump(result.config, sort_keys=False, allow_unicode=True), nl=False)
    _write_providers(result, providers)
    _write_tools(result, tools)
    lines = _line_numbers(text)
    for kind, entries in (("not mapped", result.unmapped), ("note", result.notes)):
        for entry in entries:
            err_console.print(f"{kind}: {file}:{_line_of(entry, lines)}: {entry}", highlight=False, markup=False,
                              soft_wrap=True)


def _read(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except OSError as exc:
        raise gm.ConfigError(f"cannot read {str(file)!r}: {exc.strerror or exc}") from None


def _parse(text: str, file: Path) -> Any:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise gm.ConfigError(f"{str(file)!r} is not valid YAML or JSON: {exc}") from None
    if not isinstance(data, dict):
        raise gm.ConfigError(f"{str(file)!r} must hold a mapping with 'columns' (a Data Designer config)")
    return data


def _write_providers(result: ConversionResult, path: Path | None) -> None:
    if not result.providers:
        return
    if path is None:
        names = ", ".join(str(p.get("name")) for p in result.providers)
        result.skip("model_providers", f"providers ({names}) belong in providers.yaml; rerun with "
                                       "--providers providers.yaml to write them")
        return
    path.write_text(yaml.safe_dump(result.providers, sort_keys=False, allow_unicode=True), encoding="utf-8")
    err_console.print(f"wrote {len(result.providers)} provider(s) to {path}", highlight=False, markup=False,
                      soft_wrap=True)


def _write_tools(result: ConversionResult, path: Path | None) -> None:
    """``tools.yaml`` holds ``tool_providers`` and ``tool_configs``; only the configs come from the
    reference config (its MCP servers are declared in Python), so the file has a comment for the rest."""
    if not result.tool_configs:
        return
    if path is None:
        names = ", ".join(str(c.get("alias")) for c in result.tool_configs)
        result.skip("tool_configs", f"tool configs ({names}) belong in tools.yaml; rerun with --tools tools.yaml "
                                    "to write them")
        return
    body = yaml.safe_dump({"tool_configs": result.tool_configs}, sort_keys=False, allow_unicode=True)
    path.write_text("# Add the MCP servers these tool configs name under tool_providers (docs/tools.md).\n" + body,
                    encoding="utf-8")
    err_console.print(f"wrote {len(result.tool_configs)} tool config(s) to {path}", highlight=False, markup=False,
                      soft_wrap=True)


def _line_numbers(text: str) -> dict[str, int]:
    """Path in the converter's notation ('columns[2].params.end') -> 1-based line in the file."""
    lines: dict[str, int] = {}

    def walk(node: yaml.Node, path: str) -> None:
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                name = str(key.value)
                child = (f"{path}.{name}" if path else name) if _IDENTIFIER.match(name) else f"{path}[{name!r}]"
                lines[child] = key.start_mark.line + 1
                walk(value, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, f"{path}[{index}]")

    root = yaml.compose(text)
    if root is not None:
        walk(root, "")
    return lines


def _line_of(entry: ConversionLine, lines: dict[str, int]) -> int:
    """The line of the entry's path, or of its nearest parent that the file spells out."""
    path = entry.path
    while path and path not in lines:
        path = re.sub(r"(\.[^.\[]*|\[[^\[\]]*\])$", "", path) if re.search(r"[.\[]", path) else ""
    return lines.get(path, 1)
