"""``gristmill models list | check``: the configured models, and whether each one answers.

    gristmill models list [--providers FILE] [--models FILE]
    gristmill models check [ALIAS]... [--providers FILE] [--models FILE]

Files default to ``providers.yaml`` / ``models.yaml`` in ``$GRISTMILL_HOME`` (``~/.gristmill``).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gristmill.errors import GristmillError
from gristmill.llm.registry import ModelRegistry, gristmill_home
from gristmill.llm.runtime import LLMRuntime

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
console = Console()

ProvidersOption = Annotated[Path | None, typer.Option("--providers", help="providers.yaml to use.")]
ModelsOption = Annotated[Path | None, typer.Option("--models", help="models.yaml to use.")]
CHECK_PROMPT = [{"role": "user", "content": "Reply with the single word OK."}]


def _registry(providers: Path | None, models: Path | None) -> ModelRegistry:
    try:
        return ModelRegistry.load(providers=providers, models=models)
    except GristmillError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from None


@app.command("list")
def list_models(providers: ProvidersOption = None, models: ModelsOption = None) -> None:
    """Show every model alias with its provider, endpoint and parameters (never the API key)."""
    registry = _registry(providers, models)
    table = Table("alias", "provider", "model", "endpoint", "parameters", "max parallel")
    for alias in registry.aliases():
        try:
            resolved = registry.resolve(alias)
        except GristmillError as exc:  # e.g. a model naming an unknown provider: show it, go on
            model = registry.models.get(alias)
            table.add_row(escape(alias), escape(model.provider) if model else "-",
                          escape(model.model) if model else "-", f"[red]error: {escape(str(exc))}[/]", "-", "-")
            continue
        params = resolved.model.inference_parameters.model_dump(exclude_none=True, exclude_defaults=True)
        table.add_row(alias, resolved.provider.name, resolved.model.model,
                      resolved.provider.endpoint or f"({resolved.provider.provider_type})",
                      ", ".join(f"{k}={v}" for k, v in params.items()) or "-",
                      str(resolved.model.max_parallel_requests))
    console.print(table)
    console.print(f"[dim]from {gristmill_home()}[/]")


async def _check_one(runtime: LLMRuntime, alias: str) -> tuple[bool, str]:
    try:
        runtime.check_aliases({alias})
        # One attempt, no retries: the point is to see the endpoint's own answer.
        handle = runtime.model(alias).without_retries()
        # The model's own parameters only: newer OpenAI models refuse 'max_tokens', so the check
        # sends it only when the model config does (the prompt keeps the answer tiny anyway).
        body = handle.build_body(list(CHECK_PROMPT))
        started = time.perf_counter()
        completion = await handle.complete(body, defaultdict(int))
    except GristmillError as exc:
        return False, f"{type(exc).__name__}: {exc}"
    latency = (time.perf_counter() - started) * 1000
    return True, f"{latency:.0f} ms, answered {completion.content.strip()[:40]!r}"


@app.command("check")
def check_models(aliases: Annotated[list[str] | None, typer.Argument(help="Aliases to check (all).")] = None,
                 providers: ProvidersOption = None, models: ModelsOption = None) -> None:
    """Send one tiny request per model: prints its latency or the exact error. Exit 1 if any failed."""
    registry = _registry(providers, models)
    runtime = LLMRuntime(registry)
    names = aliases or registry.aliases()

    async def run_all() -> list[tuple[bool, str]]:
        try:
            return list(await asyncio.gather(*(_check_one(runtime, a) for a in names)))
        finally:
            await runtime.aclose()

    results = asyncio.run(run_all())
    for alias, (ok, text) in zip(names, results, strict=True):
        mark = "[green]ok[/]" if ok else "[bold red]failed[/]"
        console.print(f"{mark} {escape(alias)}: {escape(text)}", highlight=False, soft_wrap=True)
    if not all(ok for ok, _ in results):
        raise typer.Exit(1)
