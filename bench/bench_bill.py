"""The bill before the run, measured: predicted LLM requests vs the requests the server answered.

An iteration session of a 3-stage LLM workflow against the loopback test server: (1) first run,
(2) stage 2's prompt changed, (3) stage 1 grown. Before each run the workflow's bill is made
from its plan; the run then counts what the server answered. Target: exact where a stage's
inputs are known (a root stage, or its parents reused), never under the answered count otherwise.
The baseline is what a bill that knows no cache would say (rows x LLM columns of every stage
that runs): the ratio says how much closer the real bill is.

    .venv/bin/python bench/bench_bill.py [--rows 60]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import gristmill as gm
from gristmill.testing import LLMTestServer, provider_and_model
from gristmill.workflow.bill import WorkflowBill, workflow_bill
from gristmill.workflow.composite import stage_run_seed


def _configs(summary_prompt: str) -> list[gm.DatasetConfig]:
    topics = (gm.ConfigBuilder()
              .add_column(name="n", column_type="sampler", sampler_type="uniform",
                          params={"low": 1, "high": 1000, "integer": True})
              .add_column(name="topic", column_type="llm_text", prompt="Name a topic, number {{ n }}.")
              .build())
    summaries = (gm.ConfigBuilder()
                 .add_column(name="summary", column_type="llm_text", prompt=summary_prompt)
                 .build())
    questions = (gm.ConfigBuilder()
                 .add_column(name="question", column_type="llm_text", prompt="Ask about: {{ summary }}")
                 .add_column(name="answer", column_type="llm_text", prompt="Answer: {{ question }}")
                 .build())
    return [topics, summaries, questions]


def _workflow(mill: gm.Mill, rows: int, summary_prompt: str) -> gm.CompositeWorkflow:
    wf = mill.compose_workflow("session")
    topics, summaries, questions = _configs(summary_prompt)
    wf.add_stage("topics", topics, num_records=rows)
    wf.add_stage("summaries", summaries)
    wf.add_stage("questions", questions)
    return wf


def _bill(wf: gm.CompositeWorkflow) -> tuple[WorkflowBill, float]:
    started = time.perf_counter()
    plan = wf.plan()
    seeds = {s.name: stage_run_seed(wf.name, s.name, wf.services.run_config.seed) for s in wf.stages}
    bill = workflow_bill(wf.services, wf.stages, plan, workflow_name=wf.name, run_seeds=seeds)
    return bill, time.perf_counter() - started


def _step(name: str, wf: gm.CompositeWorkflow, server: LLMTestServer) -> dict[str, Any]:
    bill, seconds = _bill(wf)
    before_bill = server.stats()["requests"]
    out = wf.run()
    stages = []
    for stage in bill.stages:
        # A stage that runs gets a new directory, so its dataset's usage is this run's alone.
        result = out[stage.name]
        usage = result.usage if isinstance(result, gm.DatasetResults) and stage.action.value == "run" else {}
        stages.append({"stage": stage.name, "action": stage.action.value, "exact": stage.bill.exact,
                       "predicted": stage.bill.requests, "upper_bound": stage.bill.upper_bound,
                       "cached": stage.bill.cached,
                       "answered": sum(c.get("requests", 0) for c in usage.values())})
    answered = server.stats()["requests"] - before_bill
    baseline = sum(s.bill.rows * len(s.bill.columns) for s in bill.stages if s.action.value != "reuse")
    return {"step": name, "bill_seconds": round(seconds, 3), "bill_requests_sent": before_bill - _step.sent,
            "predicted": bill.requests, "upper_bound": bill.upper_bound, "answered": answered,
            "exact_stages_match": all(s["predicted"] == s["answered"] for s in stages if s["exact"]),
            "never_under": all(s["upper_bound"] >= s["answered"] for s in stages),
            "baseline_no_cache": baseline,
            "baseline_over_answered": round(baseline / answered, 2) if answered else None,
            "predicted_over_answered": round(bill.requests / answered, 2) if answered else None,
            "stages": stages}


_step.sent = 0  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=60)
    args = parser.parse_args()
    with LLMTestServer() as server, tempfile.TemporaryDirectory() as tmp:
        provider, model = provider_and_model(server.url, max_parallel_requests=16)
        run_config = gm.RunConfig(batch_size=25, show_progress=False)
        steps = []
        for name, rows, prompt in [("first run", args.rows, "Summarise {{ topic }}."),
                                   ("stage 2 prompt changed", args.rows, "Summarise {{ topic }} in one line."),
                                   ("stage 1 grown", args.rows + args.rows // 2, "Summarise {{ topic }} in one line.")]:
            with gm.Mill(Path(tmp), run_config=run_config, model_providers=[provider], model_configs=[model]) as mill:
                _step.sent = server.stats()["requests"]  # type: ignore[attr-defined]
                steps.append(_step(name, _workflow(mill, rows, prompt), server))
    print(json.dumps({"rows": args.rows, "steps": steps}, indent=2))


if __name__ == "__main__":
    main()
