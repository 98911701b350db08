"""Loader throughput with superpixel maps: ``source: cache`` vs on-the-fly SLIC, in one process run.

Both loaders use the same DataLoader settings and read the same images; only the hook differs.
The cache is written first (timed too) into a temporary folder with the same backend as the
on-the-fly reference, so both deliver identical maps.

    python bench/superpixel_loader.py [--root datasets/sample] [--size 256] [--k 512] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.image_io import read_image  # noqa: E402
from datasets.records import SampleRecord  # noqa: E402
from datasets.superpixels.cache import SuperpixelCache  # noqa: E402
from datasets.superpixels.config import SuperpixelConfig  # noqa: E402
from datasets.superpixels.generation import GenerationJob, collect_images, run_generation  # noqa: E402
from datasets.superpixels.loader_hook import make_superpixel_hook  # noqa: E402


class ImagesWithMaps(Dataset):
    """Reads an image and asks the hook for its map (what the training Dataset does, minus augmentation)."""

    def __init__(self, items: list[tuple[str, Path]], hook, channels: int) -> None:
        self.records = [SampleRecord(id=i, image=p, mask=None) for i, p in items]
        self.hook = hook
        self.channels = channels

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        record = self.records[index]
        image = read_image(record.image, self.channels)
        return {"image": image, **self.hook(record, image)}


def _collate(batch: list[dict]) -> int:
    return len(batch)


def loader_rate(dataset: Dataset, workers: int, batch: int, epochs: int) -> float:
    """Images per second delivered by a DataLoader over ``epochs`` passes (first batch excluded)."""
    loader = DataLoader(dataset, batch_size=batch, num_workers=workers, collate_fn=_collate, shuffle=False)
    seen, start = 0, None
    for _ in range(epochs):
        for size in loader:
            if start is None:  # exclude worker start-up and the first batch
                start = time.perf_counter()
                continue
            seen += size
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--root",
        nargs="+",
        default=[f"datasets/sample/{name}" for name in ("nuclei", "abdomen_ct", "abdomen_mr")],
        help="dataset roots",
    )
    parser.add_argument("--layout", default="folder", help="layout of every root")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--k", type=int, default=512)
    parser.add_argument("--compactness", type=float, default=10.0)
    parser.add_argument(
        "--backend", default="skimage", help="backend of the on-the-fly reference and the cache"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--channels", type=int, default=3)
    args = parser.parse_args()

    items = [item for root in args.root for item in collect_images(root, args.layout)]
    if len({i for i, _ in items}) != len(items):
        raise SystemExit(f"image ids collide across the roots {args.root}")
    params = {"n_segments": args.k, "compactness": args.compactness}
    print(
        f"python {platform.python_version()} | torch {torch.__version__} | numpy {np.__version__} | "
        f"{platform.processor() or platform.machine()} | cpu_count {os.cpu_count()}"
    )
    print(
        f"{len(items)} images under {', '.join(args.root)}; SLIC k={args.k} compactness={args.compactness} "
        f"at {args.size}x{args.size}, backend {args.backend}; "
        f"DataLoader workers={args.workers} batch={args.batch}"
    )

    with tempfile.TemporaryDirectory() as tmp:
        cache = SuperpixelCache(tmp, "slic", args.backend, params, args.size, args.channels)
        job = GenerationJob(items, cache, params, workers=args.workers)
        summary = run_generation(job, progress=False)
        print(
            f"generation: {summary.written / summary.seconds:.1f} images/s with {args.workers} processes; "
            f"mean real segments {np.mean(summary.counts):.1f}; "
            f"mean bytes per map {np.mean(summary.nbytes):.0f} "
            f"(raw uint16 {2 * args.size * args.size})"
        )
        if summary.failed:
            raise SystemExit(f"{len(summary.failed)} images failed: {summary.failed[:3]}")
        rates = {}
        for source in ("cpu", "cache"):
            config = SuperpixelConfig(
                source=source, backend=args.backend, params=params, size=args.size, cache_dir=tmp
            )
            hook = make_superpixel_hook(config, args.root[0], args.size, args.channels)
            rates[source] = loader_rate(
                ImagesWithMaps(items, hook, args.channels), args.workers, args.batch, args.epochs
            )
            print(f"loader source={source:5s}: {rates[source]:8.1f} images/s")
    print(f"ratio cache / on-the-fly {args.backend}: {rates['cache'] / rates['cpu']:.1f}x")


if __name__ == "__main__":
    main()
