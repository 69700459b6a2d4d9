"""What a new user reads first: ``gristmill --help`` and each command's ``--help`` (run as a user
runs them, in a subprocess), and the bill lines of ``--dry-run`` / ``gristmill plan``."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import typer

from gristmill.cli.main import app
from gristmill.config.models import ModelPrice
from gristmill.engine.bill import ColumnBill, DatasetBill


def command_paths() -> list[tuple[str, ...]]:
    """Every command and group below the top-level app, as the words that name it."""
    def walk(command: Any, path: tuple[str, ...]) -> list[tuple[str, ...]]:
        found = [path]
        for name, sub in getattr(command, "commands", {}).items():  # a group (typer bundles its own click)
            found += walk(sub, (*path, name))
        return found

    return walk(typer.main.get_command(app), ())


PATHS = command_paths()


@pytest.fixture(scope="module")
def help_texts() -> dict[tuple[str, ...], str]:
    """``--help`` of every command, at a terminal 100 columns wide (run side by side: each one
    is a Python start-up)."""
    env = {**os.environ, "COLUMNS": "100", "TERM": "dumb", "NO_COLOR": "1"}

    def run(path: tuple[str, ...]) -> str:
        done = subprocess.run([sys.executable, "-m", "gristmill.cli.main", *path, "--help"], capture_output=True,
                              text=True, timeout=120, env=env, check=False)
        assert done.returncode == 0, (path, done.stderr)
        return done.stdout

    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(zip(PATHS, pool.map(run, PATHS), strict=True))


def test_every_command_has_a_help_page(help_texts: dict[tuple[str, ...], str]) -> None:
    names = {path[-1] for path in help_texts if path}
    assert {"create", "run", "plan", "report", "models", "list", "cache", "logs", "init", "convert"} <= names
    assert "Commands" in help_texts[()]


@pytest.mark.parametrize("path", PATHS, ids=lambda path: " ".join(path) or "gristmill")
def test_help_shows_no_restructuredtext_markup(help_texts: dict[tuple[str, ...], str], path: tuple[str, ...]) -> None:
    text = help_texts[path]
    assert "``" not in text, f"gristmill {' '.join(path)} --help shows raw ``markup``:\n{text}"


def docstring_paragraphs() -> dict[str, list[str]]:
    """Command path -> the paragraphs of its help text (the docstring typer shows)."""
    out: dict[str, list[str]] = {}

    def walk(command: Any, path: str) -> None:
        if command.help and path:
            out[path] = inspect.cleandoc(command.help).partition("\f")[0].split("\n\n")
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}".strip())

    walk(typer.main.get_command(app), "")
    return out


@pytest.mark.parametrize("path", sorted(docstring_paragraphs()))
def test_help_paragraphs_have_no_hard_line_breaks(path: str) -> None:
    """Typer keeps a line break inside a paragraph (in the command list, and in every paragraph
    after the first of a command's page): a docstring wrapped at the source's width then shows
    a sentence broken in the middle. One paragraph, one line; a blank line between paragraphs."""
    broken = [p for p in docstring_paragraphs()[path] if "\n" in p.strip()]
    assert broken == [], f"gristmill {path} --help breaks a sentence: {broken}"


# ------------------------------------------------------------------------------------------- bill lines

def test_bill_line_says_input_tokens_are_unknown_when_no_prompt_could_be_rendered() -> None:
    unknown = ColumnBill("answer", "default", cells=10, unknown=10)
    [line] = DatasetBill("run", "no prior run", rows=10, columns=(unknown,)).format_lines()
    assert "input tokens unknown" in line and "~0 input tokens" not in line
    assert line.startswith("answer (default): 10 to pay, 0 from cache, at most 10 [10 of them unknown")


def test_bill_line_keeps_the_estimate_when_some_prompts_were_rendered() -> None:
    partly = ColumnBill("answer", "default", cells=10, to_pay=4, unknown=6, rendered=4, rendered_tokens=200,
                        input_tokens=500)
    exact = ColumnBill("question", "default", cells=10, to_pay=10, rendered=10, rendered_tokens=480,
                       input_tokens=480)
    cached = ColumnBill("again", "default", cells=10, cached=10, rendered=10, rendered_tokens=480)
    lines = DatasetBill("run", "", rows=10, columns=(partly, exact, cached)).format_lines()
    assert lines[0].endswith("[6 of them unknown until earlier answers arrive], ~500 input tokens")
    assert lines[1].endswith("[exact], ~480 input tokens")
    assert lines[2].endswith("[exact], ~0 input tokens")  # all cached: nothing to pay, truly zero


def test_bill_line_gives_a_floor_for_the_cost_when_input_tokens_are_unknown() -> None:
    price = ModelPrice(input_cost_per_million=1.0, output_cost_per_million=2.0)
    unknown = ColumnBill("answer", "default", cells=10, unknown=10, max_tokens=100)
    known = ColumnBill("question", "default", cells=10, to_pay=10, rendered=10, rendered_tokens=1000,
                       input_tokens=1000, max_tokens=100)
    lines = DatasetBill("run", "", rows=10, columns=(unknown, known), prices={"default": price}).format_lines()
    assert lines[0].endswith("input tokens unknown, at least ~0.0020 cost")  # 10 x 100 output tokens at 2/M
    assert lines[1].endswith("~1,000 input tokens, ~0.0030 cost")
