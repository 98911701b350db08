"""Precompute superpixel maps into the on-disk cache that training picks up (``source: cache``).

Examples:
    python sp_generation.py --root IMAGES_DIR --method slic --k 512 --compactness 10 --size 256
    python sp_generation.py --root DATA --layout isic2017 --split train --backend numba --workers 8
    python sp_generation.py --root DATA --backend torch --device cuda --batch 64 --k 512 --size 512
    python sp_generation.py --cfg configs/pretrain.yaml [--cfg more.yaml] [--verify]
"""

from __future__ import annotations

import argparse
import sys

from core.errors import run_entry_point
from datasets.records import SPLIT_NAMES


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser; flags given explicitly override values from ``--cfg`` files."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--cfg", action="append", help="run config YAML (repeatable, later wins); reads data.init_args"
    )
    p.add_argument("--root", help="image folder (all images, recursively) or dataset root with --layout")
    p.add_argument("--layout", help="dataset layout (ids then match the training loader's)")
    p.add_argument("--split", nargs="+", choices=SPLIT_NAMES, help="splits of the layout (default: all)")
    p.add_argument("--out", help="cache root (default: <root>/.superpixel_cache)")
    p.add_argument("--method", choices=("slic", "felzenszwalb"), help="algorithm (default slic)")
    p.add_argument("--backend", help="skimage | numba | torch (default numba)")
    p.add_argument("--k", type=int, help="SLIC n_segments")
    p.add_argument("--compactness", type=float, help="SLIC compactness")
    p.add_argument("--scale", type=float, help="Felzenszwalb scale")
    p.add_argument("--sigma", type=float, help="Gaussian pre-smoothing sigma")
    p.add_argument("--min-size", type=int, help="Felzenszwalb min_size")
    p.add_argument("--param", action="append", help="any other engine parameter, NAME=VALUE (repeatable)")
    p.add_argument("--size", type=int, nargs="+", help="resize to N x N (or H W) before computing")
    p.add_argument(
        "--channels", type=int, choices=(1, 3), help="image channels (default 3, or data in_channels)"
    )
    p.add_argument("--body-mask", action="store_true", help="restrict superpixels to the body mask")
    p.add_argument("--workers", type=int, help="processes for CPU backends (default: all cores)")
    p.add_argument("--device", default="cpu", help="torch device for --backend torch, e.g. cuda")
    p.add_argument("--batch", type=int, default=64, help="images per batch for --backend torch")
    p.add_argument("--verify", action="store_true", help="only check the cache against its manifest")
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the generation; returns the process exit code."""
    from datasets.superpixels.generation import main as run

    args = build_parser().parse_args(argv)
    if args.size is not None and len(args.size) > 2:
        build_parser().error(f"--size takes N or H W, got {args.size}")
    return run(args)


if __name__ == "__main__":
    sys.exit(run_entry_point("sp_generation.py", main))
