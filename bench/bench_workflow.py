"""Stage-level resume of a composite workflow, measured in wall time and endpoint requests. Prints JSON.

    PYTHONPATH=src python bench/bench_workflow.py [--n 200] [--latency 0.05] [--batch-size 20]

Three stages: ``topics`` (samplers) -> ``answers`` (llm_text) -> ``judged`` (llm_judge), against
the gristmill test server in its own process at a fixed latency.

- ``a_full_run``: everything from scratch (2 x N requests).
- ``b_resume_complete``: the same workflow again with resume: every stage REUSE, no request;
  also run against a provider whose endpoint is down (it must still succeed).
- ``c_last_prompt_changed``: the judge prompt changes; only that stage's N requests.
- ``d_grow_first_stage``: stage 1 grows from N to N + N/4 rows; ideal: N/4 new rows x 2 LLM
  stages (the workflow's response cache answers the unchanged rows).
- ``e_sigkill_in_stage_2``: a subprocess running the workflow is SIGKILLed during stage 2, then
  resumed: requests paid twice, rows, and equality with the uninterrupted run of (a). In flight
  at the kill = requests the server had received minus answers stored in the workflow's
  response cache at that moment (as in ``bench_llm.py``): what a resume may have to pay again.
  Checked: repaid <= in flight <= max_parallel_requests.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import pandas as pd

import gristmill as gm
from gristmill.llm.cache import ResponseCache
from gristmill.storage.layout import RESPONSE_CACHE_FILE
from gristmill.testing import ServerProcess, provider_and_model

MAX_PARALLEL = 16
WORKFLOW = "bench-workflow"
JUDGE_PROMPT = "Judge this answer about {{ topic }}: {{ answer }}"


def make_mill(root: Path, url: str, batch_size: int) -> gm.Mill:
    provider, model = provider_and_model(url, max_parallel_requests=MAX_PARALLEL, retry_backoff=0.05, max_retries=1)
    return gm.Mill(root, run_config=gm.RunConfig(batch_size=batch_size, show_progress=False),
                   model_providers=[provider], model_configs=[model])


def build(mill: gm.Mill, n: int, judge_prompt: str = JUDGE_PROMPT) -> Any:
    wf = mill.compose_workflow(WORKFLOW)
    wf.add_stage("topics", gm.ConfigBuilder()
                 .add_column(name="id", column_type="sampler", sampler_type="uuid", params={})
                 .add_column(name="topic", column_type="sampler", sampler_type="category",
                             params={"values": ["rivers", "stars", "bread", "chess", "bees"]}), num_records=n)
    wf.add_stage("answers", gm.ConfigBuilder().add_column(
        name="answer", column_type="llm_text", prompt="Write two sentences about {{ topic }} (item {{ id }})."))
    wf.add_stage("judged", gm.ConfigBuilder().add_column(
        name="score", column_type="llm_judge", prompt=judge_prompt,
        scores=[{"name": "quality", "description": "Is it accurate and clear?",
                 "options": {"1": "poor", "2": "fair", "3": "good"}}]))
    return wf


def timed_run(server: ServerProcess, wf: Any, **kwargs: Any) -> dict[str, Any]:
    before = server.stats()
    started = time.perf_counter()
    out = wf.run(**kwargs)
    wall = time.perf_counter() - started
    after = server.stats()
    return {"wall_s": round(wall, 4), "requests": after["requests"] - before["requests"],
            "actions": [s.action.value for s in out.plan.stages], "rows": out.count_records(), "_out": out}


def strip(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if not k.startswith("_")}


def scenarios_a_to_d(server: ServerProcess, root: Path, n: int, batch_size: int) -> dict[str, Any]:
    mill = make_mill(root, server.url, batch_size)
    try:
        full = timed_run(server, build(mill, n))
        reference = {name: full["_out"].load_stage_output(name) for name in ("topics", "answers", "judged")}
        complete = timed_run(server, build(mill, n), resume="always")
        down = make_mill(root, "http://127.0.0.1:9/v1", batch_size)  # nothing listens there
        started = time.perf_counter()
        offline = build(down, n).run(resume="always")
        offline_wall = time.perf_counter() - started
        down.close()
        changed = timed_run(server, build(mill, n, judge_prompt="Rate this answer on {{ topic }}: {{ answer }}"),
                            resume="if-possible")
        grown = timed_run(server, build(mill, n + n // 4, judge_prompt="Rate this answer on {{ topic }}: "
                                        "{{ answer }}"), resume="if-possible")
    finally:
        mill.close()
    return {"a_full_run": strip(full),
            "b_resume_complete": {**strip(complete), "endpoint_down": {
                "succeeded": offline.count_records() == n, "wall_s": round(offline_wall, 4)}},
            "c_last_prompt_changed": {**strip(changed), "ideal_requests": n},
            "d_grow_first_stage": {**strip(grown), "ideal_requests": 2 * (n // 4), "reference_paid": 500},
            "_reference": reference}


CRASH_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    sys.path.insert(0, {bench!r})
    import bench_workflow as b
    mill = b.make_mill(Path({root!r}), {url!r}, {batch_size})
    b.build(mill, {n}).run(resume="if-possible")
""")


def scenario_e(server: ServerProcess, root: Path, n: int, batch_size: int, latency: float,
               reference: dict[str, pd.DataFrame]) -> dict[str, Any]:
    script = CRASH_SCRIPT.format(bench=str(Path(__file__).parent), root=str(root), url=server.url,
                                 batch_size=batch_size, n=n)
    server.reset_stats()  # the server's memory of bodies seen: only this scenario's requests count
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ})
    deadline = time.monotonic() + 120
    before_kill = server.stats()
    kill_after = n // 2 + batch_size // 2  # mid-batch, so that requests are in flight
    while before_kill["completions"] < kill_after and time.monotonic() < deadline:
        time.sleep(0.002)
        before_kill = server.stats()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(2 * latency + 0.2)  # let the server take in whatever the dead process had already sent
    at_kill = server.stats()
    # Requests sent before the kill whose answers were not stored: what a resume may pay again.
    with ResponseCache(root / WORKFLOW / RESPONSE_CACHE_FILE) as cache:
        stored = int(cache.stats()["entries"])
    in_flight = at_kill["requests"] - stored
    mill = make_mill(root, server.url, batch_size)
    try:
        resumed = build(mill, n).run(resume="if-possible")
        after = server.stats()
        answers = resumed.load_stage_output("answers")
        identical = all(resumed.load_stage_output(k).equals(v) for k, v in reference.items())
    finally:
        mill.close()
    repaid = after["duplicates"] - at_kill["duplicates"]
    return {"killed_after_responses": before_kill["completions"],
            "requests_received_at_kill": at_kill["requests"], "stored_at_kill": stored,
            "in_flight_at_kill": in_flight, "max_parallel_requests": MAX_PARALLEL,
            "actions_on_resume": [s.action.value for s in resumed.plan.stages],
            "resume_requests": after["requests"] - at_kill["requests"],
            "repaid_requests": repaid,
            "repaid_within_in_flight": repaid <= in_flight <= MAX_PARALLEL,
            "rows": len(answers), "unique_ids": int(answers["id"].nunique()), "identical_to_uninterrupted": identical}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--batch-size", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(latency=args.latency) as server:
        result: dict[str, Any] = {"n": args.n, "latency_s": args.latency, "batch_size": args.batch_size}
        measured = scenarios_a_to_d(server, Path(tmp) / "main", args.n, args.batch_size)
        reference = measured.pop("_reference")
        result.update(measured)
        result["e_sigkill_in_stage_2"] = scenario_e(server, Path(tmp) / "crash", args.n, args.batch_size,
                                                    args.latency, reference)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
