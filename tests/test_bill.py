"""The bill before the run: predicted LLM requests against what the test server answered; a bill
never contacts the endpoint and never writes (datasets, workflows, and the real CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import gristmill as gm
from gristmill.engine.bill import DatasetBill, decision_bill
from gristmill.engine.dataset_plan import DatasetRequest, dataset_identity, observe_dataset, plan_dataset
from gristmill.mill import dataset_run_seed
from gristmill.testing import LLMTestServer, provider_and_model
from gristmill.workflow.bill import WorkflowBill, workflow_bill
from gristmill.workflow.composite import stage_run_seed

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def server() -> Iterator[LLMTestServer]:
    with LLMTestServer() as instance:
        yield instance


def _mill(tmp_path: Path, url: str, **model_fields: object) -> gm.Mill:
    provider, model = provider_and_model(url, max_parallel_requests=8, **model_fields)
    return gm.Mill(tmp_path / "artifacts", run_config=gm.RunConfig(batch_size=10, seed=7, show_progress=False),
                   model_providers=[provider], model_configs=[model])


def _chain(b_prompt: str = "Name {{ a }}.", *, skip: str | None = None) -> gm.DatasetConfig:
    return (gm.ConfigBuilder()
            .add_column(name="n", column_type="sampler", sampler_type="uniform",
                        params={"low": 1, "high": 6, "integer": True})
            .add_column(name="a", column_type="llm_text", prompt="Describe item {{ n }}.", skip=skip)
            .add_column(name="b", column_type="llm_text", prompt=b_prompt)
            .build())


def _dataset_bill(mill: gm.Mill, config: gm.DatasetConfig, num_records: int, name: str = "d") -> DatasetBill:
    """What Mill.create would do, billed (the Mill's own dataset planner and run seed)."""
    identity = dataset_identity(config)
    observation = observe_dataset(mill.artifact_path / name, identity)
    decision = plan_dataset(observation, identity, DatasetRequest(num_records, mill.run_config))
    stored = observation.main.metadata if decision.continues else None
    seed = stored.run_seed if stored else dataset_run_seed(name, mill.run_config.seed)
    return decision_bill(mill.services, config, decision=decision, stored=stored, num_records=num_records,
                         run_seed=seed)


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def _column(bill: DatasetBill, name: str) -> dict[str, object]:
    return next(c.to_dict() for c in bill.columns if c.column == name)


def test_a_fresh_dataset_bill_sends_nothing_writes_nothing_and_bounds_the_run(server: LLMTestServer,
                                                                              tmp_path: Path) -> None:
    with _mill(tmp_path, server.url) as mill:
        bill = _dataset_bill(mill, _chain(), 25)
        assert server.stats()["requests"] == 0
        assert not (tmp_path / "artifacts").exists()
        # 'a' reads only a sampler: its prompts are known, none cached. 'b' reads 'a', unknown yet.
        assert _column(bill, "a") | {"to_pay": 25, "cached": 0, "exact": True} == _column(bill, "a")
        assert _column(bill, "b")["unknown"] == 25 and not _column(bill, "b")["exact"]
        mill.create(_chain(), num_records=25, dataset_name="d")
    assert server.stats()["requests"] == bill.requests == 50 <= bill.upper_bound


def test_a_changed_prompt_is_billed_exactly_from_the_cache(server: LLMTestServer, tmp_path: Path) -> None:
    with _mill(tmp_path, server.url) as mill:
        mill.create(_chain(), num_records=25, dataset_name="d")
        sent, before = server.stats()["requests"], _tree(tmp_path)
        bill = _dataset_bill(mill, _chain("Rename {{ a }}."), 25)
        assert server.stats()["requests"] == sent and _tree(tmp_path) == before
        assert (_column(bill, "a")["cached"], _column(bill, "a")["to_pay"]) == (25, 0)
        assert (_column(bill, "b")["to_pay"], _column(bill, "b")["exact"]) == (25, True)
        with pytest.warns(UserWarning, match="starting fresh"):
            mill.create(_chain("Rename {{ a }}."), num_records=25, dataset_name="d")
    assert server.stats()["requests"] - sent == bill.requests == 25


def test_growing_bills_only_the_new_rows(server: LLMTestServer, tmp_path: Path) -> None:
    with _mill(tmp_path, server.url) as mill:
        mill.create(_chain(), num_records=20, dataset_name="d")
        sent = server.stats()["requests"]
        bill = _dataset_bill(mill, _chain(), 35)
        assert (bill.action, bill.rows) == ("grow", 15)
        assert _column(bill, "a")["to_pay"] == 15 and _column(bill, "b")["unknown"] == 15
        mill.create(_chain(), num_records=35, dataset_name="d")
        assert server.stats()["requests"] - sent == bill.requests == 30
        assert _dataset_bill(mill, _chain(), 35).requests == 0  # complete now: reused


def test_skipped_cells_and_their_readers_are_not_billed(server: LLMTestServer, tmp_path: Path) -> None:
    with _mill(tmp_path, server.url) as mill:
        bill = _dataset_bill(mill, _chain(skip="n > 3"), 40)
        frame = mill.create(_chain(skip="n > 3"), num_records=40, dataset_name="d").load_dataset()
    generated = int((frame["n"] <= 3).sum())
    assert 0 < generated < 40
    assert _column(bill, "a")["cells"] == _column(bill, "a")["to_pay"] == generated
    assert server.stats()["requests"] == bill.requests == 2 * generated


def test_structured_columns_are_bounded_by_their_corrections(server: LLMTestServer, tmp_path: Path) -> None:
    config = (gm.ConfigBuilder()
              .add_column(name="n", column_type="sampler", sampler_type="uniform", params={"low": 1, "high": 9})
              .add_column(name="info", column_type="llm_structured", prompt="Facts about {{ n }}.", max_corrections=3,
                          output_format={"type": "object", "properties": {"x": {"type": "string"}}})
              .build())
    with _mill(tmp_path, server.url, inference_parameters={"max_tokens": 50}) as mill:
        bill = _dataset_bill(mill, config, 12)
    info = _column(bill, "info")
    assert (info["requests"], info["upper_bound"], info["exact"]) == (12, 48, True)
    assert info["output_tokens"] == 48 * 50 and isinstance(info["input_tokens"], int) and info["input_tokens"] > 0


def _workflow(mill: gm.Mill, rows: int, prompt: str) -> gm.CompositeWorkflow:
    wf = mill.compose_workflow("wf")
    wf.add_stage("items", (gm.ConfigBuilder()
                           .add_column(name="n", column_type="sampler", sampler_type="uniform",
                                       params={"low": 1, "high": 100, "integer": True})
                           .add_column(name="text", column_type="llm_text", prompt="Describe {{ n }}.")
                           .build()), num_records=rows)
    wf.add_stage("notes", gm.ConfigBuilder().add_column(name="note", column_type="llm_text", prompt=prompt).build())
    wf.add_stage("final", gm.ConfigBuilder().add_column(name="q", column_type="llm_text",
                                                        prompt="Ask about {{ note }}").build())
    return wf


def _workflow_bill(wf: gm.CompositeWorkflow) -> WorkflowBill:
    seeds = {s.name: stage_run_seed(wf.name, s.name, wf.services.run_config.seed) for s in wf.stages}
    return workflow_bill(wf.services, wf.stages, wf.plan(), workflow_name=wf.name, run_seeds=seeds)


def _answered(out: gm.WorkflowResults, bill: WorkflowBill) -> dict[str, int]:
    """Requests each stage that ran sent (a stage that runs gets a new directory: its usage is this run's)."""
    return {s.name: sum(c.get("requests", 0) for c in out.stage_usage(s.name).values()) if s.action == "run" else 0
            for s in bill.stages}


def test_workflow_bill_is_exact_where_inputs_are_known_and_never_under_otherwise(server: LLMTestServer,
                                                                               tmp_path: Path) -> None:
    with _mill(tmp_path, server.url) as mill:
        _workflow(mill, 20, "Note on {{ text }}").run()
        sent, before = server.stats()["requests"], _tree(tmp_path)
        wf = _workflow(mill, 20, "A short note on {{ text }}")
        bill = _workflow_bill(wf)
        assert server.stats()["requests"] == sent and _tree(tmp_path) == before
        assert [s.action.value for s in bill.stages] == ["reuse", "run", "run"]
        assert bill["notes"].bill.exact and not bill["final"].bill.exact
        answered = _answered(wf.run(), bill)
        assert answered["notes"] == bill["notes"].bill.requests == 20
        assert answered["final"] <= bill["final"].bill.upper_bound

        grown = _workflow(mill, 30, "A short note on {{ text }}")
        bill = _workflow_bill(grown)
        assert (bill["items"].bill.cached, bill["items"].bill.requests) == (20, 10)
        answered = _answered(grown.run(), bill)
    assert answered["items"] == 10
    assert all(answered[s.name] <= s.bill.upper_bound for s in bill.stages)
    assert bill.to_dict()["by_model"]["default"]["requests"] == bill.requests


# -- the real CLI ---------------------------------------------------------------------------------
def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "gristmill.cli.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def _registry(home: Path, url: str) -> None:
    (home / "providers.yaml").write_text(f"- name: test\n  endpoint: {url}\n")
    (home / "models.yaml").write_text("- {alias: default, model: test-model, provider: test, "
                                      "input_cost_per_million: 2.0, output_cost_per_million: 8.0, "
                                      "inference_parameters: {max_tokens: 20}}\n")


def test_cli_create_dry_run_prints_the_bill_and_writes_nothing(server: LLMTestServer, tmp_path: Path,
                                                               clean_environ: Path) -> None:
    _registry(clean_environ, server.url)
    (tmp_path / "d.yaml").write_text(json.dumps(_chain().to_dict()))
    result = _cli("create", "d.yaml", "-n", "12", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "a (default): 12 to pay, 0 from cache" in result.stdout
    assert "total: 24 model requests to pay" in result.stdout and "estimated cost" in result.stdout
    gated = _cli("create", "d.yaml", "-n", "12", "--dry-run", "--target-valid-records", "12", "--max-records", "30",
                 "--valid-filter", "n > 3", cwd=tmp_path)
    assert gated.returncode == 0, gated.stderr
    assert "up to 18 more rows may be generated" in " ".join(gated.stdout.split())
    assert server.stats()["requests"] == 0 and not (tmp_path / "artifacts").exists()


def test_cli_plan_bills_each_stage(server: LLMTestServer, tmp_path: Path, clean_environ: Path) -> None:
    _registry(clean_environ, server.url)
    (tmp_path / "s1.yaml").write_text(json.dumps(_chain().to_dict()))
    (tmp_path / "s2.yaml").write_text(json.dumps(
        gm.ConfigBuilder().add_column(name="c", column_type="llm_text", prompt="On {{ b }}").build().to_dict()))
    (tmp_path / "wf.yaml").write_text("name: wf\nstages:\n  - {name: one, config: s1.yaml, num_records: 8}\n"
                                      "  - {name: two, config: s2.yaml}\n")
    result = _cli("plan", "wf.yaml", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    stages = {s["stage"]: s for s in json.loads(result.stdout)["bill"]["stages"]}
    assert (stages["one"]["requests"], stages["two"]["upper_bound"]) == (16, 8)
    assert server.stats()["requests"] == 0
    text = _cli("plan", "wf.yaml", cwd=tmp_path)
    assert "one: 16 to pay, 0 from cache" in text.stdout and "total default: 24 to pay" in text.stdout


def _embedding_and_image_config() -> gm.DatasetConfig:
    return (gm.ConfigBuilder()
            .add_column(name="n", column_type="sampler", sampler_type="uniform",
                        params={"low": 1, "high": 4, "integer": True})
            .add_column(name="text", column_type="expression", expr="item {{ n }}")
            .add_column(name="vec", column_type="embedding", target_column="text", model_alias="embed",
                        batch_size=2)
            .add_column(name="picture", column_type="image", prompt="A drawing of {{ text }}.", model_alias="draw")
            .build())


def test_embedding_and_image_requests_are_billed_as_the_run_groups_them(server: LLMTestServer,
                                                                        tmp_path: Path) -> None:
    """Embeddings: one request per ``batch_size`` new distinct texts of a batch (a text of an
    earlier batch comes from the cache); images: one per row."""
    provider, chat = provider_and_model(server.url)
    _, embed = provider_and_model(server.url, alias="embed", model="e", generation_type="embedding")
    _, draw = provider_and_model(server.url, alias="draw", model="i", generation_type="image")
    config = _embedding_and_image_config()
    with gm.Mill(tmp_path / "artifacts", run_config=gm.RunConfig(batch_size=10, seed=7, show_progress=False),
                 model_providers=[provider], model_configs=[chat, embed, draw]) as mill:
        bill = _dataset_bill(mill, config, 30)
        assert server.stats()["requests"] == 0
        first = mill.create(config, num_records=30, dataset_name="d")
        sent = server.stats()["requests"]
        grown_bill = _dataset_bill(mill, config, 40)
        mill.create(config, num_records=40, dataset_name="d")
        grown = server.stats()["requests"] - sent
    texts, seen, expected = first.load_dataset()["text"].tolist(), set(), 0
    for start in (0, 10, 20):  # a text embedded in an earlier batch comes from the cache
        new = set(texts[start:start + 10]) - seen
        expected, seen = expected + -(-len(new) // 2), seen | new  # ceil(new texts / batch_size)
    vec, picture = _column(bill, "vec"), _column(bill, "picture")
    assert (picture["to_pay"], picture["cached"], picture["exact"]) == (30, 0, True)
    assert vec["to_pay"] == expected and vec["exact"] and vec["upper_bound"] >= expected
    assert sent == bill.requests == first.usage["embed"]["requests"] + first.usage["draw"]["requests"]
    # Growing by one batch: the 30 stored rows are not billed again, the new 10 are.
    assert _column(grown_bill, "picture")["to_pay"] == 10 and grown == grown_bill.requests


def test_target_valid_records_rounds_are_in_the_upper_bound(server: LLMTestServer, tmp_path: Path) -> None:
    """The first round (num_records rows) is billed exactly; the rows later rounds may add, up to
    max_records, only in the upper bound, which the gated run never exceeds."""
    with _mill(tmp_path, server.url) as mill:
        gate = {"target_valid_records": 20, "max_records": 60, "valid_filter": "n > 3"}
        bill = mill.bill_dataset(_chain(), num_records=20, dataset_name="d", **gate)  # type: ignore[arg-type]
        assert bill.note is not None and "up to 40 more rows" in bill.note
        assert _column(bill, "a")["to_pay"] == 20 and _column(bill, "a")["upper_bound"] == 60
        gated = mill.create(_chain(), num_records=20, dataset_name="d", **gate)  # type: ignore[arg-type]
    sent = server.stats()["requests"]
    assert gated.count_records() == 20
    assert bill.requests < sent <= bill.upper_bound  # rows past the first 20 were needed: ~half pass
