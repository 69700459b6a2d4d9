"""Image files are part of a dataset's integrity: each batch record lists the images its rows name
(size, CRC-32, sha256), every reuse checks that they exist with their size, ``verify`` checks their
content, and ``retry_failed`` keeps and records the images of its new generation. Real parquet and
PNG files, written through the project's test server."""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import gristmill as gm
from gristmill.engine.dataset_plan import DatasetAction
from gristmill.storage.metadata import DatasetMetadata
from gristmill.testing import LLMTestServer, provider_and_model

MARK = "BROKEN"


@pytest.fixture()
def server() -> Iterator[LLMTestServer]:
    with LLMTestServer() as instance:
        yield instance


def _mill(server: LLMTestServer, path: Path, **run: Any) -> gm.Mill:
    provider, chat = provider_and_model(server.url)
    _, painter = provider_and_model(server.url, alias="painter", model="test-image", generation_type="image")
    options: dict[str, Any] = {"batch_size": 4, "seed": 7, "show_progress": False, "max_error_rate": 1.0, **run}
    return gm.Mill(path, run_config=gm.RunConfig(**options), model_providers=[provider],
                   model_configs=[chat, painter])


def _seed(n: int, broken: tuple[int, ...] = ()) -> pd.DataFrame:
    return pd.DataFrame({"i": range(n), "thing": [f"boat {i}{' ' + MARK if i in broken else ''}" for i in range(n)]})


def _config(n: int = 10, broken: tuple[int, ...] = ()) -> gm.DatasetConfig:
    return (gm.ConfigBuilder().with_seed_dataset(_seed(n, broken))
            .add_column(name="art", column_type="image", prompt="A watercolour of {{ thing }}", model_alias="painter")
            .build())


def _metadata(root: Path) -> dict[str, Any]:
    return json.loads((root / "metadata.json").read_text())


def _recorded_images(root: Path) -> dict[str, dict[str, Any]]:
    """Every image record of the dataset (journal folded in), by path."""
    meta = DatasetMetadata.load(root / "metadata.json")
    return {image.file: image.model_dump() for batch in meta.completed_batches for image in batch.image_files}


def _check_records(root: Path, records: dict[str, dict[str, Any]]) -> None:
    for name, record in records.items():
        data = (root / name).read_bytes()
        assert record["bytes"] == len(data)
        assert record["crc32"] == f"{zlib.crc32(data) & 0xFFFFFFFF:08x}"
        assert record["sha256"] == hashlib.sha256(data).hexdigest()


def test_metadata_lists_each_image_with_its_size_and_checksums(server: LLMTestServer, tmp_path: Path) -> None:
    mill = _mill(server, tmp_path)
    result = mill.create(_config(10), num_records=10, dataset_name="d")
    batches = _metadata(result.artifact_path)["completed_batches"]
    assert len(batches) == 3
    for batch in batches:
        rows = range(batch["row_offset"], batch["row_offset"] + batch["rows"])
        assert [image["file"] for image in batch["image_files"]] == [f"images/art/{r:08d}.png" for r in rows]
    records = _recorded_images(result.artifact_path)
    assert sorted(records) == sorted(result.load_dataset()["art"])
    _check_records(result.artifact_path, records)

    # A dataset without image columns: no such entries, not even an empty list; it loads as before.
    plain_config = (gm.ConfigBuilder().with_seed_dataset(_seed(6))
                    .add_column(name="loud", column_type="expression", expr="{{ thing | upper }}").build())
    plain = mill.create(plain_config, num_records=6, dataset_name="plain")
    text = (plain.artifact_path / "metadata.json").read_text()
    assert "image_files" not in text
    assert all(b.image_files == [] for b in DatasetMetadata.load(plain.artifact_path / "metadata.json")
               .completed_batches)


def test_a_dropped_image_column_and_dropped_rows_keep_their_images_recorded(server: LLMTestServer,
                                                                            tmp_path: Path) -> None:
    """Images named outside the main table (a column with ``drop: true``, rows moved to
    dropped-rows/ because a later cell failed) are files of the dataset too."""
    server.configure(fail_marker=MARK)
    config = (gm.ConfigBuilder().with_seed_dataset(_seed(8, broken=(2, 5)))
              .add_column(name="art", column_type="image", prompt="A watercolour of boat {{ i }}",
                          model_alias="painter", drop=True)
              .add_column(name="note", column_type="llm_text", prompt="Describe {{ thing }}")
              .build())
    result = _mill(server, tmp_path, on_failed_rows="drop").create(config, num_records=8, dataset_name="d")
    assert len(result.load_dataset()) == 6
    records = _recorded_images(result.artifact_path)
    assert sorted(records) == [f"images/art/{r:08d}.png" for r in range(8)]
    _check_records(result.artifact_path, records)


def test_a_deleted_image_is_reported_by_name_and_the_dataset_is_not_reused(server: LLMTestServer,
                                                                           tmp_path: Path) -> None:
    mill = _mill(server, tmp_path)
    first = mill.create(_config(10), num_records=10, dataset_name="d")
    victim = first.artifact_path / "images" / "art" / "00000005.png"
    victim.unlink()
    said = r"images/art/00000005.png is recorded as complete but missing \(an image of batch 1\)"

    decision = mill.plan_dataset(_config(10), num_records=10, dataset_name="d")
    assert decision.action is DatasetAction.FRESH_SIBLING and decision.path != first.artifact_path
    assert "00000005.png is recorded as complete but missing" in decision.reason

    with pytest.raises(gm.ArtifactError, match=said):
        mill.create(_config(10), num_records=10, dataset_name="d", resume=gm.ResumeMode.ALWAYS)
    with pytest.warns(UserWarning, match=said + r".*starting fresh in"):
        fresh = mill.create(_config(10), num_records=10, dataset_name="d", resume=gm.ResumeMode.IF_POSSIBLE)
    assert fresh.artifact_path != first.artifact_path
    assert not victim.exists()  # the damaged directory is left as it was
    assert server.stats()["images"] == 10  # the fresh start drew its images from the old cache
    assert (fresh.artifact_path / "images" / "art" / "00000005.png").is_file()
    _check_records(fresh.artifact_path, _recorded_images(fresh.artifact_path))


def test_a_truncated_image_is_caught_by_every_reuse(server: LLMTestServer, tmp_path: Path) -> None:
    mill = _mill(server, tmp_path)
    first = mill.create(_config(10), num_records=10, dataset_name="d")
    victim = first.artifact_path / "images" / "art" / "00000002.png"
    data = victim.read_bytes()
    victim.write_bytes(data[:-10])

    decision = mill.plan_dataset(_config(10), num_records=10, dataset_name="d")
    assert decision.action is DatasetAction.FRESH_SIBLING
    assert (f"00000002.png is truncated or altered ({len(data) - 10} bytes, {len(data)} recorded) "
            "(an image of batch 0)") in decision.reason
    with pytest.raises(gm.ArtifactError, match=r"images/art/00000002.png is truncated or altered"):
        mill.create(_config(10), num_records=10, dataset_name="d", resume=gm.ResumeMode.ALWAYS)
    assert victim.read_bytes() == data[:-10]  # never repaired behind the user's back


def test_an_image_replaced_at_the_same_size_is_caught_only_by_verify(server: LLMTestServer, tmp_path: Path) -> None:
    mill = _mill(server, tmp_path)
    first = mill.create(_config(10), num_records=10, dataset_name="d")
    images = first.artifact_path / "images" / "art"
    victim, other = images / "00000007.png", images / "00000001.png"
    data = bytearray(victim.read_bytes())
    data[-20] ^= 0xFF  # same size, other bytes
    victim.write_bytes(bytes(data))
    assert len(other.read_bytes()) == len(data)

    # A plain reuse checks sizes only: reading every image would make it as slow as a verify.
    plain = mill.plan_dataset(_config(10), num_records=10, dataset_name="d")
    assert plain.action is DatasetAction.REUSE and plain.path == first.artifact_path

    checked = mill.plan_dataset(_config(10), num_records=10, dataset_name="d", verify=True)
    assert checked.action is DatasetAction.FRESH_SIBLING
    assert "00000007.png is altered (same size, content changed: checksum mismatch) (an image of batch 1)" \
        in checked.reason
    with pytest.raises(gm.ArtifactError, match=r"images/art/00000007.png is altered \(same size"):
        mill.create(_config(10), num_records=10, dataset_name="d", resume=gm.ResumeMode.ALWAYS, verify=True)

    # Another image copied over it (same size): caught by verify too.
    victim.write_bytes(other.read_bytes())
    assert mill.plan_dataset(_config(10), num_records=10, dataset_name="d").action is DatasetAction.REUSE
    assert "00000007.png is altered" in mill.plan_dataset(_config(10), num_records=10, dataset_name="d",
                                                          verify=True).reason


def test_retry_failed_keeps_every_image_and_records_the_retried_ones(server: LLMTestServer, tmp_path: Path) -> None:
    server.configure(fail_marker=MARK)
    mill = _mill(server, tmp_path)
    config = _config(10, broken=(1, 6, 9))
    first = mill.create(config, num_records=10, dataset_name="d")
    before = _recorded_images(first.artifact_path)
    good = [f"images/art/{r:08d}.png" for r in range(10) if r not in (1, 6, 9)]
    assert sorted(before) == good
    assert [b["failed_rows"] for b in _metadata(first.artifact_path)["completed_batches"]] == [1, 1, 1]

    server.configure(fail_marker="")
    retried = mill.create(config, num_records=10, dataset_name="d", retry_failed=True)
    assert retried.artifact_path == first.artifact_path and server.stats()["images"] == 10
    meta = _metadata(retried.artifact_path)
    assert [b["generation"] for b in meta["completed_batches"]] == [1, 1, 1]
    after = _recorded_images(retried.artifact_path)
    assert sorted(after) == [f"images/art/{r:08d}.png" for r in range(10)]  # the retried rows' images too
    assert {name: after[name] for name in good} == before  # kept, same bytes
    _check_records(retried.artifact_path, after)  # every file the new records name exists, as recorded
    assert sorted(retried.load_dataset()["art"]) == sorted(after)
    assert sorted(p.name for p in (retried.artifact_path / "parquet-files").iterdir()) == [
        f"batch_{i:05d}.r1.parquet" for i in range(3)]  # the old generation's parquet files are gone

    # The retried dataset passes a full verify and is reused as it is.
    decision = mill.plan_dataset(config, num_records=10, dataset_name="d", verify=True)
    assert decision.action is DatasetAction.REUSE and decision.path == first.artifact_path


def test_a_record_naming_an_image_outside_the_dataset_is_inconsistent(server: LLMTestServer, tmp_path: Path) -> None:
    mill = _mill(server, tmp_path)
    first = mill.create(_config(4), num_records=4, dataset_name="d")
    path = first.artifact_path / "metadata.json"
    meta = json.loads(path.read_text())
    meta["completed_batches"][0]["image_files"][0]["file"] = "../elsewhere.png"
    path.write_text(json.dumps(meta))
    decision = mill.plan_dataset(_config(4), num_records=4, dataset_name="d")
    assert decision.action is DatasetAction.FRESH_SIBLING
    assert "is inconsistent: batch 0 names image '../elsewhere.png', which is outside the dataset" in decision.reason


def test_a_completed_workflow_stage_with_a_deleted_image_is_not_reused(server: LLMTestServer, tmp_path: Path) -> None:
    """A stage's output names its images: one missing makes the plan rerun the stage, saying which
    (its images come back from the workflow's cache, nothing is paid again)."""
    def workflow() -> gm.CompositeWorkflow:
        wf = _mill(server, tmp_path).compose_workflow("wf")
        wf.add_stage("art", _config(8), num_records=8)
        return wf

    workflow().run()
    assert [s.action.value for s in workflow().plan().stages] == ["reuse"]
    victim = next((tmp_path / "wf").glob("stage-0-*/images/art/00000003.png"))
    victim.unlink()
    step = workflow().plan().stages[0]
    assert step.action.value == "run" and "images/art/00000003.png" in step.reason and "missing" in step.reason
    workflow().run()
    assert server.stats()["images"] == 8
    assert next((tmp_path / "wf").glob("stage-0-*/images/art/00000003.png")).is_file()
