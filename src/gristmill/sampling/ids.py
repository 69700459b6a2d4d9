"""Random hex identifiers from a seeded stream (never ``uuid.uuid4``, so runs are reproducible).

Shared by the ``uuid`` sampler and the ``uuid`` field of person records: one ``rng.bytes`` call
and a few numpy gathers per batch, no Python per row.
"""

from __future__ import annotations

import numpy as np

_HEX_LOWER = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_HEX_UPPER = np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)


def hex_ids(rng: np.random.Generator, n: int, *, short_form: bool = False, uppercase: bool = False) -> np.ndarray:
    """``n`` ids as an ``object`` array of ``str``: UUID4 layout, or 12 hex digits with ``short_form``."""
    num_bytes = 6 if short_form else 16
    raw = np.frombuffer(rng.bytes(n * num_bytes), dtype=np.uint8).reshape(n, num_bytes).copy()
    if not short_form:
        raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
        raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    digits = _HEX_UPPER if uppercase else _HEX_LOWER
    hexed = np.empty((n, num_bytes * 2), dtype=np.uint8)
    hexed[:, 0::2] = digits[raw >> 4]
    hexed[:, 1::2] = digits[raw & 0x0F]
    if not short_form:
        hexed = np.insert(hexed, [8, 12, 16, 20], ord("-"), axis=1)
    width = hexed.shape[1]
    return np.ascontiguousarray(hexed).view(f"S{width}").ravel().astype(f"U{width}").astype(object)
