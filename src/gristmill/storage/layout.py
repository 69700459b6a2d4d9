"""Where things live inside a dataset directory (see DESIGN.md "On disk")."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CONFIG_FILE = "config.json"
METADATA_FILE = "metadata.json"
PARQUET_DIR = "parquet-files"
PROCESSORS_DIR = "processors-files"
DROPPED_DIR = "dropped-columns"
RESPONSE_CACHE_FILE = "response-cache.sqlite"
ANALYSIS_FILE = "analysis.json"
LOCK_FILE = ".gristmill.lock"


def batch_file_name(index: int) -> str:
    """``batch_00007.parquet`` for batch 7."""
    return f"batch_{index:05d}.parquet"


@dataclass(frozen=True)
class DatasetLayout:
    """Paths of one dataset directory."""

    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def metadata_path(self) -> Path:
        return self.root / METADATA_FILE

    @property
    def parquet_dir(self) -> Path:
        return self.root / PARQUET_DIR

    @property
    def processors_dir(self) -> Path:
        return self.root / PROCESSORS_DIR

    @property
    def dropped_dir(self) -> Path:
        return self.root / DROPPED_DIR

    @property
    def response_cache_path(self) -> Path:
        return self.root / RESPONSE_CACHE_FILE

    @property
    def lock_path(self) -> Path:
        return self.root / LOCK_FILE

    def batch_path(self, index: int) -> Path:
        return self.parquet_dir / batch_file_name(index)

    def processor_batch_path(self, processor: str, index: int) -> Path:
        return self.processors_dir / processor / batch_file_name(index)

    def dropped_batch_path(self, index: int) -> Path:
        return self.dropped_dir / batch_file_name(index)

    def is_empty(self) -> bool:
        """True when the directory is missing or holds nothing but a lock file."""
        if not self.root.exists():
            return True
        return all(p.name == LOCK_FILE or p.name.startswith(f"{LOCK_FILE}.") for p in self.root.iterdir())
