"""MIM (superpixel inpainting) throughput: time waiting for data vs in the training step.

CPU (default): one epoch of the embedded CT sample with superpixels read from a cache (generated
first, into a temporary folder) and computed in the loader workers (``source: cpu``); prints the
data-wait fraction of each.

    python bench/mim_throughput.py [--epochs 2 --workers 2 --size 128]

GPU: training-step images/s on synthetic RGB batches with superpixels computed on the device
(torch SLIC) — the loader is excluded, so compare with the CPU loader's images/s above.

    python bench/mim_throughput.py --device cuda --precision bf16-mixed --size 512 --batch 10
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

# numba's default OpenMP layer hangs in loader workers forked after torch used OpenMP in this process.
os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from datasets.datamodule import SegmentationDataModule  # noqa: E402
from datasets.superpixels.cache import SuperpixelCache  # noqa: E402
from datasets.superpixels.config import SuperpixelConfig  # noqa: E402
from datasets.superpixels.generation import GenerationJob, collect_images, run_generation  # noqa: E402
from pretext.inpainting import SuperpixelInpainting  # noqa: E402

ROOT = Path(__file__).resolve().parents[1] / "datasets" / "sample" / "abdomen_ct"
PARAMS = {"n_segments": 128, "compactness": 0.1}


def transforms(size: int) -> list[dict]:
    return [
        {"name": "RandomResizedCrop", "size": [size, size], "scale": [0.36, 1.0], "ratio": [1.0, 1.0]},
        {"name": "HorizontalFlip", "p": 0.5},
        {"name": "VerticalFlip", "p": 0.5},
        {"name": "Rotate", "limit": 15, "p": 1.0},
    ]


def fill_cache(cache_dir: Path, size: int) -> float:
    cache = SuperpixelCache(cache_dir, "slic", "numba", PARAMS, (size, size), 1, False)
    start = time.perf_counter()
    summary = run_generation(
        GenerationJob(collect_images(ROOT, "folder"), cache, PARAMS, workers=1), progress=False
    )
    if summary.failed:
        raise RuntimeError(summary.text(cache))
    return time.perf_counter() - start


def time_epochs(source: str, args: argparse.Namespace, cache_dir: Path) -> dict[str, float]:
    config = SuperpixelConfig(source=source, backend="numba", params=PARAMS, cache_dir=str(cache_dir))
    data = SegmentationDataModule(
        str(ROOT),
        "folder",
        num_classes=5,
        in_channels=1,
        image_size=args.size,
        batch_size=args.batch,
        num_workers=args.workers,
        train_transforms=transforms(args.size),
        superpixels=config,
        persistent_workers=True,
    )
    data.setup("fit")
    model = SuperpixelInpainting(in_channels=1, encoder_name="resnet18", n_masked=32, on_excess="clamp")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = data.train_dataloader()
    wait = step = 0.0
    images = 0
    for epoch in range(args.epochs + 1):  # epoch 0 warms up workers and numba; not timed
        loader.sampler.set_epoch(epoch)
        it = iter(loader)
        while True:
            t0 = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                break
            t1 = time.perf_counter()
            loss, _ = model._step(batch, "train")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            t2 = time.perf_counter()
            if epoch:
                wait, step, images = wait + t1 - t0, step + t2 - t1, images + batch["image"].shape[0]
    return {"wait_s": wait, "step_s": step, "images": images}


def gpu_step_rate(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    model = SuperpixelInpainting(
        in_channels=3,
        encoder_name=args.encoder,
        n_masked=args.n_masked,
        superpixel_source="gpu",
        superpixel_params={"n_segments": args.k, "compactness": 10.0},
        on_excess="clamp",
    ).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(args.precision)
    g = torch.Generator(device=device).manual_seed(0)
    coarse = torch.rand(args.batch, 3, 16, 16, generator=g, device=device)
    image = torch.nn.functional.interpolate(coarse, size=args.size, mode="bilinear") * 2 - 1
    batch = {"image": image, "index": torch.arange(args.batch)}
    timings = []
    for i in range(args.steps + 3):
        torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss, _ = model._step(batch, "train")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        torch.cuda.synchronize(device)
        if i >= 3:
            timings.append(time.perf_counter() - t0)
    per_step = sum(timings) / len(timings)
    print(
        f"{torch.cuda.get_device_name(device)} {args.encoder} {args.size}px "
        f"batch {args.batch} {args.precision}: "
        f"{per_step * 1000:.1f} ms/step, {args.batch / per_step:.1f} images/s (superpixels on device incl.)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed", "16-mixed"])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20, help="GPU: timed steps")
    parser.add_argument("--encoder", default="tu-tf_efficientnetv2_s", help="GPU: encoder")
    parser.add_argument("--k", type=int, default=512, help="GPU: SLIC n_segments")
    parser.add_argument("--n_masked", type=int, default=128, help="GPU: superpixels masked")
    args = parser.parse_args()
    print(f"python {platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.device != "cpu":
        gpu_step_rate(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        print(f"cache generation ({ROOT.name}, {args.size}px): {fill_cache(Path(tmp), args.size):.1f} s")
        for source in ("cache", "cpu"):
            r = time_epochs(source, args, Path(tmp))
            total = r["wait_s"] + r["step_s"]
            print(
                f"source={source:5s} workers={args.workers}: {r['images']} images in {total:.1f} s; "
                f"data wait {r['wait_s']:.2f} s, step {r['step_s']:.2f} s, "
                f"data-wait fraction {r['wait_s'] / total:.2f}, {r['images'] / total:.1f} images/s"
            )


if __name__ == "__main__":
    main()
