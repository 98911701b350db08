"""Data pre-flight on a synthetic 1,000-image folder: first start, second (cached) start, plain loop.

Writes a seeded ``folder`` layout (``{train,val,test}/{images,masks}``, 800/100/100 RGB PNG pairs of
128x128 with 0/255 masks) into a temporary folder, then times in one process (min over repeats):

- the plain loop: ``read_image`` + ``read_mask`` of every sample once, one thread, nothing else;
- the first start: :func:`datasets.preflight.preflight_datamodule` with an empty cache (split listing,
  stat, the thread pool's checks, the cache write), with 1 thread and with the default threads;
- the second start: the same call again, answered from the cache.

Files are read from the page cache (they were just written), as on a second run of a real dataset.

    python bench/preflight.py [--count 1000] [--size 128] [--repeats 3] [--workers N]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.datamodule import SegmentationDataModule  # noqa: E402
from datasets.image_io import read_image, read_mask  # noqa: E402
from datasets.preflight import default_workers, preflight_datamodule  # noqa: E402

SPLITS = (("train", 0.8), ("val", 0.1), ("test", 0.1))


def write_folder(root: Path, count: int, size: int, seed: int = 0) -> None:
    """A seeded ``folder`` layout of ``count`` RGB image / binary mask pairs (smooth blobs + noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    start = 0
    for split, share in SPLITS:
        n = round(count * share)
        for i in range(start, start + n):
            (cy, cx), r = rng.uniform(0.3, 0.7, 2) * size, rng.uniform(0.1, 0.3) * size
            inside = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
            base = 80 + 100 * inside[..., None] + 30 * np.sin(xx / 9.0)[..., None] * rng.uniform(0.5, 1.5, 3)
            image = np.clip(base + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)
            for folder, array in (("images", image), ("masks", inside.astype(np.uint8) * 255)):
                path = root / split / folder / f"s{i:05d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(path)
        start += n


def plain_loop(data: SegmentationDataModule) -> None:
    """Read every sample once with the dataset's readers, one thread, no checks beyond theirs."""
    for records in data.resolve_splits().values():
        for record in records:
            read_image(record.image, data.in_channels)
            read_mask(record.mask, data.num_classes)


def best_time(fn: Callable[[], None], repeats: int, before: Callable[[], None] | None = None) -> float:
    """Minimum wall time of ``fn`` over ``repeats`` calls (``before`` runs untimed before each)."""
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    """Write the folder, time the three ways, print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=default_workers())
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        write_folder(root, args.count, args.size)
        data = SegmentationDataModule(str(root), num_classes=2, in_channels=3, num_workers=0)
        runs = iter(range(10**6))
        state = {"runs": Path(tmp) / "runs"}

        def fresh_cache() -> None:
            state["runs"] = Path(tmp) / f"runs{next(runs)}"

        def first(workers: int) -> Callable[[], None]:
            return lambda: preflight_datamodule(data, state["runs"], workers=workers, progress=False)

        plain = best_time(lambda: plain_loop(data), args.repeats)
        first_one = best_time(first(1), args.repeats, fresh_cache)
        first_many = best_time(first(args.workers), args.repeats, fresh_cache)
        second = best_time(first(args.workers), args.repeats)  # the last first start's cache
    rows = [
        ("plain loop (read every file once, 1 thread)", plain),
        ("pre-flight, first start, 1 thread", first_one),
        (f"pre-flight, first start, {args.workers} threads", first_many),
        (f"pre-flight, second start (cached), {args.workers} threads", second),
    ]
    machine = platform.processor() or platform.machine()
    size = f"{args.size}x{args.size}"
    print(f"{args.count} samples ({size} RGB PNG + mask), {machine}, min of {args.repeats} runs\n")
    print("| what | seconds | samples/s | time / plain loop |")
    print("|---|---|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.3f} | {args.count / seconds:,.0f} | {seconds / plain:.3f}x |")


if __name__ == "__main__":
    main()
