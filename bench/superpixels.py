"""Superpixel benchmark: speed per core and map quality of every backend vs skimage, same process.

    python bench/superpixels.py            # sizes 256 and 512, k in {100, 512, 1000}
    python bench/superpixels.py --quick    # 256 only, k = 512, fewer repeats
    python bench/superpixels.py --device cuda --batch 256   # GPU throughput of the torch backend

Timing is CPU time of this process with numba and torch limited to one thread (per-core cost),
minimum over repeats, colour conversion and connectivity included. Images: the embedded sample
(grey CT / nuclei slices with their masks as ground truth) when present, plus skimage.data RGB images
(astronaut, coffee, chelsea) whose ground truth is a documented coarse reference segmentation: the
3-class multi-Otsu partition of the Gaussian-blurred (sigma 2) grey image. Grey images use
``--grey-compactness`` (default 0.1) because skimage's intensity scale makes compactness 10 a grid.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numba  # noqa: E402
import numpy as np  # noqa: E402
import skimage  # noqa: E402
import torch  # noqa: E402
from skimage import data, filters, transform  # noqa: E402

from datasets.superpixels import quality, superpixels, warmup  # noqa: E402

SAMPLE = ROOT / "datasets" / "sample"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def coarse_reference(rgb: np.ndarray) -> np.ndarray:
    grey = filters.gaussian(rgb.mean(axis=2), 2)
    return np.digitize(grey, filters.threshold_multiotsu(grey, 3))


def load_images(size: int, quick: bool) -> tuple[list[tuple[str, np.ndarray, np.ndarray]], list[str]]:
    """(name, image [H, W, C] float32, gt [H, W]) at ``size`` and a description of the sources."""
    out, sources = [], []
    for name in ("astronaut", "coffee", "chelsea")[: 1 if quick else 3]:
        im = transform.resize(getattr(data, name)(), (size, size), anti_aliasing=True).astype(np.float32)
        out.append((name, im, coarse_reference(im)))
    sources.append("skimage.data RGB (gt: 3-class multi-Otsu of blurred grey)")
    picked = []
    for subset in ("abdomen_ct", "nuclei"):
        files = sorted((SAMPLE / subset / "test" / "images").glob("*.png"))
        picked += files[: 1 if quick else 2]
    if picked:
        from PIL import Image

        for f in picked:
            im = np.asarray(Image.open(f), dtype=np.float32) / 255.0
            gt = np.asarray(Image.open(f.parent.parent / "masks" / f.name))
            im = transform.resize(im, (size, size), order=1, anti_aliasing=False).astype(np.float32)
            gt = transform.resize(gt, (size, size), order=0, preserve_range=True, anti_aliasing=False)
            out.append((f"{f.parent.parent.parent.name}/{f.name}", im[..., None], gt.astype(np.int64)))
        sources.append(f"embedded sample {len(picked)} grey slices (gt: their masks), upsampled from 128")
    else:
        cam = transform.resize(data.camera(), (size, size), anti_aliasing=True).astype(np.float32)
        out.append(("camera", cam[..., None], (cam > filters.threshold_otsu(cam)).astype(np.int64)))
        sources.append("sample not found: skimage.data camera (gt: Otsu threshold)")
    return out, sources


def run_one(backend: str, image: np.ndarray, **params):
    x = image[None]
    if backend == "torch":
        x = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2)
    labels, counts = superpixels(x, backend=backend, **params)
    return np.asarray(labels)[0], int(np.asarray(counts)[0])


def cpu_ms(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best * 1000.0


def bench_cpu(args) -> None:
    numba.set_num_threads(1)
    torch.set_num_threads(1)
    backends = ("skimage", "numba", "torch")
    sizes = (256,) if args.quick else (256, 512)
    ks = (512,) if args.quick else (100, 512, 1000)
    header = f"{'size':>4} {'k':>5} {'kind':>4} {'backend':>8} {'ms/img':>8} {'x skim':>7} {'count':>7} "
    header += f"{'BR':>6} {'UE':>6} {'ASA':>6} {'CO':>6}"
    for size in sizes:
        images, sources = load_images(size, args.quick)
        print(f"# images at {size}: " + "; ".join(sources))
        print(header)
        for k in ks:
            for kind in ("rgb", "grey"):
                subset = [im for im in images if (im[1].shape[-1] == 3) == (kind == "rgb")]
                if not subset:
                    continue
                comp = 10.0 if kind == "rgb" else args.grey_compactness
                ref_ms = None
                for backend in backends:
                    params = {"n_segments": k, "compactness": comp}
                    ms = np.mean(
                        [
                            cpu_ms(
                                lambda im=im, be=backend, pa=params: run_one(be, im[1], **pa), args.repeats
                            )
                            for im in subset
                        ]
                    )
                    ref_ms = ms if backend == "skimage" else ref_ms
                    rows = []
                    for _, im, gt in subset:
                        lab, count = run_one(backend, im, **params)
                        rows.append(
                            (
                                count,
                                quality.boundary_recall(lab, gt),
                                quality.undersegmentation_error(lab, gt),
                                quality.achievable_segmentation_accuracy(lab, gt),
                                quality.compactness(lab),
                            )
                        )
                    c, br, ue, asa, co = np.mean(rows, axis=0)
                    print(
                        f"{size:>4} {k:>5} {kind:>4} {backend:>8} {ms:>8.2f} {ref_ms / ms:>6.1f}x {c:>7.1f} "
                        f"{br:>6.3f} {ue:>6.3f} {asa:>6.3f} {co:>6.3f}"
                    )


def bench_device(args) -> None:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but torch.cuda.is_available() is False")
    size, k = 256, 512
    images, sources = load_images(size, quick=False)
    rgb = [im for _, im, _ in images if im.shape[-1] == 3]
    batch = np.stack([rgb[i % len(rgb)] for i in range(args.batch)])
    x = torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous().to(device)
    print(
        f"# device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else cpu_name()}), "
        f"batch {args.batch} x RGB {size}x{size}, k={k}; images: {sources[0]}"
    )

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for conn in (False, True):
        superpixels(x, backend="torch", n_segments=k, enforce_connectivity=conn)
        sync()
        best = float("inf")
        for _ in range(args.repeats):
            t = time.perf_counter()
            _, counts = superpixels(x, backend="torch", n_segments=k, enforce_connectivity=conn)
            sync()
            best = min(best, time.perf_counter() - t)
        us = best / args.batch * 1e6
        # Floor: each of max_iter passes reads the features (C floats) and positions and writes labels.
        bytes_per_image = size * size * (3 * 4 + 4 + 4) * 10
        floor_us = bytes_per_image / (args.bandwidth_gbs * 1e9) * 1e6
        note = "connectivity on CPU copy (numba)" if conn else "no connectivity, all on device"
        print(
            f"torch enforce_connectivity={conn!s:5} {args.batch / best:9.0f} images/s  {us:8.1f} us/image  "
            f"(memory-bandwidth floor ~{floor_us:.1f} us/image at {args.bandwidth_gbs:.0f} GB/s; {note}); "
            f"mean count {counts.float().mean().item():.1f}"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="256 only, k=512, one image per source")
    p.add_argument("--device", default=None, help="run the batched torch throughput test on this device")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--grey-compactness", type=float, default=0.1)
    p.add_argument(
        "--bandwidth-gbs", type=float, default=3350.0, help="device memory bandwidth for the floor"
    )
    args = p.parse_args()
    if args.repeats is None:
        args.repeats = 3 if args.quick else 5
    print(f"# CPU: {cpu_name()}, {os.cpu_count()} logical cores; python {platform.python_version()}")
    print(
        f"# torch {torch.__version__} (cuda {torch.cuda.is_available()}), numba {numba.__version__}, "
        f"skimage {skimage.__version__}, numpy {np.__version__}"
    )
    t = time.perf_counter()
    warmup()
    print(f"# numba warm-up {time.perf_counter() - t:.2f} s (cached kernels load fast; first run compiles)")
    if args.device is not None:
        bench_device(args)
        return
    print("# per-core timing: numba and torch threads = 1, CPU time, min over repeats, mean over images")
    bench_cpu(args)


if __name__ == "__main__":
    main()
