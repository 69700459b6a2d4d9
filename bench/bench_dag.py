"""Independent branches of a DAG workflow run concurrently: wall time of a 3-branch DAG vs T.

A root stage ``gen`` feeds three branches; each branch takes about T seconds (BATCHES batches,
each waiting SLEEP seconds). The same three stages as a linear chain are the sequential baseline,
measured in the same run. Two kinds of branch work:

- ``llm``: an LLM column answered by ``gristmill.testing.FunctionModel`` after an asyncio sleep
  per request (rows of a batch in parallel): I/O-bound work, like paying an endpoint.
- ``custom``: a batch-mode custom column calling ``time.sleep`` once per batch: blocking Python
  code, which runs on the Mill's one event loop, so branches of it cannot overlap.

    .venv/bin/python bench/bench_dag.py [--sleep 0.25] [--batches 4]

Prints JSON: per kind, T, the DAG's wall time and wall/T, the chain's wall time and wall/T.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

import gristmill as gm
from gristmill.testing import FunctionModel

BATCH = 4
BRANCHES = ("b1", "b2", "b3")


def _root() -> gm.ConfigBuilder:
    return gm.ConfigBuilder().add_column(name="n", column_type="sampler", sampler_type="uniform",
                                         params={"low": 1, "high": 1000, "integer": True})


def _branch(kind: str, name: str, sleep: float) -> gm.ConfigBuilder:
    if kind == "llm":
        return gm.ConfigBuilder().add_column(name=f"{name}_text", column_type="llm_text", model_alias="default",
                                             prompt=f"{name}: {{{{ n }}}}")

    def slow(frame: pd.DataFrame) -> list[int]:
        time.sleep(sleep)
        return [int(v) for v in frame["n"]]

    return gm.ConfigBuilder().add_column(name=f"{name}_v", column_type="custom", function=slow, mode="batch",
                                         reads=["n"])


def _timed(root: Path, kind: str, sleep: float, rows: int, *, linear: bool) -> float:
    async def answer(request: Any) -> str:
        await asyncio.sleep(sleep)
        return f"ok {request.prompt}"

    fm = FunctionModel(answer)
    with gm.Mill(root, run_config=gm.RunConfig(batch_size=BATCH, show_progress=False, cache=False),
                 model_providers=[fm.provider()], model_configs=[fm.model_config()],
                 clients={fm.name: fm}) as mill:
        wf = mill.compose_workflow(f"{kind}-{'chain' if linear else 'dag'}")
        wf.add_stage("gen", _root(), num_records=rows)
        for branch in BRANCHES:
            wf.add_stage(branch, _branch(kind, branch, sleep), num_records=rows,
                         **({} if linear else {"depends_on": ["gen"]}))
        started = time.perf_counter()
        wf.run(resume="never")
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sleep", type=float, default=0.25, help="seconds per batch (custom) or request (llm)")
    parser.add_argument("--batches", type=int, default=4, help="batches per branch")
    args = parser.parse_args()
    rows = BATCH * args.batches
    t = args.sleep * args.batches  # one branch: batches run one after another
    report: dict[str, Any] = {"branches": len(BRANCHES), "batches": args.batches, "batch_size": BATCH,
                              "sleep": args.sleep, "T": t}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("llm", "custom"):
            dag = _timed(Path(tmp) / kind, kind, args.sleep, rows, linear=False)
            chain = _timed(Path(tmp) / kind, kind, args.sleep, rows, linear=True)
            report[kind] = {"dag_wall": round(dag, 3), "dag_wall_over_T": round(dag / t, 2),
                            "chain_wall": round(chain, 3), "chain_wall_over_T": round(chain / t, 2)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
