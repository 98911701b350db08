"""Prediction throughput: ``run.py --predict`` vs a plain ``torch.no_grad()`` loop, same process.

A UNet-32 checkpoint at 256x256 (one training step on the embedded nuclei sample, grey input) predicts
a folder of seeded synthetic 256x256 PNGs three ways in one process, after one warm-up pass each:

* ``plain forward``: the network alone on preloaded, preprocessed tensors (pure compute);
* ``plain loop``: what a user would hand-write: read PNG, normalise, forward, argmax, write PNG;
* ``framework``: ``engine.predict.run_prediction`` (the same work plus ``predictions.csv``, the
  checkpoint's preprocessing, atomic writes), and the same with ``--tta flip``.

Ratios are images/s of the framework over the plain loop (and over the forward alone). Then the peak
resident memory of sliding-window prediction of one image of 1x, 3x and 6x the training size, each in
a fresh subprocess (its ``VmHWM``; ``ru_maxrss`` would carry this process's peak across exec):
windows go through the network ``--batch_size`` at a time, so memory grows with the image's own
arrays, not with a whole-image batch.

Usage::

    python bench/predict.py                 # 32 images, 1 thread, batch 4
    python bench/predict.py --images 64 --threads 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import run  # noqa: E402
from datasets.image_io import read_image  # noqa: E402
from datasets.preprocess import normalise_image  # noqa: E402
from engine.predict import parse_predict_args, run_prediction  # noqa: E402
from engine.predict.checkpoints import load_prediction_model  # noqa: E402

SIZE = 256


def make_checkpoint(tmp: Path) -> str:
    """UNet-32 (8.63 M parameters) at 256x256 after one step on the nuclei sample."""
    args = ["--cfg", str(ROOT / "configs" / "demo.yaml"), "--runs_dir", str(tmp / "runs")]
    args += ["--data.image_size", str(SIZE), "--model.model_kwargs", '{"base_channel": 32}']
    args += ["--trainer.max_steps", "1", "--trainer.limit_val_batches", "1"]
    args += ["--trainer.limit_test_batches", "1"]
    args += ["--trainer.enable_progress_bar", "false", "--model.hd95_in_test", "false"]
    result = run.main(args)
    return result["best_ckpt"] or str(Path(result["run_dir"]) / "checkpoints" / "last.ckpt")


def make_images(folder: Path, n: int, size: int = SIZE, seed: int = 0) -> list[Path]:
    """Seeded grey PNGs: smooth noise with bright discs (nucleus-like)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    paths = []
    for i in range(n):
        img = rng.normal(60, 15, (size, size))
        for _ in range(12):
            cy, cx, r = rng.integers(0, size, 2).tolist() + [int(rng.integers(5, 15))]
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] += 120
        path = folder / f"img_{i:03d}.png"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def plain_forward(net: torch.nn.Module, batches: list[torch.Tensor]) -> float:
    """Seconds of the network alone over preprocessed batches."""
    start = time.perf_counter()
    with torch.no_grad():
        for batch in batches:
            net(batch).argmax(1)
    return time.perf_counter() - start


def plain_loop(net: torch.nn.Module, paths: list[Path], out: Path, batch_size: int) -> float:
    """Seconds of a hand-written predict loop: read, normalise, forward, argmax, write PNG."""
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(paths), batch_size):
            chunk = paths[i : i + batch_size]
            batch = torch.stack([normalise_image(read_image(p, 1)) for p in chunk])
            labels = net(batch).argmax(1).to(torch.uint8).numpy()
            for p, mask in zip(chunk, labels, strict=True):
                Image.fromarray(mask).save(out / p.name)
    return time.perf_counter() - start


def framework(ckpt: str, folder: Path, out: Path, batch_size: int, *extra: str) -> float:
    """Seconds of ``run.py --predict`` (in process) over the folder."""
    args = ["--predict", "--no_progress", "--ckpt", ckpt, "--input", str(folder), "--output", str(out)]
    options = parse_predict_args([*args, "--batch_size", str(batch_size), "--device", "cpu", *extra])
    start = time.perf_counter()
    run_prediction(options)
    return time.perf_counter() - start


def peak_rss_mb(ckpt: str, side: int, tmp: Path, threads: int) -> float:
    """Peak RSS (MB) of a fresh process predicting one ``side x side`` image with sliding windows."""
    folder = tmp / f"big_{side}"
    make_images(folder, 1, size=side)
    code = (
        "import resource, sys, torch; sys.path.insert(0, sys.argv[1]);"
        "torch.set_num_threads(int(sys.argv[5]));"
        "from engine.predict import parse_predict_args, run_prediction;"
        "run_prediction(parse_predict_args(['--predict', '--no_progress', '--ckpt', sys.argv[2],"
        " '--input', sys.argv[3], '--output', sys.argv[4], '--mode', 'sliding', '--batch_size', '4',"
        " '--device', 'cpu']));"
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])"
    )
    argv = [sys.executable, "-c", code, str(ROOT), ckpt, str(folder), str(tmp / f"out_{side}"), str(threads)]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    return int(done.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="Best of N timed passes per method.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        ckpt = make_checkpoint(tmp)
        paths = make_images(tmp / "images", args.images)
        net = load_prediction_model(ckpt, {}).module.eval()
        batches = [
            torch.stack([normalise_image(read_image(p, 1)) for p in paths[i : i + args.batch_size]])
            for i in range(0, len(paths), args.batch_size)
        ]
        runs = {
            "plain forward": lambda r: plain_forward(net, batches),
            "plain loop": lambda r: plain_loop(net, paths, tmp / f"plain_{r}", args.batch_size),
            "framework": lambda r: framework(ckpt, tmp / "images", tmp / f"fw_{r}", args.batch_size),
            "framework --tta flip": lambda r: framework(
                ckpt, tmp / "images", tmp / f"tta_{r}", args.batch_size, "--tta", "flip"
            ),
        }
        seconds = {}
        for key, fn in runs.items():
            fn(0)  # warm-up pass (allocator, caches, first-call costs)
            seconds[key] = min(fn(r) for r in range(1, args.repeats + 1))
        rss = {side: peak_rss_mb(ckpt, side, tmp, args.threads) for side in (SIZE, 3 * SIZE, 6 * SIZE)}
    report(args, seconds, rss)


def report(args: argparse.Namespace, seconds: dict[str, float], rss: dict[int, float]) -> None:
    """Print the markdown tables and a JSON line of the figures."""
    ips = {k: args.images / s for k, s in seconds.items()}
    print(f"\nUNet-32, {SIZE}x{SIZE} grey, {args.images} images, batch {args.batch_size}, "
          f"{args.threads} thread(s), torch {torch.__version__}\n")  # fmt: skip
    print("| method | images/s | framework / this |")
    print("|---|---|---|")
    for k, v in ips.items():
        print(f"| {k} | {v:.2f} | {ips['framework'] / v:.3f} |")
    print("\n| sliding window, image side | peak RSS (MB) |")
    print("|---|---|")
    for side, mb in rss.items():
        print(f"| {side} ({side // SIZE}x training size) | {mb:.0f} |")
    print(json.dumps({"images_per_s": ips, "peak_rss_mb": rss}))


if __name__ == "__main__":
    main()
