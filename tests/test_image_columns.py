"""Image columns (``column_type: image``) against the project's test server: PNG files under the
dataset directory with their relative path in the column, the response cache (rerun, growth, a
fresh start), only active rows paid, refused prompts as failed cells and ``retry_failed``, the
model's throttle, preview, and a SIGKILL mid-run."""

from __future__ import annotations

import os
import re
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import gristmill as gm
from gristmill.llm.cache import ResponseCache
from gristmill.testing import LLMTestServer, ServerProcess, provider_and_model
from gristmill.testing.server import image_png

MARK = "BROKEN"
PROMPT = "A watercolour of {{ thing }}"


@pytest.fixture()
def server() -> Iterator[LLMTestServer]:
    with LLMTestServer(fail_marker=MARK) as instance:
        yield instance


def _mill(server_url: str, path: Path, *, model_fields: dict[str, Any] | None = None,
          provider_fields: dict[str, Any] | None = None, **run: Any) -> gm.Mill:
    provider, chat = provider_and_model(server_url)
    if provider_fields:
        provider = provider.model_copy(update=provider_fields)
    _, painter = provider_and_model(server_url, alias="painter", model="test-image", generation_type="image",
                                    **(model_fields or {}))
    options: dict[str, Any] = {"batch_size": 50, "seed": 7, "show_progress": False, **run}
    return gm.Mill(path, run_config=gm.RunConfig(**options), model_providers=[provider],
                   model_configs=[chat, painter])


def _things(n: int) -> pd.DataFrame:
    return pd.DataFrame({"i": range(n), "thing": [f"lighthouse number {i}" for i in range(n)]})


def _config(n: int = 12, seed: pd.DataFrame | None = None, **column: Any) -> gm.DatasetConfig:
    return (gm.ConfigBuilder()
            .with_seed_dataset(_things(n) if seed is None else seed)
            .add_column(name="art", column_type="image", prompt=PROMPT, model_alias="painter", **column)
            .build())


def _decode_png(data: bytes) -> tuple[int, int, bytes]:
    """(width, height, raw scanlines) of an 8-bit RGB PNG, every chunk's CRC checked."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        chunks.append((kind, body))
        pos += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, colour, interlace) == (8, 2, 0)
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    assert len(raw) == height * (1 + 3 * width)
    return width, height, raw


def _expected(thing: str, size: tuple[int, int] = (8, 8)) -> bytes:
    return image_png("test-image", f"A watercolour of {thing}", *size)


def _check_files(root: Path, df: pd.DataFrame, size: tuple[int, int] = (8, 8)) -> None:
    for row, (thing, path) in enumerate(zip(df["thing"], df["art"], strict=True)):
        assert path == f"images/art/{row:08d}.png"
        data = (root / path).read_bytes()
        assert data == _expected(thing, size)
        assert _decode_png(data)[:2] == size


def test_images_are_png_files_with_their_relative_path_in_the_column(server: LLMTestServer, tmp_path: Path) -> None:
    result = _mill(server.url, tmp_path).create(_config(6, size="24x16", quality="low"), num_records=6,
                                                dataset_name="d")
    assert pq.read_schema(result.batch_files()[0]).field("art").type == pa.string()
    df = result.load_dataset()
    _check_files(result.artifact_path, df, (24, 16))
    assert sorted(p.name for p in (result.artifact_path / "images" / "art").iterdir()) == [
        f"{i:08d}.png" for i in range(6)]  # no temp files left
    assert server.stats()["images"] == 6
    assert result.usage["painter"]["images"] == 6 and result.usage["painter"]["requests"] == 6
    with ResponseCache(result.artifact_path / "response-cache.sqlite") as cache:
        assert cache.stats()["entries"] == 6


def test_rerun_pays_nothing_growth_pays_new_rows_and_a_fresh_start_reuses_images(
        server: LLMTestServer, tmp_path: Path) -> None:
    mill = _mill(server.url, tmp_path, batch_size=5)
    first = mill.create(_config(20), num_records=12, dataset_name="d")
    assert server.stats()["images"] == 12
    again = mill.create(_config(20), num_records=12, dataset_name="d")
    assert server.stats()["images"] == 12  # a rerun pays nothing
    assert again.load_dataset()["art"].tolist() == first.load_dataset()["art"].tolist()

    grown = mill.create(_config(20), num_records=20, dataset_name="d")
    stats = server.stats()
    assert stats["images"] == 20 and stats["duplicate_images"] == 0  # exactly the 8 new rows
    _check_files(grown.artifact_path, grown.load_dataset())

    # Another config over the same rows starts fresh (IF_POSSIBLE) in a sibling directory; its
    # images come from the old cache as bytes and are written into the new directory.
    changed = gm.ConfigBuilder.from_config(_config(20)).add_column(
        name="loud", column_type="expression", expr="{{ thing | upper }}").build()
    with pytest.warns(UserWarning, match="starting fresh in"):
        fresh = mill.create(changed, num_records=20, dataset_name="d")
    assert fresh.artifact_path != grown.artifact_path
    assert server.stats()["images"] == 20 and fresh.usage["painter"]["cache_hits"] == 20
    _check_files(fresh.artifact_path, fresh.load_dataset())


def test_only_active_rows_are_drawn(server: LLMTestServer, tmp_path: Path) -> None:
    result = _mill(server.url, tmp_path).create(_config(10, skip="i % 2 == 1"), num_records=10, dataset_name="d")
    df = result.load_dataset()
    assert server.stats()["images"] == 5
    assert df.loc[df["i"] % 2 == 1, "art"].isna().all()
    assert sorted(p.name for p in (result.artifact_path / "images" / "art").iterdir()) == [
        f"{i:08d}.png" for i in range(0, 10, 2)]


def test_a_refused_prompt_fails_its_cell_and_retry_failed_draws_only_it(server: LLMTestServer,
                                                                        tmp_path: Path) -> None:
    seed = pd.DataFrame({"thing": [f"boat {i}" for i in range(5)] + [f"boat {MARK}", "  "]})
    config = (gm.ConfigBuilder().with_seed_dataset(seed)
              .add_column(name="art", column_type="image", prompt="{{ thing }}", model_alias="painter").build())
    mill = _mill(server.url, tmp_path, max_error_rate=1.0)
    result = mill.create(config, num_records=7, dataset_name="d")
    df = result.load_dataset()
    assert df["art"].iloc[:5].notna().all() and df["art"].iloc[5:].isna().all()
    reasons = [problems[0]["reason"] for problems in df["__errors"].iloc[5:]]
    assert "rejected by the safety system" in reasons[0] and "rendered empty" in reasons[1]
    assert server.stats()["images"] == 5 and server.stats()["requests"] == 6  # the blank prompt was not sent
    assert not (result.artifact_path / "images" / "art" / "00000005.png").exists()

    server.configure(fail_marker="")
    retried = mill.create(config, num_records=7, dataset_name="d", retry_failed=True)
    df = retried.load_dataset()
    assert df["art"].iloc[5] == "images/art/00000005.png" and pd.isna(df["art"].iloc[6])
    assert (retried.artifact_path / df["art"].iloc[5]).read_bytes() == image_png("test-image", f"boat {MARK}")
    assert server.stats()["images"] == 6  # only the refused one again


def test_transient_errors_and_429s_are_retried_through_the_models_throttle(server: LLMTestServer,
                                                                          tmp_path: Path) -> None:
    server.configure(error_rate=0.3, max_concurrent=2, retry_after=0.01, latency=0.01)
    fields = {"retry_backoff": 0.0, "max_retries": 20, "max_parallel_requests": 8}
    result = _mill(server.url, tmp_path, model_fields=fields).create(_config(16), num_records=16, dataset_name="d")
    _check_files(result.artifact_path, result.load_dataset())
    stats = server.stats()
    assert stats["errors"] > 0 and stats["rate_limited"] > 0
    assert stats["max_in_flight"] <= 2 and stats["images"] == 16 and stats["duplicate_images"] == 0


def test_an_endpoint_that_keeps_failing_stops_the_run(server: LLMTestServer, tmp_path: Path) -> None:
    server.configure(fail_status=500)
    fields = {"max_retries": 1, "retry_backoff": 0.0}
    with pytest.raises(gm.ModelError, match=r"stopping: .* images of column 'art' .*HTTP 500"):
        _mill(server.url, tmp_path, model_fields=fields).create(_config(4), num_records=4, dataset_name="d")
    assert server.stats()["requests"] == 8  # 4 rows, each retried once
    assert not (tmp_path / "d" / "images").exists()


def test_an_answer_with_a_url_fails_its_cell_with_what_to_do(server: LLMTestServer, tmp_path: Path) -> None:
    mill = _mill(server.url, tmp_path, max_error_rate=1.0, provider_fields={"extra_body": {"response_format": "url"}})
    df = mill.create(_config(2, response_format=None), num_records=2, dataset_name="d").load_dataset()
    assert df["art"].isna().all()
    assert all("answered a URL, not the image (b64_json)" in e[0]["reason"] for e in df["__errors"])
    assert server.stats()["requests"] == 2  # refused answers are not retried


def test_a_chat_model_is_refused_before_any_request(server: LLMTestServer, tmp_path: Path) -> None:
    config = (gm.ConfigBuilder().with_seed_dataset(_things(3))
              .add_column(name="art", column_type="image", prompt=PROMPT, model_alias="default").build())
    with pytest.raises(gm.ConfigError, match="is a chat model; an image column needs a model declared with "
                                             "generation_type: image"):
        _mill(server.url, tmp_path).create(config, num_records=3, dataset_name="d")
    assert server.stats()["requests"] == 0


def test_preview_writes_its_images_outside_the_dataset_directory(server: LLMTestServer, tmp_path: Path) -> None:
    with _mill(server.url, tmp_path / "datasets") as mill:
        df = mill.preview(_config(3), num_records=3)
        paths = [Path(p) for p in df["art"]]
        assert all(p.is_absolute() and p.read_bytes() == _expected(t) for p, t in zip(paths, df["thing"], strict=True))
        assert not (tmp_path / "datasets").exists() or not any((tmp_path / "datasets").iterdir())
        again = [Path(p) for p in mill.preview(_config(3), num_records=3)["art"]]
        assert server.stats()["images"] == 3  # the second preview is served by the preview cache
        assert [p.read_bytes() for p in again] == [p.read_bytes() for p in paths] and again != paths
    assert not any(p.exists() for p in paths + again)  # removed with the preview cache when the Mill closes


def test_config_checks_and_yaml_round_trip() -> None:
    with pytest.raises(gm.ConfigError, match="must be 'WIDTHxHEIGHT'"):
        _config(size="big")
    with pytest.raises(gm.ConfigError, match="extra_params sets n, size"):
        _config(extra_params={"size": "8x8", "n": 2})
    with pytest.raises(gm.ConfigError, match="prompt must not be empty"):
        gm.ConfigBuilder().add_column(name="art", column_type="image", prompt=" ", model_alias="painter")
    config = gm.DatasetConfig.from_yaml(textwrap.dedent("""
        models:
          - {alias: painter, model: m, provider: p, generation_type: image}
        columns:
          - {name: thing, column_type: expression, expr: "fox"}
          - {name: art, column_type: image, prompt: "a {{ thing }}", model_alias: painter, size: 64x64,
             extra_params: {style: vivid}}
        """))
    column = gm.DatasetConfig.from_yaml(config.to_yaml()).columns[1]
    assert (column.column_type, column.required_columns(), column.model_aliases()) == ("image", {"thing"}, {"painter"})
    assert config.models[0].generation_type == "image"


def test_extra_params_and_size_are_part_of_the_cache_key(server: LLMTestServer, tmp_path: Path) -> None:
    mill = _mill(server.url, tmp_path)
    mill.create(_config(3), num_records=3, dataset_name="d")
    with pytest.warns(UserWarning, match="starting fresh in"):
        changed = mill.create(_config(3, extra_params={"style": "vivid"}), num_records=3, dataset_name="d")
    assert server.stats()["images"] == 6 and changed.usage["painter"].get("cache_hits", 0) == 0


DOC = Path(__file__).resolve().parents[1] / "docs" / "images.md"


def test_the_docs_example_runs(server: LLMTestServer, tmp_path: Path) -> None:
    example = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)[0]
    config = gm.DatasetConfig.from_yaml(example)
    provider = gm.ModelProvider(name="openai", endpoint=server.url)
    with gm.Mill(tmp_path, model_providers=[provider], run_config=gm.RunConfig(show_progress=False)) as mill:
        result = mill.create(config, num_records=4, dataset_name="covers")
    df = result.load_dataset()
    for row, (title, path) in enumerate(zip(df["title"], df["cover"], strict=True)):
        assert path == f"images/cover/{row:08d}.png"
        data = (result.artifact_path / path).read_bytes()
        assert data == image_png("gpt-image-1", f"A minimalist book cover for '{title}'", 64, 64)
        assert _decode_png(data)[:2] == (64, 64)


CRASH_SCRIPT = textwrap.dedent("""
    import sys
    import pandas as pd
    import gristmill as gm
    from gristmill.testing import provider_and_model
    provider, model = provider_and_model(sys.argv[1], alias="painter", model="test-image",
                                         generation_type="image", max_parallel_requests=4)
    n = int(sys.argv[3])
    cfg = (gm.ConfigBuilder()
           .with_seed_dataset(pd.DataFrame({"thing": [f"crash thing {i}" for i in range(n)]}))
           .add_column(name="art", column_type="image", prompt="{{ thing }}", model_alias="painter", size="16x16")
           .build())
    mill = gm.Mill(sys.argv[2], run_config=gm.RunConfig(batch_size=1000, seed=5, show_progress=False),
                   model_providers=[provider], model_configs=[model])
    result = mill.create(cfg, num_records=n, dataset_name="crash", resume="if-possible")
    print(result.count_records())
""")


def test_sigkill_mid_run_repays_at_most_the_images_in_flight(tmp_path: Path) -> None:
    n, parallel = 120, 4
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    root = tmp_path / "artifacts" / "crash"
    with ServerProcess(latency=0.02) as server:
        args = [sys.executable, "-c", CRASH_SCRIPT, server.url, str(tmp_path / "artifacts"), str(n)]
        proc = subprocess.Popen(args, env=env)
        deadline = time.monotonic() + 60
        while server.stats()["images"] < 40 and time.monotonic() < deadline:
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        at_kill = server.stats()
        assert 40 <= at_kill["images"] < n  # killed inside the one batch of 1000 rows
        assert not list(root.glob("parquet-files/*.parquet"))
        with ResponseCache(root / "response-cache.sqlite") as cache:
            stored = cache.stats()["entries"]
        assert at_kill["images"] - stored <= parallel  # answered, not yet stored
        resumed = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
        after = server.stats()
        # A rerun of the complete dataset pays nothing.
        subprocess.run(args, env=env, capture_output=True, text=True, check=True)
        assert server.stats()["images"] == after["images"]
    assert resumed.stdout.strip().endswith(str(n))
    # Answered but not stored at the kill: re-paid, and nothing else (an answer the server sent
    # just after the kill to the dead process counts as one more of those).
    repaid = after["duplicate_images"] - at_kill["duplicate_images"]
    print(f"image SIGKILL: images in flight {at_kill['images'] - stored}, re-paid {repaid}, bound {parallel}")
    assert at_kill["images"] - stored <= repaid <= parallel
    assert n - stored <= after["images"] - at_kill["images"] <= n - stored + parallel
    df = pq.read_table(root / "parquet-files").to_pandas()
    assert len(df) == n and df["art"].notna().all()
    for row, (thing, path) in enumerate(zip(df["thing"], df["art"], strict=True)):
        assert path == f"images/art/{row:08d}.png"
        assert (root / path).read_bytes() == image_png("test-image", thing, 16, 16)
    assert not [p for p in (root / "images" / "art").iterdir() if p.name.startswith(".")]  # no temp files left
