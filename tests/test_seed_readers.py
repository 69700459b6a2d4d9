"""Seed readers users bring: directory contents, JSONL chat transcripts, Hugging Face datasets.

Every source is real data in ``tmp_path``: files and folders written here, ``save_to_disk``
folders written by the ``datasets`` library. ``hf://`` paths never touch the network: they run
in a subprocess with ``HF_HUB_OFFLINE=1`` and resolve to local data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import gristmill as gm
from gristmill.engine.dataset_plan import DatasetAction
from gristmill.engine.seed_readers_directory import glob_to_regex, read_directory
from gristmill.engine.seed_readers_hf import HfDatasetRef, parse_hf_url
from gristmill.engine.seeds import load_seed_table, seed_column_names, seed_digest
from gristmill.errors import ConfigError, SeedDatasetError


def seed(source: Any, reader: str | None = None, **options: Any) -> gm.SeedConfig:
    return gm.SeedConfig(source=str(source), reader=reader, reader_options=options)


def echo_config(source: Path | str, expr: str, *, reader: str | None = None, **options: Any) -> gm.DatasetConfig:
    return (gm.ConfigBuilder()
            .with_seed_dataset(str(source), reader=reader, reader_options=options)
            .add_column(name="echo", column_type="expression", expr=expr)
            .build())


def touch_later(path: Path) -> None:
    """Move a file's modification time an hour on, content untouched."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns + 3_600 * 10**9, stat.st_mtime_ns + 3_600 * 10**9))


# -- directory contents -----------------------------------------------------------------------------


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "b.py").write_text("print('b')\n")
    (root / "a.py").write_text("print('a')\n")
    (root / "pkg" / "core.py").write_text("x = 'é'\n", encoding="utf-8")
    (root / "pkg" / "sub" / "deep.py").write_text("deep = 1\n")
    (root / "pkg" / "notes.md").write_text("# notes\n")
    (root / ".git" / "config.py").write_text("hidden folder\n")
    (root / ".env.py").write_text("hidden file\n")
    return root


def test_directory_seed_gives_one_row_per_file_sorted_through_create(tree: Path, mill: gm.Mill) -> None:
    cfg = echo_config(tree, "{{ path }}:{{ size }}", reader="directory", glob="*.py")
    frame = mill.create(cfg, num_records=4, dataset_name="code").load_dataset()
    assert list(frame["path"]) == ["a.py", "b.py", "pkg/core.py", "pkg/sub/deep.py"]
    assert list(frame["content"]) == ["print('a')\n", "print('b')\n", "x = 'é'\n", "deep = 1\n"]
    assert list(frame["size"]) == [11, 11, 9, 9]  # bytes: 'é' is two
    assert list(frame["echo"]) == ["a.py:11", "b.py:11", "pkg/core.py:9", "pkg/sub/deep.py:9"]


@pytest.mark.parametrize(("options", "paths"), [
    ({}, ["a.py", "b.py", "pkg/core.py", "pkg/notes.md", "pkg/sub/deep.py"]),
    ({"glob": "pkg/*.py"}, ["pkg/core.py"]),
    ({"glob": "pkg/**/*.py"}, ["pkg/core.py", "pkg/sub/deep.py"]),
    ({"glob": ["*.md", "a.*"]}, ["a.py", "pkg/notes.md"]),
    ({"glob": "*.py", "exclude": "pkg/**"}, ["a.py", "b.py"]),
    ({"glob": "[ab].py"}, ["a.py", "b.py"]),
    ({"glob": "*.py", "include_hidden": True}, [".env.py", ".git/config.py", "a.py", "b.py", "pkg/core.py",
                                                "pkg/sub/deep.py"]),
])
def test_directory_glob_and_exclude_select_files(tree: Path, options: dict[str, Any], paths: list[str]) -> None:
    assert read_directory(tree, **options).column("path").to_pylist() == paths


def test_glob_patterns_keep_stars_within_one_folder() -> None:
    assert glob_to_regex("src/*.py").fullmatch("src/a.py")
    assert not glob_to_regex("src/*.py").fullmatch("src/x/a.py")
    assert glob_to_regex("src/**/*.py").fullmatch("src/a.py")
    assert glob_to_regex("src/**/*.py").fullmatch("src/x/y/a.py")
    assert not glob_to_regex("*.py").fullmatch("a.pyc")
    assert glob_to_regex("a?.txt").fullmatch("dir/ab.txt")
    assert not glob_to_regex("[!a]*.txt").fullmatch("a1.txt")


def test_a_binary_file_is_an_error_naming_it_unless_asked(tree: Path) -> None:
    (tree / "pkg" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (tree / "pkg" / "nul.txt").write_bytes(b"text\x00with a NUL")
    with pytest.raises(SeedDatasetError, match=r"seed file 'pkg/logo.png' in directory .* is not UTF-8 text.*"
                                               r"binary: skip"):
        load_seed_table(seed(tree, "directory"))
    skipped = read_directory(tree, glob="pkg/*", binary="skip")
    assert skipped.column("path").to_pylist() == ["pkg/core.py", "pkg/notes.md"]
    kept = read_directory(tree, glob="pkg/*", binary="bytes").to_pydict()
    assert kept["path"] == ["pkg/core.py", "pkg/logo.png", "pkg/notes.md", "pkg/nul.txt"]
    assert kept["content"] == ["x = 'é'\n", None, "# notes\n", None]
    assert kept["bytes"][1] == b"\x89PNG\r\n\x1a\n\x00\x00"
    assert kept["bytes"][0] == "x = 'é'\n".encode()


@pytest.mark.parametrize(("options", "words"), [
    ({"glob": "*.rs"}, "holds no files matching glob '*.rs'"),
    ({"binary": "maybe"}, "binary must be one of error, skip, bytes"),
    ({"glob": 3}, "glob must be a pattern or a list of patterns"),
    ({"pattern": "*.py"}, "seed reader 'directory' has no option 'pattern'; its options: glob, exclude, binary"),
])
def test_bad_directory_options_are_seed_errors(tree: Path, options: dict[str, Any], words: str) -> None:
    with pytest.raises(SeedDatasetError, match=words.replace("*", r"\*").replace("(", r"\(")):
        load_seed_table(seed(tree, "directory", **options))


def test_directory_reader_needs_a_folder(tree: Path) -> None:
    with pytest.raises(SeedDatasetError, match=r"directory seed reader reads a folder; .*a\.py' is not one"):
        load_seed_table(seed(tree / "a.py", "directory"))


def test_directory_digest_follows_names_and_contents_not_mtimes(tree: Path, tmp_path: Path) -> None:
    config = seed(tree, "directory", glob="*.py")
    before = seed_digest(config)
    for path in tree.rglob("*.py"):
        touch_later(path)
    assert seed_digest(config) == before
    moved = tmp_path / "moved"
    tree.rename(moved)
    assert seed_digest(seed(moved, "directory", glob="*.py")) == before
    (moved / "pkg" / "notes.md").write_text("not matched by the glob\n")
    assert seed_digest(seed(moved, "directory", glob="*.py")) == before
    (moved / "a.py").write_text("print('A')\n")
    edited = seed_digest(seed(moved, "directory", glob="*.py"))
    assert edited != before
    (moved / "a.py").rename(moved / "a2.py")  # same order, only the name differs
    assert seed_digest(seed(moved, "directory", glob="*.py")) not in (before, edited)


def test_a_touched_directory_seed_is_reused_an_edited_one_is_not(tree: Path, mill: gm.Mill) -> None:
    cfg = echo_config(tree, "{{ path }}", reader="directory", glob="*.py")
    mill.create(cfg, num_records=4, dataset_name="code")
    for path in tree.rglob("*.py"):
        touch_later(path)
    assert mill.plan_dataset(cfg, num_records=4, dataset_name="code").action is DatasetAction.REUSE
    (tree / "b.py").write_text("print('B')\n")
    decision = mill.plan_dataset(cfg, num_records=4, dataset_name="code")
    assert decision.action is not DatasetAction.REUSE
    assert "the seed dataset's content changed" in decision.reason


# -- chat transcripts -------------------------------------------------------------------------------

CONVERSATIONS = [
    {"id": 1, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                           {"role": "assistant", "content": "Hello!"}], "topic": "greeting"},
    {"id": 2, "messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]},
]


def write_jsonl(path: Path, records: list[Any], *, blank_line_after: int | None = None) -> Path:
    lines = [json.dumps(r) if not isinstance(r, str) else r for r in records]
    if blank_line_after is not None:
        lines.insert(blank_line_after, "   ")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_chat_transcripts_give_one_row_per_conversation_through_create(tmp_path: Path, mill: gm.Mill) -> None:
    source = write_jsonl(tmp_path / "chats.jsonl", CONVERSATIONS, blank_line_after=1)
    cfg = echo_config(source, "{{ messages[-1].content }} ({{ messages | length }} turns, {{ topic or '-' }})",
                      reader="chat")
    frame = mill.create(cfg, num_records=2, dataset_name="chats").load_dataset()
    assert list(frame["id"]) == [1, 2]
    assert list(frame["topic"])[0] == "greeting" and frame["topic"].isna().tolist() == [False, True]
    assert [list(m) for m in frame["messages"]] == [m["messages"] for m in CONVERSATIONS]
    assert list(frame["echo"]) == ["Hello! (3 turns, greeting)", "4 (2 turns, -)"]


def test_chat_messages_have_one_struct_type(tmp_path: Path) -> None:
    table = load_seed_table(seed(write_jsonl(tmp_path / "c.jsonl", CONVERSATIONS), "chat"))
    assert table.schema.field("messages").type == pa.list_(pa.struct([("role", pa.string()),
                                                                      ("content", pa.string())]))
    assert table.column_names == ["id", "messages", "topic"]


GOOD = json.dumps(CONVERSATIONS[0])


@pytest.mark.parametrize(("line", "words"), [
    ('{"messages": [', r"line 3: not valid JSON \(.* at column \d+\)"),
    ('[1, 2]', r"line 3: expected a JSON object with a 'messages' list, got list"),
    ('{"id": 3}', r"line 3: 'messages' must be a non-empty list"),
    ('{"messages": []}', r"line 3: 'messages' must be a non-empty list"),
    ('{"messages": [{"role": "bot", "content": "x"}]}',
     r"line 3: message 0 has role 'bot', not one of assistant, developer, system, tool, user"),
    ('{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": null}]}',
     r"line 3: message 1 \(assistant\) content must be a string, got NoneType"),
    ('{"messages": [{"role": "user", "content": "x", "name": "ann"}]}',
     r"line 3: message 0 has keys 'name' besides role and content; .*extra_message_keys: drop"),
    ('{"messages": ["hi"]}', r"line 3: message 0 must be an object with role and content, got str"),
])
def test_a_bad_transcript_line_is_reported_with_its_number(tmp_path: Path, line: str, words: str) -> None:
    source = write_jsonl(tmp_path / "bad.jsonl", [GOOD, GOOD, line, GOOD])
    with pytest.raises(SeedDatasetError, match=r"chat transcript '.*bad\.jsonl' " + words):
        load_seed_table(seed(source, "chat"))


def test_chat_options_allow_roles_drop_extra_keys_and_rename_the_field(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "c.jsonl", [
        {"conversations": [{"role": "human", "content": "hi", "ts": 1}, {"role": "gpt", "content": "yo"}]}])
    table = load_seed_table(seed(source, "chat", roles=["human", "gpt"], messages_field="conversations",
                                 extra_message_keys="drop"))
    assert table.to_pylist() == [{"conversations": [{"role": "human", "content": "hi"},
                                                    {"role": "gpt", "content": "yo"}]}]


def test_chat_fields_of_different_types_name_the_field(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "c.jsonl", [{**CONVERSATIONS[1], "score": 1},
                                                {**CONVERSATIONS[1], "score": {"a": 1}}])
    with pytest.raises(SeedDatasetError, match=r"field 'score' holds values of different types"):
        load_seed_table(seed(source, "chat"))


def test_a_glob_of_transcripts_is_read_file_by_file_in_order(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "b.jsonl", [CONVERSATIONS[1]])
    write_jsonl(tmp_path / "a.jsonl", [CONVERSATIONS[0]])
    config = seed(tmp_path / "*.jsonl", "chat")
    assert load_seed_table(config).column("id").to_pylist() == [1, 2]
    assert seed_column_names(config) == ["id", "messages", "topic"]


def test_chat_digest_follows_content_not_mtime(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "c.jsonl", CONVERSATIONS)
    before = seed_digest(seed(source, "chat"))
    touch_later(source)
    assert seed_digest(seed(source, "chat")) == before
    write_jsonl(source, [CONVERSATIONS[1], CONVERSATIONS[0]])
    assert seed_digest(seed(source, "chat")) != before


# -- how a source picks its reader ------------------------------------------------------------------


def test_an_unknown_reader_lists_the_registered_ones(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "c.jsonl", CONVERSATIONS)
    with pytest.raises(SeedDatasetError, match=r"no seed reader named 'chats'; registered readers: .*chat.*"
                                               r"directory.*hf.*parquet"):
        load_seed_table(seed(source, "chats"))


def test_a_named_reader_reads_any_suffix_and_a_reader_without_options_refuses_them(tmp_path: Path) -> None:
    (tmp_path / "rows.txt").write_text("a,b\n1,x\n2,y\n")
    assert load_seed_table(seed(tmp_path / "rows.txt", "csv")).to_pydict() == {"a": [1, 2], "b": ["x", "y"]}
    with pytest.raises(SeedDatasetError, match=r"seed reader 'csv' has no option 'delimiter'; its options: none"):
        load_seed_table(seed(tmp_path / "rows.txt", "csv", delimiter=";"))


def test_a_config_without_a_reader_keeps_its_fingerprint() -> None:
    cfg = (gm.ConfigBuilder().with_seed_dataset("seeds/rows.parquet", sampling_strategy="shuffle")
           .add_column(name="tag", column_type="expression", expr="{{ word }}").build())
    assert cfg.to_dict()["seed"] == {"source": "seeds/rows.parquet", "sampling_strategy": "shuffle",
                                     "selection_strategy": None}
    # the value before readers could be named: a stored dataset keeps resuming
    assert cfg.fingerprint() == "206e76b1a3625cbcf92ce23c45ceb90f272ba398fd7f3d9f60336a89984d430b"


def test_reader_and_options_round_trip_through_yaml_and_enter_the_fingerprint(tree: Path, tmp_path: Path) -> None:
    cfg = echo_config("repo", "{{ path }}", reader="directory", glob="*.py")
    (tmp_path / "cfg.yaml").write_text(cfg.to_yaml())
    loaded = gm.DatasetConfig.from_yaml(tmp_path / "cfg.yaml")
    assert loaded.seed is not None
    assert (loaded.seed.reader, loaded.seed.reader_options) == ("directory", {"glob": "*.py"})
    assert loaded.seed.source == str(tree)  # relative to the config file
    other = echo_config("repo", "{{ path }}", reader="directory", glob="*.md")
    assert other.fingerprint() != cfg.fingerprint()


def test_a_dataframe_seed_takes_no_reader() -> None:
    import pandas as pd

    with pytest.raises(ConfigError, match="reader and reader_options apply to a path seed"):
        gm.ConfigBuilder().with_seed_dataset(pd.DataFrame({"a": [1]}), reader="chat")


# -- Hugging Face datasets --------------------------------------------------------------------------

def save_dataset(path: Path, rows: dict[str, list[Any]], splits: dict[str, slice] | None = None) -> Path:
    """A folder written by ``datasets``' own ``save_to_disk`` (a DatasetDict when ``splits``)."""
    import datasets  # gristmill[hf], in the dev extra

    data = datasets.Dataset.from_dict(rows)
    if splits is None:
        data.save_to_disk(str(path))
    else:
        datasets.DatasetDict({name: data.select(range(len(data))[part]) for name, part in splits.items()}
                             ).save_to_disk(str(path))
    return path


ROWS: dict[str, list[Any]] = {"question": ["1+1?", "2+2?", "3+3?"], "answer": [2, 4, 6]}


def test_a_save_to_disk_folder_is_read_without_naming_the_reader(tmp_path: Path, mill: gm.Mill) -> None:
    source = save_dataset(tmp_path / "qa", ROWS)
    cfg = echo_config(source, "{{ question }} = {{ answer }}")
    frame = mill.create(cfg, num_records=4, dataset_name="qa").load_dataset()
    assert list(frame["echo"]) == ["1+1? = 2", "2+2? = 4", "3+3? = 6", "1+1? = 2"]


def test_a_dataset_dict_folder_needs_a_split(tmp_path: Path) -> None:
    source = save_dataset(tmp_path / "qa", ROWS, {"train": slice(0, 2), "test": slice(2, 3)})
    with pytest.raises(SeedDatasetError, match=r"has the splits train, test; choose one with the reader option split"):
        load_seed_table(seed(source))
    assert load_seed_table(seed(source, split="test")).to_pydict() == {"question": ["3+3?"], "answer": [6]}
    with pytest.raises(SeedDatasetError, match=r"has no split 'dev'; its splits: train, test"):
        load_seed_table(seed(source, split="dev"))
    one = save_dataset(tmp_path / "one", ROWS, {"train": slice(0, 3)})
    assert load_seed_table(seed(one)).num_rows == 3


def test_hf_folder_digest_follows_content_not_mtime(tmp_path: Path) -> None:
    source = save_dataset(tmp_path / "qa", ROWS)
    before = seed_digest(seed(source))
    for path in source.iterdir():
        touch_later(path)
    assert seed_digest(seed(source)) == before
    save_dataset(tmp_path / "qa2", {**ROWS, "answer": [2, 4, 7]})
    assert seed_digest(seed(tmp_path / "qa2")) != before
    save_dataset(tmp_path / "qa3", ROWS)
    assert seed_digest(seed(tmp_path / "qa3")) == before  # the same rows written again


def test_a_folder_that_is_not_a_saved_dataset_is_a_seed_error(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "x.txt").write_text("x")
    with pytest.raises(SeedDatasetError, match=r"cannot read Hugging Face dataset folder .*save_to_disk"):
        load_seed_table(seed(tmp_path / "plain", "hf"))


def test_without_the_datasets_package_the_error_names_the_extra(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    source = save_dataset(tmp_path / "qa", ROWS)
    monkeypatch.setitem(sys.modules, "datasets", None)  # what `import datasets` meets when it is not installed
    with pytest.raises(ConfigError, match=r"needs the `datasets` package: pip install 'gristmill\[hf\]'"):
        load_seed_table(seed(source))


@pytest.mark.parametrize(("url", "ref"), [
    ("hf://openai/gsm8k", HfDatasetRef("openai/gsm8k")),
    ("hf://openai/gsm8k/main", HfDatasetRef("openai/gsm8k", "main")),
    ("hf://openai/gsm8k/main@v1.0", HfDatasetRef("openai/gsm8k", "main", "v1.0")),
    ("hf://openai/gsm8k@refs/convert/parquet", HfDatasetRef("openai/gsm8k", None, "refs/convert/parquet")),
    ("hf://datasets/openai/gsm8k", HfDatasetRef("openai/gsm8k")),
])
def test_hf_paths_name_repository_config_and_revision(url: str, ref: HfDatasetRef) -> None:
    assert parse_hf_url(url) == ref


@pytest.mark.parametrize("url", ["hf://gsm8k", "hf://a/b/c/d", "hf://a//b", "hf://a/b@", "hf://"])
def test_a_malformed_hf_path_shows_the_form(url: str) -> None:
    with pytest.raises(SeedDatasetError, match=r"a Hugging Face seed path is hf://owner/name\[/config\]\[@revision\]"):
        load_seed_table(seed(url))


_OFFLINE_SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import gristmill as gm
    from gristmill.engine.seeds import load_seed_table, seed_digest
    from gristmill.errors import SeedDatasetError

    cache = str(Path.cwd() / "hf-cache")
    out = {}
    local = gm.SeedConfig(source="hf://owner/name", reader_options={"cache_dir": cache})
    out["rows"] = load_seed_table(local).to_pydict()
    out["digest"] = seed_digest(local) == seed_digest(local)
    sliced = gm.SeedConfig(source="hf://owner/name", reader_options={"split": "train[1:]", "cache_dir": cache})
    out["sliced"] = load_seed_table(sliced).to_pydict()
    try:
        load_seed_table(gm.SeedConfig(source="hf://nobody/missing@main", reader_options={"cache_dir": cache}))
    except SeedDatasetError as exc:
        out["error"] = str(exc)
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def offline_hf(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the offline script once: ``hf://owner/name`` resolves (as ``datasets.load_dataset``
    resolves any repository id) to the local folder ``owner/name`` of the working directory."""
    work = tmp_path_factory.mktemp("hf-offline")
    (work / "owner" / "name").mkdir(parents=True)
    write_jsonl(work / "owner" / "name" / "train.jsonl", [{"q": "a", "n": 1}, {"q": "b", "n": 2}])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(work / "hf-home")}
    done = subprocess.run([sys.executable, "-c", _OFFLINE_SCRIPT], cwd=work, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_an_hf_path_reads_local_data_offline(offline_hf: dict[str, Any]) -> None:
    assert offline_hf["rows"] == {"q": ["a", "b"], "n": [1, 2]}
    assert offline_hf["sliced"] == {"q": ["b"], "n": [2]}
    assert offline_hf["digest"] is True


def test_an_hf_path_missing_offline_says_why(offline_hf: dict[str, Any]) -> None:
    error = offline_hf["error"]
    assert error.startswith("cannot load Hugging Face dataset 'nobody/missing' at revision 'main'")
    assert "not in the local cache and the Hub cannot be reached (offline mode, HF_HUB_OFFLINE=1" in error


# -- docs/seeds.md -------------------------------------------------------------------------------------


def test_the_docs_python_examples_run_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    page = Path(__file__).resolve().parents[1] / "docs" / "seeds.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 2
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, str(page), "exec"), namespace)  # noqa: S102 - our own documentation
    assert (tmp_path / "artifacts" / "chats" / "metadata.json").exists()


def test_validate_refuses_an_unknown_reader_or_option_before_any_write(tree: Path, mill: gm.Mill) -> None:
    with pytest.raises(SeedDatasetError, match="no seed reader named 'dir'"):
        mill.validate(echo_config(tree, "{{ path }}", reader="dir"))
    with pytest.raises(SeedDatasetError, match="has no option 'globs'"):
        mill.create(echo_config(tree, "{{ path }}", reader="directory", globs="*.py"), num_records=1)
    assert not (mill.artifact_path / "dataset").exists()
