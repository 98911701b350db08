"""Write simulated noisy masks next to the clean ones, plus a manifest and a ``noisy`` view folder.

Usage::

    python -m datasets.noise.cli --root datasets/sample/nuclei --layout folder
        --alpha 0.5 --beta 0.7 --seed 0 [--num-classes 2] [--split train] [--max-angle 30]

For every mask folder ``M`` of the split, the complete label set (noisy masks for the ``alpha``
fraction, copies of the clean ones for the rest) goes into the sibling ``M_noisy_a50_b70_s0/`` with a
``manifest.json`` (alpha, beta, seed, per image: type, requested and achieved beta, and the pooled
per-class precision R). Clean files are only read. The folder is written under a temporary name and
renamed into place, so an interrupted run leaves nothing half-written. A view folder
``<root>/noisy_a50_b70_s0/noisy_dataset.json`` lets the DataModule train on it (``layout: noisy``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import run_entry_point
from datasets.atomic_io import atomic_write_json
from datasets.image_io import read_mask, write_png_atomic
from datasets.layouts import find_samples
from datasets.noise.layout import VIEW_FILENAME
from datasets.noise.simulate import NOISE_TYPES, corrupt_label_map, select_noisy_ids
from datasets.noise.statistics import noise_precision
from datasets.progress import progress

MANIFEST = "manifest.json"


def noise_tag(alpha: float, beta: float, seed: int) -> str:
    """Folder tag of a noise setting, e.g. ``a50_b70_s0``."""
    return f"a{round(alpha * 100)}_b{round(beta * 100)}_s{seed}"


def _to_png(labels: np.ndarray, num_classes: int) -> np.ndarray:
    # Binary masks are stored 0/255 (viewable, and read_mask maps 255 back to 1).
    if num_classes <= 2:
        return (labels > 0).astype(np.uint8) * 255
    return labels.astype(np.uint8 if num_classes <= 256 else np.uint16)


def generate_noisy_dataset(
    root: str | Path,
    layout: str,
    alpha: float,
    beta: float,
    seed: int,
    num_classes: int = 2,
    split: str = "train",
    max_angle: float | dict[int, float] = 30.0,
    types: tuple[str, ...] = NOISE_TYPES,
    overwrite: bool = False,
) -> Path:
    """Simulate noisy labels for one split and write them, their manifest and a view folder.

    Args:
        root: Clean dataset root.
        layout: Registered layout of the clean dataset.
        alpha: Fraction of images whose labels are corrupted.
        beta: Noise level of a corrupted image (``|noisy XOR clean| / |clean|`` per class).
        seed: Seed of the image choice and of every corruption.
        num_classes: Classes including background.
        split: Split to corrupt (the others stay clean).
        max_angle: Largest affine rotation in degrees, or a ``{class: degrees}`` mapping.
        types: Noise types drawn uniformly.
        overwrite: Replace an existing label set with the same tag (else it is an error).

    Returns:
        The view folder (pass it as ``data.root`` with ``layout: noisy``).

    Raises:
        FileExistsError: If the label set exists and ``overwrite`` is False.
        ValueError: On a bad ``alpha``/``beta`` or unknown type.
    """
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    root = Path(root).resolve()
    tag = noise_tag(alpha, beta, seed)
    records = find_samples(layout, root, split)
    noisy_ids = select_noisy_ids([r.id for r in records], alpha, seed)
    out_dirs = {r.mask.parent: r.mask.parent.with_name(f"{r.mask.parent.name}_noisy_{tag}") for r in records}
    existing = [d for d in out_dirs.values() if d.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"noisy label set {existing[0]} exists; pass --overwrite to replace it")
    settings = {
        "alpha": alpha,
        "beta": beta,
        "seed": seed,
        "num_classes": num_classes,
        "max_angle": max_angle,
    }
    view_dir = root / f"noisy_{tag}"
    temps = {
        src: Path(tempfile.mkdtemp(dir=src.parent, prefix=f".{dst.name}.tmp-"))
        for src, dst in out_dirs.items()
    }
    try:
        entries, pairs, masks = _corrupt_records(
            records, noisy_ids, temps, out_dirs, view_dir, settings, types
        )
        manifest = {
            **settings,
            "layout": layout,
            "root": str(root),
            "split": split,
            "types": list(types),
            "precision": noise_precision(pairs, num_classes),
            "images": entries,
        }
        for temp in temps.values():
            atomic_write_json(temp / MANIFEST, manifest)
        for src, dst in out_dirs.items():
            if dst.exists():
                shutil.rmtree(dst)
            os.replace(temps[src], dst)
    finally:
        for temp in temps.values():
            if temp.exists():
                shutil.rmtree(temp)
    view_dir.mkdir(exist_ok=True)
    view = {
        "source_root": os.path.relpath(root, view_dir),
        "source_layout": layout,
        "split": split,
        **settings,
        "precision": manifest["precision"],
        "manifests": [str(d / MANIFEST) for d in out_dirs.values()],
        "masks": masks,
    }
    atomic_write_json(view_dir / VIEW_FILENAME, view)
    return view_dir


def _corrupt_records(
    records: list[Any],
    noisy_ids: set[str],
    temps: dict[Path, Path],
    out_dirs: dict[Path, Path],
    view_dir: Path,
    settings: dict[str, Any],
    types: tuple[str, ...],
) -> tuple[list[dict[str, Any]], list[tuple[np.ndarray, np.ndarray]], dict[str, str]]:
    """Corrupt the chosen records' masks (the others copied clean) into the temporary folders.

    Returns:
        ``(manifest entries, (noisy, clean) pairs, {id: mask path relative to the view})``.
    """
    num_classes, beta = settings["num_classes"], settings["beta"]
    entries, pairs, masks = [], [], {}
    for index, record in enumerate(progress(records, "noise", unit="mask")):
        clean = read_mask(record.mask, num_classes)
        rng = np.random.default_rng([settings["seed"], index])
        entry: dict[str, Any] = {"id": record.id, "clean_mask": str(record.mask), "noisy": False}
        noisy = clean
        if record.id in noisy_ids:
            noisy, results = corrupt_label_map(
                clean, beta, rng, num_classes, max_angle=settings["max_angle"], types=types
            )
            entry["noisy"] = True
            entry["classes"] = {
                str(c): {"type": r.noise_type, "requested": r.requested, "achieved": r.achieved}
                for c, r in results.items()
            }
        name = f"{record.mask.stem}.png"
        write_png_atomic(temps[record.mask.parent] / name, _to_png(noisy, num_classes))
        entry["noisy_mask"] = str(out_dirs[record.mask.parent] / name)
        masks[record.id] = os.path.relpath(out_dirs[record.mask.parent] / name, view_dir)
        pairs.append((noisy, clean))
        entries.append(entry)
    return entries, pairs, masks


def main(argv: list[str] | None = None) -> Path:
    """Parse arguments and write the noisy label set; prints the view folder."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="Clean dataset root.")
    parser.add_argument("--layout", default="folder", help="Registered layout of the dataset.")
    parser.add_argument("--alpha", type=float, required=True, help="Fraction of images corrupted.")
    parser.add_argument("--beta", type=float, required=True, help="Noise level |noisy^clean|/|clean|.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-classes", type=int, default=2)
    parser.add_argument("--split", default="train")
    parser.add_argument("--max-angle", type=float, default=30.0, help="Largest affine rotation, degrees.")
    parser.add_argument("--types", nargs="+", default=list(NOISE_TYPES), choices=NOISE_TYPES)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    view = generate_noisy_dataset(
        args.root,
        args.layout,
        args.alpha,
        args.beta,
        args.seed,
        args.num_classes,
        args.split,
        args.max_angle,
        tuple(args.types),
        args.overwrite,
    )
    print(f"noisy labels written; train with: --data.root {view} --data.layout noisy")
    return view


if __name__ == "__main__":
    sys.exit(run_entry_point("python -m datasets.noise.cli", main))
