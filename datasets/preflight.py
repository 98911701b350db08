"""Data pre-flight: every sample of every split is read once before training, failures listed together.

A mask of the wrong size, labels out of range or a truncated image would otherwise fail in epoch 0,
and a bad test mask only after the whole fit. :func:`check_records` reads each record with the
dataset's own readers (:func:`datasets.image_io.read_image` / :func:`~datasets.image_io.read_mask`),
so it accepts and refuses exactly what training would. It runs in a thread pool: PIL's decoders and
zlib release the GIL, the work per file is a few milliseconds, and threads need no pickling of records
and arrays and no second interpreter importing torch (a process pool costs more to start than a
thousand 128x128 checks take).

Records that passed are remembered in :class:`PreflightCache`, a JSON file keyed by each file's
(absolute path, size, mtime_ns) and by ``num_classes``/``in_channels``, so a second start reads nothing.
The cache lives under the runs folder (``<runs_dir>/.preflight/``), never in the dataset root, so a
read-only or shared dataset is never written to; when the runs folder cannot take it,
``$XDG_CACHE_HOME/spseg/preflight`` (default ``~/.cache``) is used and a log line says so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import lightning as L
from tqdm import tqdm

from datasets.atomic_io import atomic_write_json
from datasets.datamodule import SegmentationDataModule
from datasets.image_io import read_image, read_mask
from datasets.records import SampleRecord
from datasets.volume_layouts import volume_stem
from datasets.volume_slices import volume_case_problem

log = logging.getLogger(__name__)

CACHE_VERSION = 1
CACHE_FOLDER = ".preflight"
MAX_LISTED = 20


@dataclass(frozen=True)
class Failure:
    """One problem found in one sample.

    Attributes:
        record: The sample.
        path: The file at fault (the image or the mask).
        message: What is wrong and what was expected; names ``path``.
    """

    record: SampleRecord
    path: Path
    message: str

    def __str__(self) -> str:
        return self.message if str(self.path) in self.message else f"{self.path}: {self.message}"


def check_record(record: SampleRecord, num_classes: int, in_channels: int) -> list[Failure]:
    """Read one sample as the dataset does and return what is wrong with it.

    Args:
        record: Image (and mask) paths.
        num_classes: Mask values must lie in ``[0, num_classes)``.
        in_channels: Channels the image must give (1 or 3; grey and RGB convert into each other).

    Returns:
        The failures: at most one for the image and one for the mask (or their sizes); empty when
        the sample would load.
    """
    if volume_stem(record.image) is not None:
        return check_volume_record(record, num_classes)
    failures: list[Failure] = []
    image = mask = None
    try:
        image = read_image(record.image, in_channels)
    except (ValueError, OSError) as err:
        expected = f"a readable PNG/JPEG/BMP/TIFF image that gives {in_channels} channel(s)"
        failures.append(Failure(record, record.image, f"{err}; expected {expected}"))
    if record.mask is None:
        return failures
    if not record.mask.is_file():
        message = f"mask {record.mask} not found; expected the mask of image {record.image} there"
        return [*failures, Failure(record, record.mask, message)]
    try:
        mask = read_mask(record.mask, num_classes)
    except (ValueError, OSError) as err:
        failures.append(Failure(record, record.mask, str(err)))
    if image is not None and mask is not None and mask.shape != image.shape[:2]:
        message = (
            f"mask {record.mask} has size {tuple(mask.shape)} (HxW); expected its image's size "
            f"{tuple(image.shape[:2])} ({record.image})"
        )
        failures.append(Failure(record, record.mask, message))
    return failures


def check_volume_record(record: SampleRecord, num_classes: int) -> list[Failure]:
    """Read one volume case as the slice reader does (:func:`datasets.volume_slices.volume_case_problem`)."""
    problem = volume_case_problem(record, num_classes)
    return [] if problem is None else [Failure(record, *problem)]


def _file_key(path: Path | None) -> str | None:
    if path is None:
        return ""
    try:
        stat = os.stat(path)
    except OSError:
        return None  # a missing file is never a cache hit: it is checked (and reported)
    return f"{os.path.abspath(path)}\0{stat.st_size}\0{stat.st_mtime_ns}"


class PreflightCache:
    """The samples that passed, keyed by their files' (absolute path, size, mtime_ns) and the settings.

    Args:
        root: Dataset root (names the cache file, with ``num_classes`` and ``in_channels``).
        num_classes: Part of every key: a mask valid for 3 classes may not be for 2.
        in_channels: Part of every key.
        folders: Where the cache may live, in order of preference; it is read from the first that
            holds it and written to the first that takes it.
    """

    def __init__(self, root: str | Path, num_classes: int, in_channels: int, folders: Sequence[Path]) -> None:
        root_hash = hashlib.blake2b(os.path.abspath(root).encode(), digest_size=8).hexdigest()
        self.name = f"{Path(root).name or 'root'}-{root_hash}-c{num_classes}-ch{in_channels}.json"
        self.settings = f"{num_classes}\0{in_channels}\0{CACHE_VERSION}"
        self.folders = [Path(f) for f in folders]
        self.path: Path | None = None
        self._known = self._load()
        self._passed: set[str] = set()

    def _load(self) -> set[str]:
        for folder in self.folders:
            path = folder / self.name
            if not path.is_file():
                continue
            try:
                data = json.loads(path.read_text())
                if data.get("version") == CACHE_VERSION:
                    self.path = path
                    return set(data["passed"])
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
                # Only a cache: a broken file costs one full check, and is replaced on save.
                log.warning("pre-flight cache %s is unreadable (%s): checking every file again", path, err)
            return set()
        return set()

    def key(self, record: SampleRecord) -> str | None:
        """The record's cache key, or None when one of its files cannot be stat'ed."""
        image, mask = _file_key(record.image), _file_key(record.mask)
        if image is None or mask is None:
            return None
        return hashlib.blake2b(f"{image}\0{mask}\0{self.settings}".encode(), digest_size=16).hexdigest()

    def __contains__(self, key: str | None) -> bool:
        return key is not None and key in self._known

    def add(self, key: str | None) -> None:
        """Remember a key that passed in this check (the saved cache holds this check's keys only)."""
        if key is not None:
            self._passed.add(key)

    def save(self) -> Path | None:
        """Write this check's passed keys atomically; returns the file, or None if no folder took it.

        Nothing is written when they equal the loaded cache (a second start writes nothing).
        """
        if self.path is not None and self._passed == self._known:
            return self.path
        data = {"version": CACHE_VERSION, "passed": sorted(self._passed)}
        for index, folder in enumerate(self.folders):
            try:
                self.path = atomic_write_json(folder / self.name, data, indent=0)
            except OSError as err:
                later = f"; trying {self.folders[index + 1]}" if index + 1 < len(self.folders) else ""
                log.warning("pre-flight cache: cannot write into %s (%s)%s", folder, err, later)
                continue
            if index > 0:
                log.warning(
                    "pre-flight cache written to %s (%s was not writable)", self.path, self.folders[0]
                )
            return self.path
        log.warning("pre-flight cache not saved: no writable folder; the next start checks every file again")
        return None


def default_cache_folders(runs_dir: str | Path) -> list[Path]:
    """``<runs_dir>/.preflight``, then ``$XDG_CACHE_HOME/spseg/preflight`` (default ``~/.cache``)."""
    user_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return [Path(runs_dir) / CACHE_FOLDER, user_cache / "spseg" / "preflight"]


def default_workers() -> int:
    """Threads of the check: the machine's cores, at most 8 (past that the disk is the limit)."""
    return max(1, min(8, os.cpu_count() or 1))


def check_records(
    records: Iterable[SampleRecord],
    num_classes: int,
    in_channels: int,
    cache: PreflightCache | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> list[Failure]:
    """Check every distinct record once, in parallel; cached passes are not read again.

    Args:
        records: Samples to check (duplicates, e.g. oversampled or shared splits, are checked once).
        num_classes: Mask values must lie in ``[0, num_classes)``.
        in_channels: Channels the images must give.
        cache: Passed samples of earlier checks; updated and saved here. None: read everything.
        workers: Threads (default :func:`default_workers`).
        progress: Show a tqdm bar (images/s) on stderr while files are read.

    Returns:
        Every failure, ordered by file path.
    """
    unique = list(dict.fromkeys(records))
    keys = {record: cache.key(record) if cache is not None else None for record in unique}
    todo = [record for record in unique if cache is None or keys[record] not in cache]
    if cache is not None:
        for record in unique:
            if keys[record] in cache:
                cache.add(keys[record])
    failures: list[Failure] = []
    if todo:
        with (
            ThreadPoolExecutor(max_workers=workers or default_workers()) as pool,
            tqdm(
                total=len(todo), unit="img", desc="data pre-flight", disable=not progress, file=sys.stderr
            ) as bar,
        ):
            futures = {pool.submit(check_record, r, num_classes, in_channels): r for r in todo}
            for future in as_completed(futures):
                found = future.result()
                failures.extend(found)
                if not found and cache is not None:
                    cache.add(keys[futures[future]])
                bar.update()
    if cache is not None:
        cache.save()
    return sorted(failures, key=lambda f: (str(f.path), f.message))


def failures_error(
    failures: Sequence[Failure], total: int, where: str, labels: dict[SampleRecord, str]
) -> ValueError:
    """One error listing the failures (the first :data:`MAX_LISTED`, then how many more).

    Args:
        failures: Every failure found.
        total: How many samples were checked.
        where: The dataset, for the first line.
        labels: Split name of each record, shown before its line.
    """
    bad = len({f.record for f in failures})
    lines = [
        f"data pre-flight: {len(failures)} problem(s) in {bad} of {total} samples of {where}; nothing was "
        "trained (fix the files, or start anyway with --skip_checks):"
    ]
    lines += [f"  [{labels.get(f.record, '?')}] {f}" for f in failures[:MAX_LISTED]]
    if len(failures) > MAX_LISTED:
        lines.append(f"  ... and {len(failures) - MAX_LISTED} more")
    return ValueError("\n".join(lines))


def preflight_datamodule(
    datamodule: L.LightningDataModule,
    runs_dir: str | Path,
    skip: bool = False,
    workers: int | None = None,
    progress: bool = True,
) -> None:
    """Check every split of a :class:`~datasets.datamodule.SegmentationDataModule` before any training.

    Other datamodules (few-shot volumes) are not checked: they read their data in ``setup``.

    Args:
        datamodule: The run's datamodule; its splits are resolved (no image is read for that).
        runs_dir: Runs folder; the cache goes to ``<runs_dir>/.preflight/`` (see the module docstring).
        skip: ``--skip_checks``: check nothing.
        workers: Threads (default :func:`default_workers`).
        progress: Show the progress bar.

    Raises:
        ValueError: Listing every failing file with what was expected.
    """
    if not isinstance(datamodule, SegmentationDataModule):
        return
    if skip:
        log.warning("data pre-flight skipped (--skip_checks): a bad file fails when a loader reaches it")
        return
    splits = datamodule.splits or datamodule.resolve_splits()
    if datamodule.is_volume:  # one check per volume case, not per slice
        splits = datamodule.cases
    labels: dict[SampleRecord, str] = {}
    for name, records in splits.items():
        for record in records:
            labels.setdefault(record, name)
    cache = PreflightCache(
        datamodule.root, datamodule.num_classes, datamodule.in_channels, default_cache_folders(runs_dir)
    )
    start = time.perf_counter()
    failures = check_records(labels, datamodule.num_classes, datamodule.in_channels, cache, workers, progress)
    log.info(
        "data pre-flight: %d samples in %.2f s (cache %s)",
        len(labels),
        time.perf_counter() - start,
        cache.path,
    )
    if failures:
        raise failures_error(
            failures, len(labels), f"{datamodule.root} (layout '{datamodule.layout}')", labels
        )
