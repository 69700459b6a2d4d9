"""The ``hf`` seed reader: Hugging Face datasets, through the ``datasets`` library (``gristmill[hf]``).

Two kinds of source pick it without naming it:

- a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` (it holds
  ``state.json`` and ``dataset_info.json``, or ``dataset_dict.json``);
- ``hf://owner/name[/config][@revision]``, loaded with ``datasets.load_dataset``: fetched from the
  Hub the first time (the user's network and credentials: ``HF_TOKEN``), then from the ``datasets``
  cache, so ``HF_HUB_OFFLINE=1`` reads a cached copy without the network.

A dataset of several splits needs the ``split`` option; one split is taken as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from gristmill.errors import ConfigError, SeedDatasetError

SCHEME = "hf://"
_FORM = "hf://owner/name[/config][@revision], e.g. hf://openai/gsm8k/main or hf://openai/gsm8k@main"


@dataclass(frozen=True)
class HfDatasetRef:
    """What an ``hf://`` path names: a Hub dataset repository, a config of it, a revision."""

    repo_id: str
    config: str | None = None
    revision: str | None = None

    def __str__(self) -> str:
        config = f" (config {self.config!r})" if self.config else ""
        revision = f" at revision {self.revision!r}" if self.revision else ""
        return f"{self.repo_id!r}{config}{revision}"


def parse_hf_url(source: str) -> HfDatasetRef:
    """``hf://owner/name[/config][@revision]`` as its parts. A leading ``datasets/`` (the form
    ``huggingface_hub``'s file system uses: ``hf://datasets/owner/name``) is accepted and dropped."""
    if not source.startswith(SCHEME):
        raise SeedDatasetError(f"{source!r} is not a Hugging Face path; use {_FORM}")
    rest, at, revision = source[len(SCHEME):].partition("@")
    parts = rest.strip("/").split("/")
    if parts[0] == "datasets" and len(parts) >= 3:
        parts = parts[1:]
    if len(parts) not in (2, 3) or not all(parts) or (at and not revision):
        raise SeedDatasetError(f"cannot read seed {source!r}: a Hugging Face seed path is {_FORM}")
    return HfDatasetRef("/".join(parts[:2]), parts[2] if len(parts) == 3 else None, revision or None)


def read_hf(source: Path | str, *, split: str | None = None, cache_dir: str | None = None) -> pa.Table:
    """The rows of a Hugging Face dataset: a ``save_to_disk`` folder, or an ``hf://`` path.

    ``split`` picks one split of a dataset that has several (``"train"``; for ``hf://`` paths also
    slices such as ``"train[:100]"``). ``cache_dir`` is where ``hf://`` downloads are cached
    (default: the ``datasets`` cache, ``HF_DATASETS_CACHE``).
    """
    datasets = _import_datasets(source)
    if isinstance(source, str) and source.startswith(SCHEME):
        ref = parse_hf_url(source)
        loaded = _load_from_hub(datasets, ref, split, cache_dir)
        label = f"Hugging Face dataset {ref}"
        split = None  # load_dataset applied it (slices included)
    else:
        if cache_dir is not None:
            raise SeedDatasetError(f"the hf seed reader's cache_dir applies to hf:// paths, not to the folder "
                                   f"{str(source)!r}; remove it")
        loaded = _load_from_disk(datasets, Path(source))
        label = f"Hugging Face dataset folder {str(source)!r}"
    table = _one_split(datasets, loaded, split, label).with_format("arrow")[:]
    if not isinstance(table, pa.Table):
        raise SeedDatasetError(f"{label} did not give an Arrow table (got {type(table).__name__})")
    return table


def _import_datasets(source: Path | str) -> Any:
    try:
        import datasets
    except ImportError:
        raise ConfigError(f"seed {str(source)!r} is a Hugging Face dataset, and reading it needs the `datasets` "
                          "package: pip install 'gristmill[hf]'") from None
    return datasets


def _load_from_disk(datasets: Any, path: Path) -> Any:
    try:
        return datasets.load_from_disk(str(path))
    except (OSError, ValueError) as exc:
        raise SeedDatasetError(f"cannot read Hugging Face dataset folder {str(path)!r}: {exc}; it must be a folder "
                               "written by Dataset.save_to_disk or DatasetDict.save_to_disk") from None


def _load_from_hub(datasets: Any, ref: HfDatasetRef, split: str | None, cache_dir: str | None) -> Any:
    try:
        return datasets.load_dataset(ref.repo_id, ref.config, split=split, revision=ref.revision,
                                     cache_dir=str(Path(cache_dir).expanduser()) if cache_dir else None)
    except ConnectionError as exc:
        raise SeedDatasetError(f"cannot load Hugging Face dataset {ref}: {exc}. It is not in the local cache and "
                               "the Hub cannot be reached (offline mode, HF_HUB_OFFLINE=1, or no network): run once "
                               "with network access, or set the reader option cache_dir to a cache that holds "
                               "it") from None
    except FileNotFoundError as exc:  # datasets' DatasetNotFoundError among them
        raise SeedDatasetError(f"cannot load Hugging Face dataset {ref}: {exc}. Check the owner and name; for a "
                               "private or gated dataset, log in (`hf auth login`) or set HF_TOKEN") from None
    except _load_errors() as exc:
        raise SeedDatasetError(f"cannot load Hugging Face dataset {ref}: {type(exc).__name__}: {exc}") from None


def _load_errors() -> tuple[type[Exception], ...]:
    """What ``load_dataset`` raises for a dataset it cannot build (``DatasetsError`` from 2.15 on)."""
    import importlib

    try:
        base = getattr(importlib.import_module("datasets.exceptions"), "DatasetsError", None)
    except ImportError:
        base = None
    found: tuple[type[Exception], ...] = (base,) if isinstance(base, type) and issubclass(base, Exception) else ()
    return (OSError, ValueError, *found)


def _one_split(datasets: Any, loaded: Any, split: str | None, label: str) -> Any:
    """The Dataset to read: ``loaded`` itself, or its one (or chosen) split of a DatasetDict."""
    if not isinstance(loaded, datasets.DatasetDict):
        saved = getattr(loaded, "split", None)
        if split is not None and saved is not None and str(saved) != split:
            raise SeedDatasetError(f"{label} holds the split {str(saved)!r}, not {split!r}; remove the split option")
        return loaded
    splits = [str(name) for name in loaded]
    if split is None and len(splits) == 1:
        return loaded[splits[0]]
    if split is None:
        raise SeedDatasetError(f"{label} has the splits {', '.join(splits)}; choose one with the reader option "
                               f"split (reader_options: {{split: {splits[0]}}})")
    if split not in splits:
        raise SeedDatasetError(f"{label} has no split {split!r}; its splits: {', '.join(splits)}")
    return loaded[split]


__all__ = ["HfDatasetRef", "parse_hf_url", "read_hf"]
