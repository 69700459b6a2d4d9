"""A three-stage composite workflow, run three times to show stage-level resume.

1. run it (every stage RUN);
2. run it again with resume (every stage REUSE: nothing is regenerated);
3. change the last stage and run again (only that stage RUNs).

Stages: ``people`` (samplers) -> ``greetings`` (expression + custom column, filtered by an
``on_success`` callback that keeps adults) -> ``cards`` (an expression column, reshaped by a
schema_transform output processor).

Run it with ``python examples/workflow_demo.py [ARTIFACT_DIR]``. The same workflow as a file is
``examples/workflow.yaml`` (``gristmill run examples/workflow.yaml --resume if-possible``).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pandas as pd

import gristmill as gm
from gristmill.workflow import CompositeWorkflow, WorkflowPlan


def shout(row: dict[str, object]) -> str:
    """Custom column (per row): the greeting in capitals."""
    return str(row["greeting"]).upper()


def keep_adults(stage_dir: Path) -> Path:
    """on_success callback: keep rows with age >= 18, written next to the stage's files."""
    frame = pd.read_parquet(stage_dir / "parquet-files")
    out = stage_dir / "callback-outputs" / "adults.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    frame[frame.age >= 18].to_parquet(out)
    return out


def people() -> gm.ConfigBuilder:
    return (gm.ConfigBuilder()
            .add_column(name="name", column_type="sampler", sampler_type="category",
                        params={"values": ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald"]})
            .add_column(name="age", column_type="sampler", sampler_type="uniform",
                        params={"low": 8, "high": 80, "integer": True}))


def greetings() -> gm.ConfigBuilder:
    return (gm.ConfigBuilder()
            .add_column(name="greeting", column_type="expression", expr="Hello {{ name }}, aged {{ age }}")
            .add_column(name="loud", column_type="custom", function=shout, reads=["greeting"], version="1"))


def cards(closing: str) -> gm.ConfigBuilder:
    return gm.ConfigBuilder().add_column(name="card", column_type="expression", expr="{{ loud }}. " + closing)


def build(mill: gm.Mill, closing: str = "Happy birthday!") -> CompositeWorkflow:
    wf: CompositeWorkflow = mill.compose_workflow("greeting-cards")
    wf.add_stage("people", people(), num_records=60)
    wf.add_stage("greetings", greetings(), on_success=keep_adults, on_success_version="adults-v1")
    wf.add_stage("cards", cards(closing), output_processors=[
        {"name": "chat", "processor_type": "schema_transform",
         "template": {"messages": [{"role": "user", "content": "Write a card for {{ name }}"},
                                   {"role": "assistant", "content": "{{ card }}"}]}}])
    return wf


def show(title: str, plan: WorkflowPlan | None) -> None:
    print(f"\n== {title}")
    if plan is not None:
        print(plan.format_table())


def main(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
    mill = gm.Mill(root, run_config=gm.RunConfig(batch_size=20, show_progress=False))
    with mill:
        first = build(mill).run(resume=gm.ResumeMode.IF_POSSIBLE)
        show("1. first run: every stage runs", first.plan)
        print(f"{first.count_records()} cards from {first['people'].count_records()} people; first card:")
        print(first.load_dataset().iloc[0]["messages"][1]["content"])

        again = build(mill).run(resume=gm.ResumeMode.IF_POSSIBLE)
        show("2. run again with resume: every stage is reused", again.plan)
        assert again.plan is not None and all(s.action.value == "reuse" for s in again.plan.stages)

        changed = build(mill, closing="Many happy returns!").run(resume=gm.ResumeMode.IF_POSSIBLE)
        show("3. last stage changed: only it reruns", changed.plan)
        assert changed.plan is not None
        assert [s.action.value for s in changed.plan.stages] == ["reuse", "reuse", "run"]
        print(changed.load_dataset().iloc[0]["messages"][1]["content"])
        print(f"\nworkflow directory: {changed.workflow_dir}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("demo-artifacts") / "workflow")
