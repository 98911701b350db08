"""Superpixel benchmark: speed per core and map quality of every backend vs skimage, same process.

    python bench/superpixels.py            # sizes 256 and 512, k in {100, 512, 1000}
    python bench/superpixels.py --quick    # 256 only, k = 512, fewer repeats
    python bench/superpixels.py --device cuda --batch 256   # GPU throughput of the torch backend

fast-slic (not a dependency) gets a column when it is importable; for the comparison only:
``pip install "cython<3.1" && pip install --no-build-isolation fast-slic==0.4.0``. It runs its AVX2
class (``SlicAvx2``, num_components=k, compactness=10) on the uint8 RGB image, its native input; it has
no grey mode here. The last table is batch throughput: ``superpixels`` on a batch with
``num_threads`` 1 and all cores, and a DataLoader with 2 workers (one numba thread each).

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
FAST_SLIC_INSTALL = 'pip install "cython<3.1" && pip install --no-build-isolation fast-slic==0.4.0'


def fast_slic_class():
    """fast-slic's AVX2 SLIC class, or None when fast-slic is not installed."""
    try:
        from fast_slic.avx2 import SlicAvx2
    except ImportError:
        return None
    return SlicAvx2


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
    if backend == "fast-slic":
        return run_fast_slic(image, **params)
    x = image[None]
    if backend == "torch":
        x = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2)
    labels, counts = superpixels(x, backend=backend, **params)
    return np.asarray(labels)[0], int(np.asarray(counts)[0])


_UINT8: dict[int, np.ndarray] = {}


def run_fast_slic(image: np.ndarray, n_segments: int, compactness: float):
    # uint8 conversion outside the timed call (fast-slic's native input), cached per image.
    u8 = _UINT8.get(id(image))
    if u8 is None:
        u8 = _UINT8[id(image)] = np.ascontiguousarray(np.round(image * 255).astype(np.uint8))
    labels = fast_slic_class()(num_components=n_segments, compactness=compactness).iterate(u8)
    return labels, int(np.unique(labels).size)


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
    if fast_slic_class() is None:
        print(f"# fast-slic not installed: no fast-slic rows (for the comparison: {FAST_SLIC_INSTALL})")
    else:
        backends += ("fast-slic",)
    sizes = (256,) if args.quick else (256, 512)
    ks = (512,) if args.quick else (100, 512, 1000)
    header = f"{'size':>4} {'k':>5} {'kind':>4} {'backend':>9} {'ms/img':>8} {'x skim':>7} {'count':>7} "
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
                    if backend == "fast-slic" and kind == "grey":
                        continue
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
                        f"{size:>4} {k:>5} {kind:>4} {backend:>9} {ms:>8.2f} {ref_ms / ms:>6.2f}x {c:>7.1f} "
                        f"{br:>6.3f} {ue:>6.3f} {asa:>6.3f} {co:>6.3f}"
                    )


class _OneImage(torch.utils.data.Dataset):
    # Superpixels of one image per item, as a loader worker computes them (source: cpu).
    def __init__(self, images: list[np.ndarray], n: int) -> None:
        self.images, self.n = images, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return superpixels(self.images[i % len(self.images)][None], n_segments=512)[0]


def bench_batched(args) -> None:
    """Images/s at 256x256, k=512, RGB: one batch call with 1 and all threads, a 2-worker DataLoader."""
    images, _ = load_images(256, quick=False)
    rgb = [im for _, im, _ in images if im.shape[-1] == 3]
    n = 8 if args.quick else 32
    batch = np.stack([rgb[i % len(rgb)] for i in range(n)])
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    print(f"# batch throughput (wall clock), {n} RGB images 256x256, k=512; {os.cpu_count()} cores")
    for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
        superpixels(batch[:2], n_segments=512, num_threads=threads)
        t = time.perf_counter()
        superpixels(batch, n_segments=512, num_threads=threads)
        print(f"superpixels(batch, num_threads={threads}): {n / (time.perf_counter() - t):8.1f} images/s")
    loader = torch.utils.data.DataLoader(_OneImage(rgb, 4 * n + 4), batch_size=None, num_workers=2)
    it = iter(loader)
    for _ in range(4):  # worker start-up and numba cache loading are not throughput
        next(it)
    t = time.perf_counter()
    for _ in it:
        pass
    rate = 4 * n / (time.perf_counter() - t)
    print(f"DataLoader, 2 workers (1 numba thread each):  {rate:8.1f} images/s")


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
    bench_batched(args)


if __name__ == "__main__":
    main()
