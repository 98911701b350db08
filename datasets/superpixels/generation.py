"""Precompute superpixel maps into the cache: the logic behind ``sp_generation.py``.

CPU backends run one image per task over a process pool; the ``torch`` backend runs batched on
``--device``. A run skips images whose cached map is already valid, so it can be resumed; a failing
image is reported with its path and the run exits non-zero after finishing the others.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from datasets.image_io import IMAGE_SUFFIXES, read_image
from datasets.records import SPLIT_NAMES
from datasets.superpixels.cache import SuperpixelCache, resize_for_superpixels
from datasets.superpixels.cache_report import print_verify
from datasets.superpixels.generation_options import (  # noqa: F401 - re-exported for callers
    GenerationOptions,
    data_settings,
    default_workers,
    load_config_files,
    resolve_options,
)
from datasets.superpixels.loader_hook import body_mask_of, compute_map

_RECORD_EVERY = 64  # manifest entries buffered before a (locked, atomic) manifest rewrite


@dataclass
class GenerationJob:
    """What to compute and where to store it.

    Attributes:
        items: ``(image id, image path)`` pairs.
        cache: Destination cache (its spec fixes method, backend, params, shape, channels).
        params: Algorithm parameters as given (the cache spec holds them with defaults filled in).
        workers: Processes for CPU backends (1 = in this process).
        device: Torch device for the ``torch`` backend.
        batch: Images per batch for the ``torch`` backend.
    """

    items: list[tuple[str, Path]]
    cache: SuperpixelCache
    params: dict[str, Any]
    workers: int = 1
    device: str = "cpu"
    batch: int = 64


@dataclass
class GenerationSummary:
    """Outcome of a run."""

    written: int = 0
    skipped: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    nbytes: list[int] = field(default_factory=list)
    seconds: float = 0.0

    def text(self, cache: SuperpixelCache) -> str:
        """Human-readable summary."""
        mean_count = f"{np.mean(self.counts):.1f}" if self.counts else "n/a"
        mean_bytes = f"{np.mean(self.nbytes):.0f}" if self.nbytes else "n/a"
        rate = self.written / self.seconds if self.seconds > 0 else 0.0
        lines = [
            f"cache: {cache.folder}",
            f"written {self.written}, skipped {self.skipped} (already valid), failed {len(self.failed)}",
            f"mean real segment count {mean_count}; mean bytes per image {mean_bytes}; "
            f"{rate:.1f} images/s over {self.seconds:.1f} s",
        ]
        lines += [f"FAILED {path}: {error}" for path, error in self.failed]
        return "\n".join(lines)


def collect_images(
    root: str | Path, layout: str | None = None, splits: Sequence[str] = SPLIT_NAMES
) -> list[tuple[str, Path]]:
    """List the images to process with the ids the training loader will ask for.

    Args:
        root: Dataset root.
        layout: Registered layout name; None lists every image under ``root`` recursively
            (hidden files and folders, e.g. the cache itself, are skipped) with its stem as id.
        splits: Splits of the layout to include.

    Returns:
        ``(id, path)`` pairs sorted by id.

    Raises:
        FileNotFoundError: If ``root`` is missing or holds no image.
        ValueError: If two different images share an id (their maps would overwrite each other), or the
            layout lists volumes.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image root not found: {root}")
    if layout is None:
        found = [
            (p.stem, p)
            for p in sorted(root.rglob("*"))
            if p.is_file()
            and p.suffix.lower() in IMAGE_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(root).parts)
        ]
    else:
        from datasets.layouts import find_samples
        from datasets.volume_layouts import is_volume_layout

        if is_volume_layout(layout):
            raise ValueError(
                f"sp_generation does not precompute the slices of volume layout '{layout}' yet; use "
                "superpixels.source: cpu (maps computed on each slice in the loader workers)"
            )
        found = [(r.id, r.image) for split in splits for r in find_samples(layout, root, split)]
    by_id: dict[str, Path] = {}
    for image_id, path in found:
        if image_id in by_id and by_id[image_id] != path:
            raise ValueError(f"two images share the id '{image_id}': {by_id[image_id]} and {path}")
        by_id[image_id] = path
    if not by_id:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {root}")
    return sorted(by_id.items())


# Per-process state of pool workers: set once by the initializer instead of pickled per task.
_WORKER: dict[str, Any] = {}


def _init_worker(cache: SuperpixelCache, params: dict[str, Any]) -> None:
    _WORKER["cache"], _WORKER["params"] = cache, params


def _process_one(item: tuple[str, Path]) -> tuple[str, Path, int, int, str | None]:
    """Compute and store one map; errors are returned (with the path) to be reported by the parent."""
    image_id, path = item
    cache: SuperpixelCache = _WORKER["cache"]
    spec = cache.spec
    try:
        image = read_image(path, spec["channels"])
        labels, count = compute_map(
            image, spec["method"], spec["backend"], _WORKER["params"], cache.shape, spec["body_mask"]
        )
        nbytes = cache.put(image_id, labels, record=False)
    except Exception as err:  # noqa: BLE001 - reported with the path by the parent; the run fails
        return image_id, path, 0, 0, f"{type(err).__name__}: {err}"
    return image_id, path, count, nbytes, None


def _load_one(item: tuple[str, Path]) -> tuple[str, Path, np.ndarray | None, np.ndarray | None, str | None]:
    """Read, resize and body-mask one image for the batched path."""
    image_id, path = item
    spec = _WORKER["cache"].spec
    try:
        image = resize_for_superpixels(read_image(path, spec["channels"]), _WORKER["cache"].shape)
        mask = body_mask_of(image) if spec["body_mask"] else None
    except Exception as err:  # noqa: BLE001 - reported with the path by the parent; the run fails
        return image_id, path, None, None, f"{type(err).__name__}: {err}"
    return image_id, path, image, mask, None


def _batched(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _compute_batch(loaded: list, job: GenerationJob) -> Iterator[tuple[str, Path, int, int, str | None]]:
    import torch

    from datasets.superpixels.engine import superpixels

    spec = job.cache.spec
    images = torch.from_numpy(np.stack([x[2] for x in loaded])).permute(0, 3, 1, 2).to(job.device)
    masks = None
    if spec["body_mask"]:
        masks = torch.from_numpy(np.stack([x[3] for x in loaded])).to(job.device)
    try:
        labels, counts = superpixels(
            images, method=spec["method"], backend=spec["backend"], mask=masks, **job.params
        )
        labels, counts = labels.cpu().numpy(), np.asarray(counts.cpu() if hasattr(counts, "cpu") else counts)
    except Exception as err:  # noqa: BLE001 - every image of the batch is reported as failed
        for image_id, path, *_ in loaded:
            yield image_id, path, 0, 0, f"batch failed: {type(err).__name__}: {err}"
        return
    for (image_id, path, *_), lab, count in zip(loaded, labels, counts, strict=True):
        yield image_id, path, int(count), job.cache.put(image_id, lab, record=False), None


def _results(
    todo: list[tuple[str, Path]], job: GenerationJob
) -> Iterator[tuple[str, Path, int, int, str | None]]:
    batched = job.cache.spec["backend"] == "torch"
    if job.workers <= 1:
        _init_worker(job.cache, job.params)
        if not batched:
            yield from map(_process_one, todo)
            return
        for chunk in _batched(todo, job.batch):
            yield from _finish_batch([_load_one(item) for item in chunk], job)
        return
    with Pool(job.workers, initializer=_init_worker, initargs=(job.cache, job.params)) as pool:
        if not batched:
            yield from pool.imap_unordered(_process_one, todo, chunksize=4)
            return
        # Workers read and resize; this process runs the batched engine on the device.
        _init_worker(job.cache, job.params)
        for chunk in _batched(todo, job.batch):
            yield from _finish_batch(pool.map(_load_one, chunk), job)


def _finish_batch(loaded: list, job: GenerationJob) -> Iterator[tuple[str, Path, int, int, str | None]]:
    good = [x for x in loaded if x[4] is None]
    for image_id, path, _, _, error in loaded:
        if error is not None:
            yield image_id, path, 0, 0, error
    if good:
        yield from _compute_batch(good, job)


def run_generation(job: GenerationJob, progress: bool = True) -> GenerationSummary:
    """Compute every missing or invalid map of ``job`` and record it in the manifest.

    Args:
        job: Images, destination cache and execution settings.
        progress: Show a tqdm bar (images/s) on stderr.

    Returns:
        The summary; ``failed`` lists ``(path, error)`` of images that could not be processed.
    """
    summary = GenerationSummary()
    start = time.perf_counter()
    listed = job.cache.read_manifest()["images"]
    todo, unlisted = [], []
    for image_id, path in job.items:
        labels = job.cache.get(image_id)  # validates; a corrupt file is quarantined and redone
        if labels is None:
            todo.append((image_id, path))
            continue
        summary.skipped += 1
        entry = listed.get(image_id)
        if entry is None:  # written by a run that stopped before recording it
            entry = {
                "count": job.cache.segment_count(labels),
                "bytes": job.cache.path_for(image_id).stat().st_size,
            }
            unlisted.append((image_id, entry["count"], entry["bytes"]))
        summary.counts.append(entry["count"])
        summary.nbytes.append(entry["bytes"])
    job.cache.record(unlisted)
    pending: list[tuple[str, int, int]] = []
    bar = tqdm(total=len(todo), unit="img", desc="superpixels", disable=not progress, file=sys.stderr)
    for image_id, path, count, nbytes, error in _results(todo, job):
        bar.update(1)
        if error is not None:
            summary.failed.append((path, error))
            tqdm.write(f"FAILED {path}: {error}", file=sys.stderr)
            continue
        summary.written += 1
        summary.counts.append(count)
        summary.nbytes.append(nbytes)
        pending.append((image_id, count, nbytes))
        if len(pending) >= _RECORD_EVERY:
            job.cache.record(pending)
            pending = []
    job.cache.record(pending)
    bar.close()
    summary.seconds = time.perf_counter() - start
    return summary


def main(args: Any) -> int:
    """Run (or verify) a generation from a parsed ``sp_generation.py`` namespace; returns the exit code."""
    opts = resolve_options(args)
    if opts.device != "cpu" and opts.backend != "torch":
        raise ValueError(f"--device {opts.device} needs --backend torch (CPU backend {opts.backend!r} given)")
    cache = SuperpixelCache(
        opts.cache_dir, opts.method, opts.backend, opts.params, opts.shape, opts.channels, opts.body_mask
    )
    items = collect_images(opts.root, opts.layout, opts.splits)
    if opts.verify:
        return print_verify(cache, dict(items))
    job = GenerationJob(items, cache, opts.params, opts.workers, opts.device, opts.batch)
    summary = run_generation(job)
    print(summary.text(cache))
    return 1 if summary.failed else 0
