"""The HTML report: real datasets and workflows in ``tmp_path``, the page parsed with the stdlib,
rendered in headless Chromium, and the ``report`` command run in a subprocess."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import gristmill as gm
from gristmill.config.llm_columns import LLMJudgeColumn
from gristmill.config.sampler_params import PERSON_FIELDS
from gristmill.errors import ArtifactError
from gristmill.report import sample_record, write_dataset_report, write_workflow_report
from gristmill.report.build import model_costs
from gristmill.report.charts import BAR_COLOURS, STATUS_COLOURS
from gristmill.report.page import columns_section, usage_section
from gristmill.report.page import page as page_html
from gristmill.report.profile import profile_table
from gristmill.testing import ChatRequest, FunctionModel
from report_png import count_colour, read_png

PAYLOAD = "<script>document.title='pwned'</script>"
ROWS = 30


# ------------------------------------------------------------------------------------------- helpers

class Page(HTMLParser):
    """Start tags with their attributes, the text of every table cell, and the document's title."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.tables: list[list[list[str]]] = []
        self.title = ""
        self._cell: list[str] | None = None
        self._in_title = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        self._in_title = tag == "title" and all(t != "body" for t, _ in self.tags)  # not an SVG tooltip

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._in_title:
            self.title += data

    def count(self, tag: str, css_class: str) -> int:
        return sum(1 for t, attrs in self.tags if t == tag and css_class in attrs.get("class", "").split())

    def table_with(self, header: str) -> dict[str, list[str]]:
        """The first table whose header row has ``header``: first cell -> the row's cells."""
        table = next(t for t in self.tables if t and header in t[0])
        return {row[0]: row for row in table}


def answer(request: ChatRequest) -> str | dict[str, object]:
    """Essays carry a script; owls fail (so their judge cells are skipped)."""
    if request.json_schema is not None:
        score = "2" if "cat" in request.prompt else "1"
        return {"clarity": {"reasoning": PAYLOAD, "score": score}, "depth": {"reasoning": "ok", "score": "3"}}
    if "owl" in request.prompt:
        raise gm.ModelError("owls are out of scope")
    return f"Essay {PAYLOAD} about {request.prompt}"


def check(row: dict[str, Any]) -> dict[str, Any]:
    return {"is_valid": row["n"] % 3 != 0, "message": "multiples of 3 fail"}


def dataset_config() -> gm.ConfigBuilder:
    return (gm.ConfigBuilder()
            .add_column(name="topic", column_type="sampler", sampler_type="category",
                        params={"values": ["cat", "owl", "dog"]})
            .add_column(name="n", column_type="sampler", sampler_type="uniform",
                        params={"low": 1, "high": 100, "integer": True})
            .add_column(name="x", column_type="sampler", sampler_type="gaussian", params={"mean": 0, "stddev": 1})
            .add_column(name="check", column_type="custom", function=check, reads=["n"])
            .add_column(name="essay", column_type="llm_text", prompt="about {{ topic }}")
            .add_column(LLMJudgeColumn(name="grade", prompt="Grade {{ essay }}", scores=[
                gm.Score(name="clarity", description="Clear?", options={"1": "no", "2": "yes"}),
                gm.Score(name="depth", description="Deep?", options={"1": "no", "3": "yes"})])))


@pytest.fixture()
def dataset_dir(tmp_path: Path) -> Path:
    fm = FunctionModel(answer)
    run_config = gm.RunConfig(batch_size=10, seed=5, show_progress=False, max_error_rate=1.0)
    with gm.Mill(tmp_path / "artifacts", run_config=run_config, model_providers=[fm.provider()],
                 model_configs=[fm.model_config()], clients={fm.name: fm}) as mill:
        return mill.create(dataset_config(), num_records=ROWS, dataset_name="essays").artifact_path


@pytest.fixture()
def workflow_results(tmp_path: Path) -> gm.WorkflowResults:
    with gm.Mill(tmp_path / "wf-artifacts", run_config=gm.RunConfig(batch_size=4, show_progress=False)) as mill:
        wf = mill.compose_workflow("wf")
        wf.add_stage("base", gm.ConfigBuilder().add_column(
            name="n", column_type="sampler", sampler_type="uniform", params={"low": 1, "high": 9, "integer": True}),
            num_records=10)
        wf.add_stage("doubled", gm.ConfigBuilder().add_column(name="d", column_type="expression",
                                                              expr="{{ n * 2 }}", dtype="int"))
        return wf.run()


# ------------------------------------------------------------------------------------------- dataset

def test_dataset_report_has_stats_and_a_chart_per_column_kind(dataset_dir: Path) -> None:
    path = write_dataset_report(dataset_dir)
    assert path == dataset_dir / "report.html"
    page = Page(path.read_text(encoding="utf-8"))
    charts = {kind: page.count("svg", f"chart-{kind}") for kind in BAR_COLOURS if kind != "invalid"}
    assert charts == {"numeric": 2, "category": 1, "text": 1, "judge": 2, "validation": 1}
    columns = page.table_with("kind")
    assert {name: row[2] for name, row in columns.items() if name != "column"} == {
        "topic": "category", "n": "numeric", "x": "numeric", "check": "validation", "essay": "text",
        "grade": "judge"}
    frame = gm.DatasetResults(dataset_dir).load_dataset()
    owls = int((frame["topic"] == "owl").sum())
    assert owls > 0
    # nulls, failed, skipped: each owl essay failed, and its judge cell was skipped.
    assert columns["essay"][3:6] == [str(owls), str(owls), "0"]
    assert columns["grade"][3:6] == [str(owls), "0", str(owls)]
    assert columns["topic"][3:6] == ["0", "0", "0"]
    invalid = int((frame["n"] % 3 == 0).sum())
    assert f"({ROWS - invalid} of {ROWS})" in columns["check"][6]


def test_dataset_report_shows_usage_and_sample_records(dataset_dir: Path) -> None:
    page = Page(write_dataset_report(dataset_dir, dataset_dir.parent / "out" / "r.html").read_text(encoding="utf-8"))
    usage = gm.DatasetResults(dataset_dir).usage["default"]
    row = page.table_with("requests")["default"]
    header = next(t for t in page.tables if t and "requests" in t[0])[0]
    assert row[1] == "essay, grade"
    assert int(row[header.index("requests")].replace(",", "")) == usage["requests"]
    assert int(row[header.index("failures")].replace(",", "")) == usage["failures"] > 0
    assert "cost (USD)" not in header  # no prices configured: usage only
    samples = page.tables[-1]
    assert samples[0] == ["topic", "n", "x", "check", "essay", "grade"]
    assert len(samples) == 1 + 10
    assert any(PAYLOAD in cell for row in samples for cell in row)  # shown as text


def test_values_from_data_are_escaped(dataset_dir: Path) -> None:
    html = write_dataset_report(dataset_dir).read_text(encoding="utf-8")
    page = Page(html)
    assert [tag for tag, _ in page.tags if tag == "script"] == []
    assert PAYLOAD not in html and "&lt;script&gt;document.title=&#x27;pwned&#x27;&lt;/script&gt;" in html
    assert page.title == "Dataset report: essays"


def test_cost_is_shown_for_models_whose_config_carries_prices() -> None:
    usage = {"judge": {"requests": 3, "input_tokens": 2_000_000, "output_tokens": 100_000},
             "writer": {"requests": 1, "input_tokens": 10, "output_tokens": 10}}
    config = {"models": [{"alias": "judge", "input_cost_per_million": 2.0, "output_cost_per_million": 10.0},
                         {"alias": "writer"}]}
    costs = model_costs(config, usage)
    assert costs == {"judge": pytest.approx(5.0)}
    page = Page(page_html("t", [], [usage_section(usage, costs, {"judge": ["grade"]})]))
    rows = page.table_with("cost (USD)")
    assert rows["judge"][-1] == "5.0000" and rows["writer"][-1] == "no price"
    assert rows["judge"][1] == "grade"


def test_failed_and_skipped_cells_are_counted_from_errors() -> None:
    entry = pa.struct([("column", pa.string()), ("kind", pa.string()), ("reason", pa.string()),
                       ("attempts", pa.int32())])
    errors = pa.array([None, [{"column": "a", "kind": "failed", "reason": "x", "attempts": 3},
                              {"column": "b", "kind": "skipped", "reason": "reads 'a'", "attempts": 0}],
                       [{"column": "a", "kind": "failed", "reason": "y", "attempts": 1}]], pa.list_(entry))
    table = pa.table({"a": ["ok", None, None], "b": [1.5, None, 2.0], "__errors": errors})
    profiles = {p.name: p for p in profile_table(table)}
    assert set(profiles) == {"a", "b"}
    assert (profiles["a"].failed, profiles["a"].skipped, profiles["a"].nulls) == (2, 0, 2)
    assert (profiles["b"].failed, profiles["b"].skipped, profiles["b"].nulls) == (0, 1, 1)


def test_sample_record_for_notebooks(dataset_dir: Path) -> None:
    frame = gm.DatasetResults(dataset_dir).load_dataset()
    owl = int(frame.index[frame["topic"] == "owl"][0])
    record = sample_record(dataset_dir, owl)
    assert record.values["topic"] == "owl" and record.values["essay"] is None
    assert [p["kind"] for p in record.problems] == ["failed", "skipped"]
    assert "essay: null" in str(record)
    html = sample_record(dataset_dir, int(frame.index[frame["topic"] == "cat"][0]))._repr_html_()
    assert "<script" not in html and "&lt;script&gt;" in html
    with pytest.raises(gm.ConfigError, match=f"record {ROWS} is out of range.*{ROWS} rows"):
        sample_record(dataset_dir, ROWS)


def card_stats(html: str) -> dict[str, str]:
    """Column name -> the text of its card's stats line (tags removed)."""
    cards = re.findall(r'<div class="card" id="col-\d+"><h3>(.*?) <span.*?<div class="stats muted">(.*?)</div>', html)
    return {name: re.sub(r"<[^>]+>", "", stats) for name, stats in cards}


def test_a_struct_column_card_lists_its_fields_with_a_summary_each(tmp_path: Path) -> None:
    config = (gm.ConfigBuilder()
              .add_column(name="customer", column_type="sampler", sampler_type="person", params={})
              .add_column(name="when", column_type="sampler", sampler_type="datetime",
                          params={"start": "2024-01-01", "end": "2024-12-31"})
              .add_column(name="n", column_type="sampler", sampler_type="uniform", params={"low": 1, "high": 9}))
    with gm.Mill(tmp_path, run_config=gm.RunConfig(show_progress=False)) as mill:
        root = mill.create(config, num_records=20, dataset_name="people").artifact_path
    html = write_dataset_report(root).read_text(encoding="utf-8")
    page = Page(html)
    overview = page.table_with("kind")
    assert overview["customer"][2] == "struct"
    assert overview["customer"][1] == f"struct of {len(PERSON_FIELDS)} fields"  # the full type is its tooltip
    assert overview["customer"][6].startswith(f"{len(PERSON_FIELDS)} fields: first_name, last_name")
    fields = page.table_with("field")
    assert [name for name in fields if name != "field"] == list(PERSON_FIELDS)
    assert fields["age"][1:4] == ["int64", "numeric", "0"] and fields["age"][4].startswith("min ")
    assert fields["sex"][2] == "category" and re.search(r"(Female|Male) \d+", fields["sex"][4])
    assert fields["birth_date"][4].startswith("from ")
    stats = card_stats(html)
    assert set(stats) == {"customer", "when", "n"}
    for name, text in stats.items():  # no separator left dangling, none doubled
        assert not text.strip().endswith("·") and "· ·" not in text, (name, text)
    assert stats["customer"] == "0 of 20 null"  # the fields are listed below it


def test_a_card_without_a_summary_has_no_dangling_separator() -> None:
    table = pa.table({"blob": pa.array([b"x", None, b"yz"], pa.binary())})
    profile = profile_table(table)[0]
    assert (profile.kind, profile.summary) == ("other", "")
    assert card_stats(page_html("t", [], [columns_section([profile])])) == {"blob": "1 of 3 null"}


# ------------------------------------------------------------------------------------------- workflow

def test_workflow_report_draws_the_stage_graph_and_a_section_per_stage(
        workflow_results: gm.WorkflowResults) -> None:
    assert workflow_results.plan is not None
    reasons = {s.name: s.reason for s in workflow_results.plan.stages}
    path = write_workflow_report(workflow_results.workflow_dir, reasons=reasons)
    page = Page(path.read_text(encoding="utf-8"))
    assert page.count("g", "stage-node") == 2 and page.count("path", "edge") == 1
    stages = page.table_with("action")
    assert stages["base"][1:5] == ["-", "completed", "run", reasons["base"]]
    assert stages["doubled"][1:4] == ["base", "completed", "run"]
    sections = [attrs["id"] for tag, attrs in page.tags if tag == "section"]
    assert sections == ["stage-0", "stage-1"]
    assert page.count("svg", "chart-numeric") == 3  # n in both stages, d in the second


def test_workflow_usage_over_all_stages_names_each_models_columns_by_stage(tmp_path: Path) -> None:
    fm = FunctionModel(lambda request: f"text about {request.prompt}")
    with gm.Mill(tmp_path / "a", run_config=gm.RunConfig(batch_size=4, show_progress=False),
                 model_providers=[fm.provider()], model_configs=[fm.model_config()], clients={fm.name: fm}) as mill:
        wf = mill.compose_workflow("wf")
        wf.add_stage("base", gm.ConfigBuilder()
                     .add_column(name="topic", column_type="sampler", sampler_type="category",
                                 params={"values": ["cat", "dog"]})
                     .add_column(name="essay", column_type="llm_text", prompt="about {{ topic }}"), num_records=4)
        wf.add_stage("review", gm.ConfigBuilder()
                     .add_column(name="verdict", column_type="llm_text", prompt="judge {{ essay }}")
                     .add_column(name="summary", column_type="llm_text", prompt="sum up {{ essay }}"))
        results = wf.run()
    page = Page(write_workflow_report(results.workflow_dir).read_text(encoding="utf-8"))
    usage = [t for t in page.tables if t and "requests" in t[0]]
    assert len(usage) == 3  # all stages, then each stage's own
    overall = {row[0]: row for row in usage[0]}
    assert overall["model"][1] == "columns"
    assert overall["default"][1] == "base/essay, review/verdict, review/summary"
    assert overall["default"][overall["model"].index("requests")] == "12"
    per_stage = [{row[0]: row for row in table}["default"][1] for table in usage[1:]]
    assert per_stage == ["essay", "verdict, summary"]  # a stage's own table: its column names alone


def test_the_workflow_metadata_keeps_each_stages_reason_for_the_report_and_status(tmp_path: Path) -> None:
    """The reasons come from disk: a report written later (``gristmill report DIR``) shows why the
    last run did what it did, also after a rerun that reused a stage and reran the other."""
    def run(expr: str) -> gm.WorkflowResults:
        with gm.Mill(tmp_path / "a", run_config=gm.RunConfig(batch_size=4, show_progress=False)) as mill:
            wf = mill.compose_workflow("wf")
            wf.add_stage("base", gm.ConfigBuilder().add_column(
                name="n", column_type="sampler", sampler_type="uniform", params={"low": 1, "high": 9}),
                num_records=6)
            wf.add_stage("doubled", gm.ConfigBuilder().add_column(name="d", column_type="expression", expr=expr))
            return wf.run()

    run("{{ n * 2 }}")
    second = run("{{ n * 3 }}")
    assert second.plan is not None
    planned = {s.name: (s.action.value, s.reason) for s in second.plan.stages}
    assert planned["base"][0] == "reuse" and planned["doubled"][0] == "run"
    stages = Page(write_workflow_report(second.workflow_dir).read_text(encoding="utf-8")).table_with("action")
    assert {name: tuple(stages[name][3:5]) for name in planned} == planned
    shown = subprocess.run([sys.executable, "-m", "gristmill.cli.main", "status", str(second.workflow_dir)],
                           capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "250"})
    assert shown.returncode == 0, shown.stderr
    assert planned["doubled"][1] in " ".join(shown.stdout.split())


def test_a_directory_without_metadata_is_an_artifact_error(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="metadata.json does not exist"):
        write_dataset_report(tmp_path)
    with pytest.raises(ArtifactError, match="holds no gristmill workflow"):
        write_workflow_report(tmp_path)


# ------------------------------------------------------------------------------------------- CLI

CLI = """
import sys, typer
from gristmill.cli import report
app = typer.Typer()
app.callback()(lambda: None)
report.register(app)
app(sys.argv[1:])
"""


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", CLI, "report", *map(str, args)], capture_output=True, text=True,
                          timeout=120, check=False)


def test_cli_reports_a_dataset_and_a_workflow(dataset_dir: Path, workflow_results: gm.WorkflowResults,
                                              tmp_path: Path) -> None:
    done = run_cli(dataset_dir)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"{dataset_dir} is a dataset directory", f"wrote {dataset_dir / 'report.html'}"]
    out = tmp_path / "reports" / "wf.html"
    done = run_cli(workflow_results.workflow_dir, "-o", out)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"{workflow_results.workflow_dir} is a workflow directory", f"wrote {out}"]
    assert Page(out.read_text(encoding="utf-8")).count("g", "stage-node") == 2
    done = run_cli(tmp_path / "nothing-here")
    assert done.returncode == 1
    assert "holds neither metadata.json (a dataset) nor workflow-metadata.json (a workflow)" in done.stderr


# ------------------------------------------------------------------------------------------- Chromium

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(tmp_path: Path, *args: str) -> str:
    command = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}",
               *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def screenshot(tmp_path: Path, page: Path, name: str) -> Any:
    png = tmp_path / name
    chromium(tmp_path, f"--screenshot={png}", "--window-size=1200,3000", page.resolve().as_uri())
    return read_png(png)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed and could not be installed here "
                                             "(`make test` installs Debian's chromium package)")
def test_reports_render_in_headless_chromium(dataset_dir: Path, workflow_results: gm.WorkflowResults,
                                             tmp_path: Path) -> None:
    # The check that a script did not run can fail: this Chromium runs scripts in a page.
    control = tmp_path / "control.html"
    control.write_text(f"<html><head><title>kept</title></head><body>{PAYLOAD}</body></html>", encoding="utf-8")
    assert "<title>pwned</title>" in chromium(tmp_path, "--dump-dom", control.as_uri())

    report = write_dataset_report(dataset_dir)
    dom = chromium(tmp_path, "--dump-dom", report.resolve().as_uri())
    assert "<title>Dataset report: essays</title>" in dom
    assert dom.count('<svg class="chart ') == 7
    pixels = screenshot(tmp_path, report, "dataset.png")
    for kind, colour in BAR_COLOURS.items():  # every kind of chart drew its bars
        assert count_colour(pixels, colour) > 50, kind

    flow = write_workflow_report(workflow_results.workflow_dir)
    assert '<g class="stage-node">' in chromium(tmp_path, "--dump-dom", flow.resolve().as_uri())
    pixels = screenshot(tmp_path, flow, "workflow.png")
    assert count_colour(pixels, STATUS_COLOURS["completed"]) > 2 * 1000  # two stage boxes
    assert count_colour(pixels, BAR_COLOURS["numeric"]) > 50
