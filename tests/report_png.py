"""Decode a PNG screenshot with the standard library (zlib) and numpy: enough to count pixels."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {2: 3, 6: 4}  # colour type -> bytes per pixel at bit depth 8 (RGB, RGBA)


def read_png(path: Path) -> np.ndarray:
    """The image as an (height, width, 3) uint8 RGB array (8-bit RGB or RGBA, not interlaced)."""
    data = path.read_bytes()
    assert data[:8] == SIGNATURE, f"{path} is not a PNG"
    pos, idat, header = 8, [], b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in CHANNELS and interlace == 0, f"unsupported PNG {depth=} {colour=} {interlace=}"
    bpp = CHANNELS[colour]
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8).reshape(height, width * bpp + 1)
    pixels = unfilter(raw[:, 1:], raw[:, 0], bpp)
    return pixels.reshape(height, width, bpp)[:, :, :3]


def unfilter(rows: np.ndarray, filters: np.ndarray, bpp: int) -> np.ndarray:
    """Undo PNG's per-row filters (RFC 2083 section 6): None, Sub, Up, Average, Paeth."""
    out = np.zeros_like(rows)
    previous = np.zeros(rows.shape[1], dtype=np.uint8)
    for y, kind in enumerate(filters):
        line = rows[y]
        if kind == 0:
            current = line.copy()
        elif kind == 1:  # Sub: a running sum per channel, modulo 256
            current = np.cumsum(line.reshape(-1, bpp).astype(np.int64), axis=0).astype(np.uint8).reshape(-1)
        elif kind == 2:
            current = line + previous
        else:
            current = _sequential(line, previous, bpp, paeth=kind == 4)
        out[y] = current
        previous = current
    return out


def _sequential(line: np.ndarray, up: np.ndarray, bpp: int, *, paeth: bool) -> np.ndarray:
    """Average and Paeth depend on the byte just decoded: one byte at a time."""
    src, above = line.tolist(), up.tolist()
    result = [0] * len(src)
    for i, value in enumerate(src):
        a = result[i - bpp] if i >= bpp else 0
        b = above[i]
        if paeth:
            c = above[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
        else:
            pred = (a + b) >> 1
        result[i] = (value + pred) & 0xFF
    return np.array(result, dtype=np.uint8)


def count_colour(pixels: np.ndarray, hex_colour: str, tolerance: int = 3) -> int:
    """Pixels within ``tolerance`` of ``#rrggbb`` on every channel."""
    target = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.int16)
    return int((np.abs(pixels.astype(np.int16) - target) <= tolerance).all(axis=2).sum())
