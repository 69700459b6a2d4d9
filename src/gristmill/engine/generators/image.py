"""The generator of ``image`` columns: one request per active row, all rows of a batch in flight at
once (bounded by the model's shared throttle); each image written as a file, the column holding
its path.

Files: ``images/<column>/<row>.<suffix>`` under the dataset directory, ``<row>`` the dataset-wide
row index (8 digits), the suffix from the image's own signature (png, jpg, gif, webp). The cell
holds that path relative to the dataset directory, with ``/`` separators, so a dataset directory
can be moved. Each file is written atomically (temp file, fsync, rename): a reader sees no file
or a whole image. A row has one file name, so a batch rebuilt after a crash, or a failed cell
retried, writes the same name again; no committed cell ever names a file that is rewritten with
other bytes (a committed cell is never regenerated, and a rebuilt row's image comes from the cache,
so it is the same bytes). In a preview (no dataset directory) the files go to a directory of that
preview's own inside the preview's private temporary directory, and the cell holds their absolute
path.

Cache: each image's bytes (base64) are cached under the model identity, the request body, the
column and the dataset-wide row (one image per row, as LLM answers are: the same prompt in two
rows is two images). They are stored before the request's throttle slot is handed on, so a crash
re-pays at most the requests in flight; a rerun, a resume or a larger ``num_records`` pays only for
rows the cache does not hold, and a fresh start after a config change gets unchanged rows' images
from the old cache (the bytes, not a path into the old directory).

A cell fails (null, listed in ``__errors``) when its prompt renders empty (nothing is sent), when
the endpoint refuses the prompt (a 4xx such as a content-policy refusal), when the request fails
for good after the runtime's retries, or when the answer is not a PNG, JPEG, GIF or WebP image.
Failures count towards ``max_error_rate``; 401/403 and an unreachable endpoint stop the run.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from gristmill.config.image import ImageColumn
from gristmill.engine.generators.base import (
    BatchFrame,
    ColumnValues,
    EngineContext,
    ModelColumnGenerator,
    gather_or_cancel,
)
from gristmill.engine.sandbox import TemplateLimits
from gristmill.errors import GenerationError, ModelAuthError, ModelError, ModelUnreachableError
from gristmill.llm.cache import ResponseCache
from gristmill.llm.images import generate_image, image_body, image_format, image_handle
from gristmill.storage.atomic import write_bytes_atomic

logger = logging.getLogger("gristmill")

IMAGES_DIR = "images"
_CACHE_CHUNK = 16  # cached images read per query: bounds the memory a rebuilt batch holds at once


def image_relative_path(column: str, row: int, suffix: str) -> str:
    """Where the image of dataset row ``row`` of ``column`` lives, relative to the dataset directory.

    >>> image_relative_path("cover", 12, "png")
    'images/cover/00000012.png'
    """
    return f"{IMAGES_DIR}/{column}/{row:08d}.{suffix}"


@dataclass
class _Failures:
    """The failed cells of one batch: logged once when the batch ends."""

    count: int = 0
    first: str = ""


class ImageGenerator(ModelColumnGenerator):
    """Generates one image column for each batch it is given."""

    generation_type = "image"

    def __init__(self, column: ImageColumn, context: EngineContext) -> None:
        super().__init__(column, context)
        self.column = column
        self.handle = image_handle(self.handle)
        self.limits = TemplateLimits.from_run_config(context.run_config)
        self.dataset_dir = context.dataset_dir
        self.preview_cache_dir = context.response_cache.path.parent if context.response_cache is not None else None
        self._preview_dir: Path | None = None

    async def generate(self, frame: BatchFrame) -> dict[str, ColumnValues]:
        rows = frame.active_rows()
        self.progress.cells_done(frame.num_rows - len(rows))
        bodies = self._bodies(frame, rows)
        for i in rows:
            if i not in bodies:
                frame.fail(i, "the prompt rendered empty; nothing to draw", 0)
                self.progress.cells_done(1)
        keys = self._keys(frame, bodies)
        values: list[str | None] = [None] * frame.num_rows
        missing = await self._from_cache(frame, keys, values) if self.cache is not None else list(bodies)
        failures = _Failures()
        tasks = [asyncio.ensure_future(self._cell(frame, i, bodies[i], keys[i], failures)) for i in missing]
        try:
            for i, path in zip(missing, await gather_or_cancel(tasks), strict=True):
                values[i] = path
        finally:
            if failures.count:
                logger.warning("gristmill: %d of %d images of column %r (batch %d, model %r) failed; first error: "
                               "%s", failures.count, len(missing), self.column.name, frame.batch_index,
                               self.handle.alias, " ".join(failures.first.split()))
        if missing and self.errors.tripped():
            raise self._stop_error()
        return {self.column.name: pa.array(values, type=pa.string())}

    def request_keys(self, frame: BatchFrame, rows: list[int]) -> dict[int, str]:
        """The cache key of each of ``rows`` that sends a request (an empty prompt sends none):
        what the bill looks up."""
        return self._keys(frame, self._bodies(frame, rows))

    def _keys(self, frame: BatchFrame, bodies: dict[int, dict[str, Any]]) -> dict[int, str]:
        return {i: ResponseCache.key(identity=self.handle.identity, body=body, column=self.cache_column,
                                     row=frame.row_offset + i) for i, body in bodies.items()}

    def _bodies(self, frame: BatchFrame, rows: list[int]) -> dict[int, dict[str, Any]]:
        """The request body of each of ``rows`` whose prompt does not render empty."""
        try:
            prompts = frame.render(self.column.prompt, rows, self.limits)
        except GenerationError as exc:  # a template over its time or size limit: name the column
            raise GenerationError(f"column {self.column.name!r} prompt: {exc}") from None
        model, col = self.handle.resolved, self.column
        bodies: dict[int, dict[str, Any]] = {}
        for i, prompt in zip(rows, prompts, strict=True):
            if not prompt.strip():
                continue
            bodies[i] = image_body(model.model.model, prompt, size=col.size, quality=col.quality,
                                   response_format=col.response_format, params=col.extra_params,
                                   extra_body=model.provider.extra_body)
        return bodies

    async def _from_cache(self, frame: BatchFrame, keys: dict[int, str], values: list[str | None]) -> list[int]:
        """Write the images the cache holds to their files; returns the rows still to request."""
        assert self.cache is not None
        missing: list[int] = []
        rows = list(keys)
        for start in range(0, len(rows), _CACHE_CHUNK):
            chunk = rows[start:start + _CACHE_CHUNK]
            cached = self.cache.get_many([keys[i] for i in chunk])
            for i in chunk:
                data = _cached_image(cached.get(keys[i]))
                if data is None:
                    missing.append(i)
                    continue
                values[i] = await self._write(frame, i, data)
                self.usage["cache_hits"] += 1
                self.errors.record(True)  # a rerun's few failures are not a broken endpoint
                self.progress.cells_done(1)
        return missing

    async def _cell(self, frame: BatchFrame, row: int, body: dict[str, Any], key: str,
                    failures: _Failures) -> str | None:
        self.progress.waiting(self.handle.throttle, 1)
        try:
            answer = await generate_image(self.handle, body, usage=self.usage)
            suffix = image_format(answer.data)
            if suffix is None:
                raise ModelError(f"model {self.handle.alias!r} answered {len(answer.data)} bytes that are not a "
                                 f"PNG, JPEG, GIF or WebP image (they start {answer.data[:8]!r})")
        except (ModelAuthError, ModelUnreachableError):  # the whole run stops, not one cell
            raise
        except ModelError as exc:
            self.usage["failures"] += 1
            failures.count += 1
            failures.first = failures.first or str(exc)
            frame.fail(row, " ".join(str(exc).split()), 1)
            self.progress.cells_done(1)
            if self.errors.record(False, str(exc)):
                raise self._stop_error() from exc
            return None
        finally:
            self.progress.waiting(self.handle.throttle, -1)
        # No await before the image is in the cache: the request that takes the freed throttle
        # slot starts only after this, so a crash loses at most the images still in flight.
        if self.cache is not None:
            self.cache.put(key, {"b64": base64.b64encode(answer.data).decode("ascii")}, column=self.cache_column)
        self.errors.record(True)
        self.usage["images"] += 1
        path = await self._write(frame, row, answer.data)
        self.progress.cells_done(1)
        return path

    async def _write(self, frame: BatchFrame, row: int, data: bytes) -> str:
        """Write the image of batch row ``row``, atomically, off the event loop; returns the cell's value.
        The file may exist already (a batch rebuilt after a crash, a retried cell): it is replaced
        whole, with the same bytes when they came from the cache."""
        suffix = image_format(data) or "bin"
        relative = image_relative_path(self.column.name, frame.row_offset + row, suffix)
        root = self.dataset_dir if self.dataset_dir is not None else self._preview_root()
        path = root / relative
        await asyncio.to_thread(write_bytes_atomic, path, data)
        return relative if self.dataset_dir is not None else str(path)

    def _preview_root(self) -> Path:
        """Where a preview's images go: a directory of this preview's own (so an earlier preview's
        paths keep showing its images) inside the preview's private cache directory, removed with it
        when the Mill closes; with caching off, in the system's temporary directory."""
        if self._preview_dir is None:
            self._preview_dir = Path(tempfile.mkdtemp(prefix="gristmill-preview-images-", dir=self.preview_cache_dir))
        return self._preview_dir

    def _stop_error(self) -> ModelError:
        previewing = self.dataset_dir is None
        return ModelError(
            f"stopping: {self.errors.failures} of the last {len(self.errors.outcomes)} images of column "
            f"{self.column.name!r} failed on model {self.handle.alias!r}; last error: {self.errors.last_error}. "
            + ("Nothing was written; fix the endpoint and preview again." if previewing else
               "Completed batches are kept; fix the endpoint and resume."))


def _cached_image(stored: Any) -> bytes | None:
    """The image bytes of a cache entry, or None for an entry that holds no usable image."""
    if not isinstance(stored, dict) or not isinstance(stored.get("b64"), str):
        return None
    try:
        data = base64.b64decode(stored["b64"], validate=True)
    except (ValueError, binascii.Error):
        return None
    return data if image_format(data) is not None else None
