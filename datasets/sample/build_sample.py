"""Rebuild the embedded real sample dataset from its upstream sources.

Usage (from the repository root):
    python -m datasets.sample.build_sample --download
    python -m datasets.sample.build_sample --totalseg-sdist PATH.tar.gz --stardist-wheel PATH.whl

Writes `nuclei/`, `abdomen_ct/`, `abdomen_mr/`, `volumes/` and `labels.json` next to this file (or under
--out). Each is built in a temporary folder and renamed into place. See README.md and NOTICE.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from skimage.transform import resize

from datasets.atomic_io import atomic_path, atomic_write_json
from datasets.image_io import write_png_atomic
from datasets.sample import sources
from datasets.sample.derive import (
    COMPACT_LABELS,
    NORMALISERS,
    SPLITS,
    TOTALSEG_TO_COMPACT,
    body_bbox,
    fit_to_square,
    organ_z_range,
    remap_labels,
    split_blocks,
    stretch_percentile,
    to_display,
)
from datasets.volumes.io import read_nifti
from datasets.volumes.manifest import MANIFEST_NAME, merge_manifest

Sample = tuple[str, np.ndarray, np.ndarray]  # (id, uint8 image, uint8 mask)
SEED = 0
SIZE = 128
BLOCK_SIZE = 3
FRACTIONS = (0.70, 0.15, 0.15)
NUCLEI_COUNTS = (10, 3, 3)
# Body thresholds: CT air is about -1000 HU; None = Otsu for MR, whose scale is arbitrary.
BODY_THRESHOLD: dict[str, float | None] = {"ct": -500.0, "mr": None}


def derive_nuclei(
    image: np.ndarray,
    instances: np.ndarray,
    tile: int = SIZE,
    counts: tuple[int, int, int] = NUCLEI_COUNTS,
    seed: int = SEED,
) -> dict[str, list[Sample]]:
    """Stretch, tile and split the nuclei image; instance labels become a 0/255 binary mask.

    Args:
        image: fluorescence image, shape (H, W), H and W multiples of `tile`.
        instances: instance label map (0 = background), shape (H, W).
        tile: tile side.
        counts: tiles for (train, val, test); must sum to the number of tiles.
        seed: seed of the permutation that assigns tiles (in row-major order) to splits.

    Returns:
        split -> list of (id "r{row}_c{col}", uint8 tile, uint8 mask in {0, 255}).

    Raises:
        ValueError: if the shapes differ, are not multiples of `tile`, or counts do not fit.
    """
    if image.shape != instances.shape or image.shape[0] % tile or image.shape[1] % tile:
        raise ValueError(f"image {image.shape} / mask {instances.shape}: expected equal multiples of {tile}")
    rows, cols = image.shape[0] // tile, image.shape[1] // tile
    if sum(counts) != rows * cols:
        raise ValueError(f"split counts {counts} sum to {sum(counts)}; the image has {rows * cols} tiles")
    u8 = stretch_percentile(image)
    binary = np.where(instances > 0, 255, 0).astype(np.uint8)
    order = np.random.default_rng(seed).permutation(rows * cols)
    bounds = np.cumsum((0, *counts))
    out: dict[str, list[Sample]] = {s: [] for s in SPLITS}
    for split, lo, hi in zip(SPLITS, bounds[:-1], bounds[1:], strict=True):
        for t in sorted(order[lo:hi]):
            r, c = divmod(int(t), cols)
            win = (slice(r * tile, (r + 1) * tile), slice(c * tile, (c + 1) * tile))
            out[split].append((f"r{r}_c{c}", u8[win], binary[win]))
    return out


def derive_slices(
    image_u8: np.ndarray,
    label: np.ndarray,
    prefix: str,
    size: int = SIZE,
    block_size: int = BLOCK_SIZE,
    seed: int = SEED,
) -> dict[str, list[Sample]]:
    """Axial slices that contain an organ, in radiological view, fitted to `size`, split by z blocks.

    Args:
        image_u8: 8-bit volume in RAS+ orientation with square in-plane voxels, shape (X, Y, Z).
        label: compact label volume, same shape.
        prefix: id prefix; ids are "{prefix}_z{z:03d}" with z the slice index in the volume.
        size: output side.
        block_size: slices per contiguous block (see `split_blocks`).
        seed: seed of the block assignment.

    Returns:
        split -> list of (id, uint8 image (size, size), uint8 class-index mask (size, size)).

    Raises:
        ValueError: if the shapes differ or too few slices contain an organ.
    """
    if image_u8.shape != label.shape or image_u8.ndim != 3:
        raise ValueError(f"image {image_u8.shape} and label {label.shape}: expected equal 3D shapes")
    kept = [z for z in range(label.shape[2]) if label[:, :, z].any()]
    roles = split_blocks(len(kept), block_size, FRACTIONS, seed)
    out: dict[str, list[Sample]] = {s: [] for s in SPLITS}
    for z, split in zip(kept, roles, strict=True):
        img = fit_to_square(to_display(image_u8[:, :, z]), size, order=1)
        lab = fit_to_square(to_display(label[:, :, z]), size, order=0)
        out[split].append((f"{prefix}_z{z:03d}", img, lab))
    return out


def derive_volume(
    image: np.ndarray,
    label: np.ndarray,
    affine: np.ndarray,
    body_threshold: float | None,
    max_inplane: int = SIZE,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop to the body (in-plane) and organ (z) extent, then shrink in-plane to at most `max_inplane`.

    Args:
        image: intensities, shape (X, Y, Z).
        label: compact label volume, same shape.
        affine: voxel -> world (mm) affine, 4x4.
        body_threshold: intensity threshold of the body mask (None = Otsu).
        max_inplane: largest allowed X or Y size after shrinking (aspect ratio kept).

    Returns:
        (image with the input dtype, uint8 label, updated 4x4 affine).

    Raises:
        ValueError: if the shapes differ.
    """
    if image.shape != label.shape or image.ndim != 3:
        raise ValueError(f"image {image.shape} and label {label.shape}: expected equal 3D shapes")
    sx, sy = body_bbox(image, body_threshold)
    sz = organ_z_range(label)
    image, label = image[sx, sy, sz], label[sx, sy, sz]
    affine = affine.copy()
    affine[:3, 3] = affine[:3, :3] @ np.array([sx.start, sy.start, sz.start]) + affine[:3, 3]
    nx, ny, nz = image.shape
    scale = max_inplane / max(nx, ny)
    if scale < 1:
        shape = (max(round(nx * scale), 1), max(round(ny * scale), 1), nz)
        shrunk = resize(image.astype(np.float64), shape, order=1, preserve_range=True, anti_aliasing=True)
        image = np.round(shrunk).astype(image.dtype)
        label = resize(label, shape, order=0, preserve_range=True, anti_aliasing=False).astype(np.uint8)
        # resize maps voxel centres as x_old = (x_new + 0.5) * r - 0.5 with r = old / new size.
        r = np.array([nx / shape[0], ny / shape[1], 1.0])
        affine[:3, 3] = affine[:3, :3] @ ((r - 1) / 2) + affine[:3, 3]
        affine[:3, :3] = affine[:3, :3] * r
    return image, label.astype(np.uint8), affine


def write_split_pngs(root: Path, splits: dict[str, list[Sample]]) -> None:
    """Write `root/{split}/{images,masks}/{id}.png` (8-bit greyscale)."""
    for split, samples in splits.items():
        for name, img, mask in samples:
            for sub, arr in (("images", img), ("masks", mask)):
                write_png_atomic(root / split / sub / f"{name}.png", arr)


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    """Write a .nii.gz with the affine as both qform and sform (scanner coordinates, mm)."""
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm")
    with atomic_path(path, keep_suffix=True) as tmp:  # nibabel picks the format from the name
        nib.save(img, str(tmp))


def _abdomen(sdist: Path, image_member: str, seg_member: str, modality: str, build: Path) -> dict[str, int]:
    image_nii = sources.decode_nifti(sources.read_sdist_member(sdist, image_member))
    seg_nii = sources.decode_nifti(sources.read_sdist_member(sdist, seg_member))
    if not np.allclose(image_nii.affine, seg_nii.affine) or image_nii.shape != seg_nii.shape:
        raise ValueError(f"{image_member} and {seg_member}: image and segmentation grids differ")
    zooms = image_nii.header.get_zooms()[:3]
    if not np.isclose(zooms[0], zooms[1]):
        raise ValueError(f"{image_member}: in-plane spacing {zooms[:2]}; expected square pixels")
    label = remap_labels(np.asarray(seg_nii.dataobj), TOTALSEG_TO_COMPACT)
    raw = np.asarray(image_nii.dataobj).astype(np.int16)
    img, lab, affine = derive_volume(raw, label, image_nii.affine, BODY_THRESHOLD[modality])
    write_nifti(build / "volumes" / modality / "image.nii.gz", img, affine)
    write_nifti(build / "volumes" / modality / "label.nii.gz", lab, affine)
    splits = derive_slices(NORMALISERS[modality](img), lab, modality)
    write_split_pngs(build / f"abdomen_{modality}", splits)
    return {s: len(v) for s, v in splits.items()}


# The sample volumes' manifest: raw HU CT clipped to SABS's abdominal window, MR unclipped.
VOLUME_WINDOWS = {"CT": [-125.0, 275.0], "MR": None}
VOLUME_SOURCES = {"ct": (sources.TS_CT, sources.TS_CT_SEG), "mr": (sources.TS_MR, sources.TS_MR_SEG)}


def write_volumes_manifest(volumes: Path) -> Path:
    """Write ``volumes/manifest.json`` (label map, modality per scan, windows per modality)."""
    records = {}
    for sid, (image_member, seg_member) in VOLUME_SOURCES.items():
        image = read_nifti(volumes / sid / "image.nii.gz")
        records[sid] = {
            "modality": sid.upper(), "label": True, "shape": list(image.array.shape),
            "spacing_mm": [round(v, 6) for v in image.spacing], "source_image": image_member,
            "source_label": seg_member,
        }  # fmt: skip
    names = {name: cid for cid, name in COMPACT_LABELS.items() if cid > 0}
    merge_manifest(volumes, names, records, VOLUME_WINDOWS)
    return volumes / MANIFEST_NAME


def build(sdist: Path, wheel: Path, out: Path) -> dict:
    """Derive every subset from the two archives into `out`, replacing what was there.

    Returns:
        The labels.json content (label maps + split sizes).
    """
    class_map_src = sources.read_sdist_member(sdist, sources.TS_CLASS_MAP)
    organs = {src: COMPACT_LABELS[dst] for src, dst in TOTALSEG_TO_COMPACT.items()}
    for task in ("total", "total_mr"):
        sources.check_organ_ids(sources.totalseg_class_map(class_map_src, task), organs)
    with tempfile.TemporaryDirectory(dir=out, prefix=".build-") as tmp:
        staging = Path(tmp)
        image = sources.decode_tiff(sources.read_wheel_member(wheel, sources.SD_IMAGE))
        mask = sources.decode_tiff(sources.read_wheel_member(wheel, sources.SD_MASK))
        nuclei = derive_nuclei(image, mask)
        write_split_pngs(staging / "nuclei", nuclei)
        compact = {str(k): v for k, v in COMPACT_LABELS.items()}
        meta = {
            "nuclei": {"0": "background", "1": "nucleus"},
            "abdomen_ct": compact,
            "abdomen_mr": compact,
            "split_sizes": {
                "nuclei": {s: len(v) for s, v in nuclei.items()},
                "abdomen_ct": _abdomen(sdist, sources.TS_CT, sources.TS_CT_SEG, "ct", staging),
                "abdomen_mr": _abdomen(sdist, sources.TS_MR, sources.TS_MR_SEG, "mr", staging),
            },
        }
        write_volumes_manifest(staging / "volumes")
        atomic_write_json(staging / "labels.json", meta)
        for name in ("nuclei", "abdomen_ct", "abdomen_mr", "volumes", "labels.json"):
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(staging / name, target)
    return meta


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: parse arguments, obtain the sources, build."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--download", action="store_true", help="pip download both sources into a temp dir")
    parser.add_argument("--totalseg-sdist", type=Path, help="totalsegmentator-2.18.0.tar.gz")
    parser.add_argument("--stardist-wheel", type=Path, help="stardist-0.9.2-*.whl")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent, help="output folder")
    args = parser.parse_args(argv)
    if args.download == bool(args.totalseg_sdist or args.stardist_wheel):
        parser.error("give either --download or both --totalseg-sdist and --stardist-wheel")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.download:
        with tempfile.TemporaryDirectory() as tmp:
            meta = build(*sources.pip_download(Path(tmp)), args.out)
    else:
        if not (args.totalseg_sdist and args.stardist_wheel):
            parser.error("--totalseg-sdist and --stardist-wheel must be given together")
        meta = build(args.totalseg_sdist, args.stardist_wheel, args.out)
    print(json.dumps(meta["split_sizes"]))


if __name__ == "__main__":
    main()
