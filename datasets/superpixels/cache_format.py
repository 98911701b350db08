"""The ``.spx`` binary format of one cached superpixel map.

A file holds a 40-byte little-endian header (magic ``SPXM``, format version, label width in bytes,
16-character cache key, H, W, payload length, CRC32 of the payload) followed by the zlib-compressed
labels (uint16, or uint32 when a label exceeds 65535).
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

FORMAT_VERSION = 1
MAGIC = b"SPXM"
SUFFIX = ".spx"
_HEADER = struct.Struct("<4sBB2x16sIIII")
_DTYPES = {2: np.dtype("<u2"), 4: np.dtype("<u4")}
_ZLIB_LEVEL = 6


class CorruptMapError(ValueError):
    """A cached map file is truncated, damaged or written under another key."""


def encode_map(labels: np.ndarray, key: str) -> bytes:
    """Serialise a label map into the ``.spx`` byte format.

    Args:
        labels: Non-negative integer map.
        key: 16-character cache key stored in the header.

    Returns:
        Header followed by the compressed payload.

    Shape:
        labels: ``(H, W)``.

    Raises:
        ValueError: If labels are not a 2D non-negative integer array below 2**32.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 2D integer array, got shape {labels.shape} dtype {labels.dtype}")
    lo, hi = (int(labels.min()), int(labels.max())) if labels.size else (0, 0)
    if lo < 0 or hi >= 2**32:
        raise ValueError(f"labels must lie in [0, 2**32), got [{lo}, {hi}]")
    width = 2 if hi < 2**16 else 4
    payload = zlib.compress(labels.astype(_DTYPES[width]).tobytes(), _ZLIB_LEVEL)
    header = _HEADER.pack(
        MAGIC, FORMAT_VERSION, width, key.encode("ascii"), *labels.shape, len(payload), zlib.crc32(payload)
    )
    return header + payload


def decode_map(blob: bytes, key: str) -> np.ndarray:
    """Parse and validate ``.spx`` bytes written by :func:`encode_map`.

    Args:
        blob: File content.
        key: The key the file must have been written under.

    Returns:
        int32 label map ``(H, W)``.

    Raises:
        CorruptMapError: If the blob is truncated, its CRC or size is wrong, or its key differs.
    """
    if len(blob) < _HEADER.size:
        raise CorruptMapError(f"truncated header ({len(blob)} bytes < {_HEADER.size})")
    magic, version, width, stored_key, height, wide, length, crc = _HEADER.unpack_from(blob)
    if magic != MAGIC or version != FORMAT_VERSION or width not in _DTYPES:
        raise CorruptMapError(f"bad header (magic {magic!r}, version {version}, dtype width {width})")
    if stored_key.decode("ascii", errors="replace") != key:
        raise CorruptMapError(f"written under key {stored_key!r}, expected {key!r}")
    payload = blob[_HEADER.size :]
    if len(payload) != length:
        raise CorruptMapError(f"payload has {len(payload)} bytes, header says {length}")
    if zlib.crc32(payload) != crc:
        raise CorruptMapError("payload CRC32 mismatch")
    try:
        raw = zlib.decompress(payload)
    except zlib.error as err:
        raise CorruptMapError(f"payload does not decompress: {err}") from err
    if len(raw) != height * wide * width:
        raise CorruptMapError(f"payload holds {len(raw)} bytes, expected {height}x{wide}x{width}")
    return np.frombuffer(raw, dtype=_DTYPES[width]).reshape(height, wide).astype(np.int32)
