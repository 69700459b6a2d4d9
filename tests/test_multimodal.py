"""``multi_modal_context`` on LLM columns: images and audio from a column, sent as content parts."""

from __future__ import annotations

import base64
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import gristmill as gm
from gristmill.config.llm_columns import LLMTextColumn, MultiModalContext
from gristmill.testing import FunctionModel, LLMTestServer, provider_and_model, solid_png
from gristmill.testing.function_model import ChatRequest


def write_png(path: Path, rgb: tuple[int, int, int], size: int = 4) -> bytes:
    """A real PNG file of one colour."""
    data = solid_png(rgb, size)
    path.write_bytes(data)
    return data


def write_wav(path: Path, frames: int = 800) -> bytes:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x01" * frames)
    return path.read_bytes()


@pytest.fixture()
def server() -> Iterator[LLMTestServer]:
    with LLMTestServer() as instance:
        yield instance


@pytest.fixture()
def images(tmp_path: Path) -> list[bytes]:
    folder = tmp_path / "images"
    folder.mkdir()
    return [write_png(folder / f"img{i}.png", (10 * i, 20, 30)) for i in range(4)]


def _seed(tmp_path: Path, **columns: list[Any]) -> str:
    path = tmp_path / "seed.parquet"
    pd.DataFrame(columns).to_parquet(path)
    return str(path)


def _config(seed: str, *contexts: MultiModalContext, **column: Any) -> gm.DatasetConfig:
    return (gm.ConfigBuilder()
            .with_seed_dataset(seed)
            .add_column(LLMTextColumn(name="caption", prompt="Describe the picture.",
                                      multi_modal_context=list(contexts), **column))
            .build())


def _function_mill(fm: FunctionModel, root: Path) -> gm.Mill:
    return gm.Mill(root, model_providers=[fm.provider()], model_configs=[fm.model_config()],
                   clients={fm.name: fm}, run_config=gm.RunConfig(show_progress=False, batch_size=10))


def _parts(request: ChatRequest) -> list[dict[str, Any]]:
    content = request.messages[-1]["content"]
    assert isinstance(content, list)
    return content


# ------------------------------------------------------------------------------------------------ config

def test_context_columns_are_read_by_the_column_and_checked() -> None:
    column = LLMTextColumn(name="c", prompt="{{ q }}", multi_modal_context=[{"column": "photo"}])
    assert column.required_columns() == {"q", "photo"}
    assert column.multi_modal_context[0].format == "path" and column.multi_modal_context[0].type == "image"
    with pytest.raises(gm.ConfigError, match="audio from column 'a' must be a path or base64"):
        LLMTextColumn(name="c", prompt="p", multi_modal_context=[{"column": "a", "type": "audio", "format": "url"}])
    with pytest.raises(gm.ConfigError, match="media_type"):
        LLMTextColumn(name="c", prompt="p", multi_modal_context=[{"column": "a", "media_type": "text/plain"}])
    with pytest.raises(gm.ConfigError, match="photo"):  # an unknown column is named before any request
        cfg = gm.ConfigBuilder().add_column(column).build()
        with gm.Mill("unused", run_config=gm.RunConfig(show_progress=False)) as mill:
            mill.create(cfg, num_records=1)


def test_base_dir_is_not_fingerprinted_but_the_context_is(tmp_path: Path) -> None:
    def fp(**context: Any) -> str:
        return _config(_seed(tmp_path, p=["x"]), MultiModalContext(column="p", **context)).fingerprint()

    assert fp(base_dir="/a") == fp(base_dir="/b") == fp()
    assert fp() != fp(detail="low")
    assert fp() != _config(_seed(tmp_path, p=["x"])).fingerprint()


# ------------------------------------------------------------------------------------------ end to end

def test_local_images_are_sent_as_data_urls(tmp_path: Path, images: list[bytes]) -> None:
    fm = FunctionModel(lambda request: "a square")
    paths = [str(tmp_path / "images" / f"img{i}.png") for i in range(4)]
    with _function_mill(fm, tmp_path / "out") as mill:
        df = mill.create(_config(_seed(tmp_path, photo=paths), MultiModalContext(column="photo", detail="low")),
                         num_records=4).load_dataset()
    assert df["caption"].tolist() == ["a square"] * 4
    sent = {}
    for request in fm.calls:
        text, image = _parts(request)
        assert text == {"type": "text", "text": "Describe the picture."}
        assert image["type"] == "image_url" and image["image_url"]["detail"] == "low"
        url = image["image_url"]["url"]
        assert url.startswith("data:image/png;base64,")
        sent[base64.b64decode(url.partition(",")[2])] = True
    assert set(sent) == set(images)


def test_urls_base64_lists_and_audio(tmp_path: Path, images: list[bytes]) -> None:
    wav = write_wav(tmp_path / "clip.wav")
    fm = FunctionModel(lambda request: "heard and seen")
    encoded = base64.b64encode(images[0]).decode()
    seed = _seed(tmp_path, link=["https://example.com/cat.png", None], inline=[encoded, ""],
                 clips=[["clip.wav", "clip.wav"], []])
    contexts = (MultiModalContext(column="link", format="url"), MultiModalContext(column="inline", format="base64"),
                MultiModalContext(column="clips", type="audio", base_dir=str(tmp_path)))
    with _function_mill(fm, tmp_path / "out") as mill:
        mill.create(_config(seed, *contexts), num_records=2)
    first, second = sorted(fm.calls, key=lambda r: isinstance(r.messages[-1]["content"], str))
    parts = _parts(first)
    assert parts[1] == {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    assert parts[2] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{encoded}"}}
    assert parts[3] == parts[4] == {"type": "input_audio",
                                    "input_audio": {"data": base64.b64encode(wav).decode(), "format": "wav"}}
    # Empty cells send nothing: the second row's message is plain text.
    assert second.messages[-1]["content"] == "Describe the picture."


def test_relative_paths_are_taken_from_the_working_directory(tmp_path: Path, images: list[bytes],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    fm = FunctionModel(lambda request: "ok")
    with _function_mill(fm, tmp_path / "out") as mill:
        mill.create(_config(_seed(tmp_path, photo=["images/img1.png"]), MultiModalContext(column="photo")),
                    num_records=1)
    url = _parts(fm.calls[0])[1]["image_url"]["url"]
    assert base64.b64decode(url.partition(",")[2]) == images[1]


def test_a_missing_file_fails_its_cell_only_and_is_never_asked(tmp_path: Path, images: list[bytes],
                                                                server: LLMTestServer) -> None:
    provider, model = provider_and_model(server.url)
    seed = _seed(tmp_path, photo=["img0.png", "nope.png", "img2.png", "notbase64"])
    contexts = [MultiModalContext(column="photo", base_dir=str(tmp_path / "images"))]
    with gm.Mill(tmp_path / "out", model_providers=[provider], model_configs=[model],
                 run_config=gm.RunConfig(show_progress=False, max_error_rate=1.0)) as mill:
        df = mill.create(_config(seed, *contexts), num_records=4).load_dataset()
    assert df["caption"].notna().tolist() == [True, False, True, False]
    missing = df["__errors"][1][0]
    assert missing["column"] == "caption" and missing["attempts"] == 0
    assert f"image file {str(tmp_path / 'images' / 'nope.png')!r} (column 'photo') does not exist" in missing["reason"]
    assert "base_dir" in missing["reason"]
    assert "does not exist" in df["__errors"][3][0]["reason"]
    assert server.stats()["requests"] == 2  # the failed cells cost nothing


def test_cache_hits_until_an_image_changes_and_traces_hold_no_base64(tmp_path: Path, images: list[bytes],
                                                                     server: LLMTestServer) -> None:
    provider, model = provider_and_model(server.url)
    folder = tmp_path / "images"
    seed = _seed(tmp_path, photo=[f"img{i}.png" for i in range(4)])
    cfg = _config(seed, MultiModalContext(column="photo", base_dir=str(folder)), with_trace="all_messages")
    with gm.Mill(tmp_path / "out", model_providers=[provider], model_configs=[model],
                 run_config=gm.RunConfig(show_progress=False)) as mill:
        first = mill.create(cfg, num_records=4, dataset_name="pics").load_dataset()
        assert server.stats()["completions"] == 4  # the server takes list content
        write_png(folder / "img2.png", (200, 0, 0))  # new bytes, same path
        # Image bytes are not in the fingerprint (like a seed's rows, they are data): a config change
        # makes the fresh run that asks again, seeded with the old run's response cache.
        changed = gm.ConfigBuilder.from_config(cfg).add_column(name="n", column_type="expression", expr="{{ photo }}")
        with pytest.warns(UserWarning, match="starting fresh"):
            mill.create(changed.build(), num_records=4, dataset_name="pics")
    assert server.stats()["completions"] == 5  # only the changed image was asked again
    trace = list(first["caption__trace"][0])
    assert trace[0]["role"] == "user"
    assert trace[0]["content"].startswith("Describe the picture.\n[image: image/png, ")
    assert "base64" not in trace[0]["content"]
