"""On-disk superpixel cache keyed by every setting that changes a map.

A cache lives in ``<cache_dir>/<method>_<k or scale>_<key>/`` where ``key`` hashes the canonical JSON
of the full spec (method, backend, all parameters with the engine defaults filled in, target shape,
channels, colour space, resize interpolation, body mask, format version). One ``<id>.spx`` file per
image holds one map in the binary format of :mod:`datasets.superpixels.cache_format` (header with
key and CRC32, zlib-compressed uint16/uint32 labels).
``manifest.json`` holds the spec and the ids written; it is rewritten atomically under a file lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import numpy as np
from skimage.transform import resize

from datasets.atomic_io import atomic_write_bytes, atomic_write_json
from datasets.superpixels.cache_format import (  # noqa: F401 - MAGIC, CorruptMapError re-exported
    FORMAT_VERSION,
    MAGIC,
    SUFFIX,
    CorruptMapError,
    decode_map,
    encode_map,
)
from datasets.superpixels.cache_report import VerifyReport
from datasets.superpixels.config import as_shape
from datasets.superpixels.engine import backend_map_version, resolve_params

logger = logging.getLogger(__name__)

__all__ = ["SuperpixelCache", "VerifyReport", "build_spec", "cache_key", "resize_for_superpixels"]

# Names the resize below; part of the key so a change of interpolation gives a new cache.
RESIZE_INTERPOLATION = "skimage.resize:order=1:anti_aliasing:reflect"


def resize_for_superpixels(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize an image to the shape its superpixels are computed at (linear, anti-aliased).

    The generator and the on-the-fly loader both call this, so cached and computed maps agree.

    Args:
        image: Float image in ``[0, 1]``.
        shape: Target ``(H, W)``.

    Returns:
        float32 image ``(H', W', C)``; the input itself (as float32) when it already has ``shape``.

    Shape:
        image: ``(H, W, C)``.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3:
        raise ValueError(f"image must have shape (H, W, C), got {image.shape}")
    if image.shape[:2] == tuple(shape):
        return image
    out = resize(
        image, (*shape, image.shape[2]), order=1, mode="reflect", anti_aliasing=True, preserve_range=True
    )
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def build_spec(
    method: str,
    backend: str,
    params: dict[str, Any],
    size: int | tuple[int, int],
    channels: int,
    body_mask: bool = False,
) -> dict[str, Any]:
    """Everything that changes a superpixel map, as a JSON-able dict (the input of the key).

    Args:
        method: ``slic`` or ``felzenszwalb``.
        backend: Engine backend.
        params: Algorithm parameters; the engine's defaults are filled in for the omitted ones.
        size: Target ``(H, W)`` or square side.
        channels: 1 (grey) or 3 (RGB).
        body_mask: Whether the map is restricted to a body mask.

    Returns:
        The spec dict.

    Raises:
        ValueError: If ``channels`` is not 1 or 3, or a parameter is unknown to the engine.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    resolved = resolve_params(method, backend, params)
    if resolved.get("colour_space") == "auto":
        # The engine decides by channel count; spell it out so "auto" and its meaning share a key.
        resolved["colour_space"] = "lab" if channels == 3 else "intensity"
    return {
        "format_version": FORMAT_VERSION,
        "method": method,
        "backend": backend,
        # Bumped by a backend whose maps changed (numba v2: 3x3-cell assignment, polynomial Lab), so an
        # existing cache of the old maps is never served for the new code.
        "backend_map_version": backend_map_version(method, backend),
        "params": resolved,
        "shape": list(as_shape(size)),
        "channels": channels,
        "colour_space": "rgb" if channels == 3 else "grey",
        "input": "float32 [0,1]",
        "interpolation": RESIZE_INTERPOLATION,
        "body_mask": bool(body_mask),
    }


def cache_key(spec: dict[str, Any]) -> str:
    """Hash a spec (a JSON-able dict) into a 16-hex-digit key; key order does not matter."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


class SuperpixelCache:
    """Superpixel maps of one exact spec, stored one file per image id.

    Args:
        cache_dir: Root folder of all caches (a spec gets its own sub-folder).
        method: ``slic`` or ``felzenszwalb``.
        backend: Engine backend that computes the maps.
        params: Algorithm parameters; engine defaults are filled in before hashing.
        size: Target ``(H, W)`` (or square side) the image is resized to before computing.
        channels: Channels of the image given to the engine (1 grey, 3 RGB).
        body_mask: Whether maps are restricted to a body mask.
    """

    def __init__(
        self,
        cache_dir: str | Path,
        method: str,
        backend: str,
        params: dict[str, Any],
        size: int | tuple[int, int],
        channels: int,
        body_mask: bool = False,
    ) -> None:
        self.spec = build_spec(method, backend, params, size, channels, body_mask)
        self.key = cache_key(self.spec)
        self.shape = tuple(self.spec["shape"])
        self.root = Path(cache_dir)
        self.folder = self.root / f"{method}_{_headline(self.spec)}_{self.key}"
        self.manifest_path = self.folder / "manifest.json"

    def __repr__(self) -> str:
        return f"SuperpixelCache({self.folder})"

    def path_for(self, image_id: str) -> Path:
        """File of ``image_id`` (ids are percent-encoded so any id is a safe file name)."""
        if not image_id:
            raise ValueError("image_id must be a non-empty string")
        return self.folder / (quote(image_id, safe="") + SUFFIX)

    def get(self, image_id: str) -> np.ndarray | None:
        """Return the int32 map of ``image_id``, or None if absent or invalid.

        An invalid file (truncated, bad CRC, other key) is logged as a warning naming the file and
        moved to ``quarantine/`` so a later generation run rewrites it; it is never returned.
        """
        path = self.path_for(image_id)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            labels = decode_map(blob, self.key)
            if labels.shape != self.shape:
                raise CorruptMapError(f"shape {labels.shape} differs from the cache's {self.shape}")
        except CorruptMapError as err:
            self._quarantine(path, str(err))
            return None
        return labels

    def segment_count(self, labels: np.ndarray) -> int:
        """Real superpixels in a map (label 0 outside a body mask is not one)."""
        values = np.unique(labels)
        return int(values.size - (self.spec["body_mask"] and values.size > 0 and values[0] == 0))

    def put(self, image_id: str, labels: np.ndarray, record: bool = True, count: int | None = None) -> int:
        """Store a map atomically (temp file + ``os.replace``).

        Args:
            image_id: Sample id.
            labels: Map of the cache's shape.
            record: Also add the id to the manifest now (workers pass False and let the parent
                call :meth:`record` in batches).
            count: Real segment count for the manifest; None counts the map's labels.

        Returns:
            Bytes written.

        Raises:
            ValueError: If the map's shape differs from the cache's or its values are invalid.
        """
        labels = np.asarray(labels)
        if labels.shape != self.shape:
            raise ValueError(
                f"map of '{image_id}' has shape {labels.shape}, cache {self.folder} wants {self.shape}"
            )
        blob = encode_map(labels, self.key)
        atomic_write_bytes(self.path_for(image_id), blob)
        if record:
            count = self.segment_count(labels) if count is None else count
            self.record([(image_id, int(count), len(blob))])
        return len(blob)

    def record(self, entries: Iterable[tuple[str, int, int]]) -> None:
        """Add ``(image_id, segment count, bytes)`` entries to the manifest (locked, atomic)."""
        entries = list(entries)
        if not entries:
            return
        with self._locked():
            manifest = self.read_manifest()
            for image_id, count, nbytes in entries:
                manifest["images"][image_id] = {"count": int(count), "bytes": int(nbytes)}
            atomic_write_json(self.manifest_path, manifest, indent=1, sort_keys=True)

    def read_manifest(self) -> dict[str, Any]:
        """Return the manifest, or an empty one for this spec if none was written yet.

        Raises:
            ValueError: If the manifest is not valid JSON or belongs to another key.
        """
        if not self.manifest_path.is_file():
            return {"format_version": FORMAT_VERSION, "key": self.key, "spec": self.spec, "images": {}}
        try:
            manifest = json.loads(self.manifest_path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"cache manifest {self.manifest_path} is not valid JSON: {err}") from err
        if manifest.get("key") != self.key:
            raise ValueError(
                f"cache manifest {self.manifest_path} has key {manifest.get('key')!r}, expected {self.key!r}"
            )
        return manifest

    def stored_ids(self) -> list[str]:
        """Ids that have a map file (valid or not), sorted; hidden files (temporary writes) are not maps."""
        if not self.folder.is_dir():
            return []
        files = (p for p in self.folder.glob(f"*{SUFFIX}") if not p.name.startswith("."))
        return sorted(unquote(p.name[: -len(SUFFIX)]) for p in files)

    def verify(self, image_ids: Iterable[str] | None = None) -> VerifyReport:
        """Check every file against the manifest (and ``image_ids``) without modifying anything.

        Args:
            image_ids: The ids of the images on disk; each needs a valid map (else ``absent``).
        """
        report = VerifyReport()
        listed = set(self.read_manifest()["images"])
        for image_id in sorted(listed | set(self.stored_ids())):
            path = self.path_for(image_id)
            if not path.is_file():
                report.missing.append(image_id)
                continue
            try:
                if decode_map(path.read_bytes(), self.key).shape != self.shape:
                    raise CorruptMapError("shape differs from the cache's")
            except CorruptMapError as err:
                logger.warning("corrupt superpixel map %s: %s", path, err)
                report.corrupt.append(image_id)
                continue
            (report.ok if image_id in listed else report.unlisted).append(image_id)
        valid = set(report.ok) | set(report.unlisted)
        report.absent = sorted(set(image_ids or ()) - valid)
        return report

    def _quarantine(self, path: Path, reason: str) -> None:
        target_dir = self.folder / "quarantine"
        target_dir.mkdir(exist_ok=True)
        logger.warning(
            "corrupt superpixel map %s (%s); moved to %s/ and treated as missing", path, reason, target_dir
        )
        # Another worker may have quarantined the same file a moment ago.
        with contextlib.suppress(FileNotFoundError):
            os.replace(path, target_dir / path.name)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # The manifest is read-modify-written by several processes (generator, DataLoader workers).
        # The lock is taken on the cache folder itself, so no lock file is left behind.
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock


def _headline(spec: dict[str, Any]) -> str:
    """The human-readable part of the folder name: SLIC's k or Felzenszwalb's scale."""
    name = {"slic": "n_segments", "felzenszwalb": "scale"}[spec["method"]]
    value = spec["params"].get(name)
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)
