"""``gristmill clean``: what reruns moved aside stays until the user empties the trash."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

import gristmill as gm
from gristmill.cli.main import app


def _workflow(tmp_path: Path) -> gm.CompositeWorkflow:
    mill = gm.Mill(tmp_path, run_config=gm.RunConfig(batch_size=5, show_progress=False))
    wf = mill.compose_workflow("wf")
    wf.add_stage("base", gm.ConfigBuilder().add_column(name="n", column_type="sampler", sampler_type="uniform",
                                                       params={"low": 0, "high": 9, "integer": True}),
                 num_records=10)
    wf.add_stage("label", gm.ConfigBuilder().add_column(name="label", column_type="expression", expr="n={{ n }}"))
    return wf


def test_clean_lists_then_deletes_what_reruns_moved_aside(tmp_path: Path) -> None:
    wf = _workflow(tmp_path)
    with wf:
        wf.run()
        (tmp_path / "wf" / "stage-1-label" / "my-notes.txt").write_text("mine")
        wf.run(rerun_from="label")
    trash = tmp_path / "wf" / ".trash"
    moved = [p for p in trash.iterdir() if p.name.startswith("stage-1-label")]
    assert len(moved) == 1 and (moved[0] / "my-notes.txt").read_text() == "mine"  # moved, not deleted

    runner = CliRunner()
    listed = runner.invoke(app, ["clean", str(tmp_path / "wf")])
    assert listed.exit_code == 0, listed.output
    assert "would delete" in listed.output and "pass --yes" in listed.output and moved[0].exists()

    deleted = runner.invoke(app, ["clean", str(tmp_path / "wf"), "--yes"])
    assert deleted.exit_code == 0, deleted.output
    assert "deleted" in deleted.output and not any(trash.iterdir())
    assert runner.invoke(app, ["clean", str(tmp_path / "wf")]).output.strip() == "the trash is empty"
    assert gm.DatasetResults(tmp_path / "wf" / "stage-1-label").count_records() == 10  # the live run is intact


def test_clean_of_a_missing_directory_is_one_clear_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["clean", str(tmp_path / "nope"), "--yes"])
    assert result.exit_code == 1 and "is not a directory" in result.output


def test_create_defaults_to_continuing_and_takes_verify(tmp_path: Path) -> None:
    config = tmp_path / "ds.yaml"
    config.write_text("columns:\n"
                      "  - {name: n, column_type: sampler, sampler_type: uniform, params: {low: 0, high: 1}}\n")
    runner = CliRunner()
    args = ["create", str(config), "-n", "8", "--artifact-path", str(tmp_path / "out")]
    assert runner.invoke(app, args).exit_code == 0
    again = runner.invoke(app, [*args, "--verify"])
    assert again.exit_code == 0, again.output
    assert "generated now: 0 rows" in " ".join(again.output.split())  # reused, not a timestamped copy
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["ds"]


def test_clean_of_a_dataset_removes_its_fresh_starts_after_merging_their_cached_answers(tmp_path: Path) -> None:
    """A changed config starts fresh in <name>_<timestamp>; clean lists those, then deletes them
    with --yes, their response caches merged into the kept dataset's first: changing the config
    back pays nothing."""
    from gristmill.testing import LLMTestServer, provider_and_model

    def config(prompt: str) -> gm.ConfigBuilder:
        return (gm.ConfigBuilder()
                .add_column(name="n", column_type="sampler", sampler_type="uniform",
                            params={"low": 0, "high": 9, "integer": True})
                .add_column(name="text", column_type="llm_text", prompt=prompt))

    with LLMTestServer() as server:
        provider, model = provider_and_model(server.url)

        def create(prompt: str) -> gm.DatasetResults:
            with gm.Mill(tmp_path, run_config=gm.RunConfig(batch_size=5, seed=1, show_progress=False),
                         model_providers=[provider], model_configs=[model]) as mill:
                return mill.create(config(prompt), num_records=10, dataset_name="d")

        create("Say {{ n }}.")
        fresh = create("Write {{ n }}.")  # a new prompt: a fresh start beside d, 10 new answers
        assert fresh.artifact_path.name.startswith("d_") and server.stats()["requests"] == 20
        fresh_texts = fresh.load_dataset()["text"].tolist()
        main = tmp_path / "d"
        runner = CliRunner()
        listed = runner.invoke(app, ["clean", str(main)])
        assert listed.exit_code == 0, listed.output
        assert f"would delete {fresh.artifact_path}" in listed.output and fresh.artifact_path.exists()
        deleted = runner.invoke(app, ["clean", str(main), "--yes"])
        assert deleted.exit_code == 0, deleted.output
        assert not fresh.artifact_path.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["d"]
        assert "no leftover fresh starts" in runner.invoke(app, ["clean", str(main)]).output
        # The second prompt's answers live on in d's cache: a fresh start with it pays nothing.
        again = create("Write {{ n }}.")
        assert server.stats()["requests"] == 20
        assert again.load_dataset()["text"].tolist() == fresh_texts
