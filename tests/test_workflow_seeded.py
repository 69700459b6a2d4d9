"""Workflows whose first stage is seeded from a file or a DataFrame: first runs, reruns, resumes.

The first stage's seed content is part of its fingerprint (a digest of the file's bytes or of
the DataFrame), computed once for planning and running alike, so a seeded workflow runs the
first time, is reused unchanged, resumes after a failure, and reruns when the seed changes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import gristmill as gm
from gristmill.errors import WorkflowError

BATCH = 4
SEED = pd.DataFrame({"sid": list(range(8)), "word": [f"w{i}" for i in range(8)]})


@pytest.fixture
def mill(tmp_path: Path) -> gm.Mill:
    return gm.Mill(tmp_path / "artifacts", run_config=gm.RunConfig(batch_size=BATCH, show_progress=False))


def _parquet_seed(tmp_path: Path) -> Path:
    path = tmp_path / "seed.parquet"
    SEED.to_parquet(path)
    return path


def _csv_seed(tmp_path: Path) -> Path:
    path = tmp_path / "seed.csv"
    SEED.to_csv(path, index=False)
    return path


def _frame_seed(tmp_path: Path) -> pd.DataFrame:
    return SEED.copy()


SEEDS: dict[str, Callable[[Path], Any]] = {"parquet": _parquet_seed, "csv": _csv_seed, "dataframe": _frame_seed}

#: Fails while the flag file exists: a stage that breaks part-way, then is fixed by removing it.
FLAG: dict[str, Path] = {}


def fragile(frame: pd.DataFrame) -> pd.Series:
    """A batch custom column that fails after stage 2's first batch while the flag file exists
    (in batch mode an exception stops the run; in row mode it would fail only its cell)."""
    flag = FLAG.get("path")
    if flag is not None and flag.exists() and (frame["sid"] >= BATCH).any():
        raise RuntimeError("planned failure")
    return frame["sid"].astype(int) * 10


def _workflow(mill: gm.Mill, seed: Any, *, second: gm.ConfigBuilder | None = None) -> Any:
    first = (gm.ConfigBuilder().with_seed_dataset(seed)
             .add_column(name="shout", column_type="expression", expr="{{ word | upper }}"))
    wf = mill.compose_workflow("seeded")
    wf.add_stage("s1", first, num_records=8)
    wf.add_stage("s2", second or gm.ConfigBuilder().add_column(
        name="pair", column_type="expression", expr="{{ sid }}-{{ shout }}"))
    return wf


def _actions(results: Any) -> list[str]:
    return [step.action.value for step in results.plan.stages]


@pytest.mark.parametrize("kind", sorted(SEEDS))
def test_seeded_workflow_runs_then_is_reused(mill: gm.Mill, tmp_path: Path, kind: str) -> None:
    seed = SEEDS[kind](tmp_path)
    first = _workflow(mill, seed).run(resume="if-possible")
    assert _actions(first) == ["run", "run"]
    assert first.load_dataset()["pair"].tolist()[:2] == ["0-W0", "1-W1"]
    again = _workflow(mill, seed)
    assert [s.action.value for s in again.plan(resume="if-possible").stages] == ["reuse", "reuse"]
    assert _actions(again.run(resume="always")) == ["reuse", "reuse"]


@pytest.mark.parametrize("kind", sorted(SEEDS))
def test_seeded_workflow_resumes_after_a_failing_stage(mill: gm.Mill, tmp_path: Path, kind: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    seed = SEEDS[kind](tmp_path)
    flag = tmp_path / "fail.flag"
    flag.touch()
    monkeypatch.setitem(FLAG, "path", flag)
    second = gm.ConfigBuilder().add_column(name="checked", column_type="custom",
                                           function=f"{__name__}:fragile", mode="batch", reads=["sid"])
    with pytest.raises(Exception, match="planned failure"):
        _workflow(mill, seed, second=second).run(resume="if-possible")
    flag.unlink()
    resumed = _workflow(mill, seed, second=second).run(resume="if-possible")
    assert _actions(resumed) == ["reuse", "resume"]
    assert resumed.load_dataset()["checked"].tolist() == [i * 10 for i in range(8)]


def test_editing_the_seed_file_reruns_the_first_stage(mill: gm.Mill, tmp_path: Path) -> None:
    path = _parquet_seed(tmp_path)
    _workflow(mill, path).run(resume="if-possible")
    SEED.assign(word=[f"v{i}" for i in range(8)]).to_parquet(path)
    plan = _workflow(mill, path).plan(resume="if-possible")
    assert plan["s1"].action.value == "run" and "seed dataset content changed" in plan["s1"].reason
    with pytest.raises(gm.ResumeError, match="seed dataset content changed"):
        _workflow(mill, path).run(resume="always")
    out = _workflow(mill, path).run(resume="if-possible")
    assert _actions(out) == ["run", "run"]
    assert out.load_dataset()["pair"].tolist()[0] == "0-V0"


def test_a_seed_edited_between_planning_and_running_is_reported(mill: gm.Mill, tmp_path: Path) -> None:
    path = _parquet_seed(tmp_path)

    def edit_seed(plan: Any) -> None:
        SEED.assign(word=[f"x{i}" for i in range(8)]).to_parquet(path)

    with pytest.raises(WorkflowError, match="fingerprint changed between planning and running"):
        _workflow(mill, path).run(resume="if-possible", on_plan=edit_seed)
