"""The per-batch response-cache shards of the Ray executor (``llm/cache_shards.py``), without Ray:
what a run merges from the shards an interrupted one left, and which of them it warns about."""

from __future__ import annotations

import sqlite3
import warnings
from pathlib import Path

from gristmill.llm.cache import ResponseCache
from gristmill.llm.cache_shards import merge_leftover_shards, shard_path


def test_leftover_shards_are_merged_and_removed_and_only_a_damaged_one_warns(tmp_path: Path) -> None:
    with ResponseCache(shard_path(tmp_path, 0)) as shard:
        shard.put("answered", {"v": "kept"}, column="text")
    # A batch cancelled while it created its shard: a SQLite file with no table, so no answer.
    blank = sqlite3.connect(shard_path(tmp_path, 1))
    blank.execute("PRAGMA journal_mode=WAL")
    blank.close()
    shard_path(tmp_path, 2).write_bytes(b"not a database" * 300)
    with ResponseCache(tmp_path / "response-cache.sqlite") as cache, warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert merge_leftover_shards(cache, tmp_path) == 1
        assert cache.get("answered") == {"v": "kept"}
    assert [str(w.message).split(":")[0] for w in seen] == [f"not reusing answers from {shard_path(tmp_path, 2)}"]
    assert not list((tmp_path / "cache-shards").iterdir())
