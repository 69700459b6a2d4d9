"""The 3-stage LLM workflow the SIGKILL trials run, in a subprocess or in the test process.

``python torture_workflow.py <server url> <artifact root>`` runs it to completion with
``resume="if-possible"`` and prints ``done``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import gristmill as gm
from gristmill.testing import provider_and_model
from gristmill.workflow import CompositeWorkflow

ROWS = 96
BATCH_SIZE = 8
PARALLEL = 4  # max_parallel_requests: the in-flight bound a kill may re-pay
STAGES = ("items", "answers", "judged")
REQUESTS_PER_RUN = 4 * ROWS  # items: 1 llm column, answers: 2, judged: 1 (no corrections: valid JSON)


def make_mill(root: Path, url: str) -> gm.Mill:
    provider, model = provider_and_model(url, max_parallel_requests=PARALLEL, max_retries=2, retry_backoff=0.01,
                                         timeout=10)
    return gm.Mill(root, run_config=gm.RunConfig(batch_size=BATCH_SIZE, show_progress=False),
                   model_providers=[provider], model_configs=[model])


def build(mill: gm.Mill) -> CompositeWorkflow:
    wf = mill.compose_workflow("torture")
    wf.add_stage("items", gm.ConfigBuilder()
                 .add_column(name="topic", column_type="sampler", sampler_type="category",
                             params={"values": ["rivers", "stars", "bread", "clocks"]})
                 .add_column(name="k", column_type="sampler", sampler_type="uniform",
                             params={"low": 1, "high": 10**6, "integer": True})
                 .add_column(name="blurb", column_type="llm_text", prompt="Describe {{ topic }} number {{ k }}."),
                 num_records=ROWS)
    wf.add_stage("answers", gm.ConfigBuilder()
                 .add_column(name="answer", column_type="llm_text", prompt="Answer about: {{ blurb }}")
                 .add_column(name="title", column_type="llm_text", prompt="Title for: {{ answer }}"))
    wf.add_stage("judged", gm.ConfigBuilder()
                 .add_column(name="grade", column_type="llm_judge", prompt="Grade this answer: {{ answer }}",
                             scores=[gm.Score(name="clarity", description="Is it clear?",
                                              options={"1": "no", "2": "somewhat", "3": "yes"})]))
    return wf


def main(url: str, root: str) -> None:
    with make_mill(Path(root), url) as mill:
        build(mill).run(resume="if-possible")
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
