"""Atomic file writes: a temporary sibling file renamed into place, or nothing at all.

Every writer of results, caches, manifests and prepared data goes through these, so a crash or an
exception mid-write never leaves a half-written file under the final name, never replaces a good file
with a broken one, and never leaves the temporary file behind.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any


def _double_suffix(path: Path) -> str:
    # Keep ".nii.gz" whole so writers that pick a format from the name still see it.
    return ".nii.gz" if path.name.endswith(".nii.gz") else path.suffix


@contextlib.contextmanager
def atomic_path(path: str | Path, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block succeeds.

    The temporary file is hidden (``.<name>.<random>.tmp``) and, by default, does not end with
    ``path``'s suffix, so a file left behind by a killed process is never taken for a map, mask or image
    by a reader that lists a folder. It is created with the permissions of a plain ``open`` (``0o666``
    less the umask, unlike ``mkstemp``'s ``0o600``), so results stay readable by the group that shares
    them. On an exception the temporary file is removed and ``path`` is left as it was.

    Args:
        path: Final destination; its parent folder is created.
        keep_suffix: End the temporary name with ``path``'s suffix (``.nii.gz``, ``.png``, ...), for
            libraries that choose the format from the file name (nibabel, SimpleITK, matplotlib).

    Yields:
        The temporary path to write to.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = _double_suffix(path) if keep_suffix else ""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp{suffix}"
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            break
        except FileExistsError:
            continue
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically.

    Args:
        path: Destination.
        data: File content.

    Returns:
        ``path`` as a ``Path``.
    """
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (newlines written as given)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any, indent: int = 2, sort_keys: bool = False) -> Path:
    """Write ``obj`` as JSON atomically; a value JSON cannot hold raises before anything is written."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=sort_keys) + "\n")


def atomic_write_csv(path: str | Path, rows: Sequence[dict[str, Any]], fieldnames: Sequence[str]) -> Path:
    """Write dict rows as CSV with a header atomically.

    Raises:
        ValueError: When a row has a key that is not in ``fieldnames`` (nothing is written).
    """
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fieldnames))
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)
