"""Prediction outputs, each written atomically: PNG masks, probabilities, overlays, NIfTI volumes, CSV.

Output names under ``--output`` for an input named ``NAME`` (its path relative to ``--input``, no
suffix): ``NAME.png`` (2D mask), ``NAME_probs.npz`` (float16 ``probs [C, H, W]``), ``NAME_overlay.png``
(image | prediction); ``NAME.nii.gz`` (volume mask, the input's affine and header),
``NAME_probs.nii.gz`` (float32 ``[X, Y, Z, C]``), ``NAME_overlay_zNNN.png`` every N slices.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from datasets.atomic_io import atomic_path, atomic_write_csv
from datasets.image_io import write_png_atomic
from models.overlays import overlay

CSV_NAME = "predictions.csv"
CSV_FIELDS = (
    "input",
    "kind",
    "mask",
    "probs",
    "overlays",
    "height",
    "width",
    "depth",
    "foreground_fraction",
    "seconds",
)


@dataclass(frozen=True)
class OutputPaths:
    """Where one input's outputs go.

    Attributes:
        mask: The label mask (``.png`` or ``.nii.gz``).
        probs: The probabilities, or None when not asked for.
        overlay_stem: Overlay files start with this path (None: no overlays).
    """

    mask: Path
    probs: Path | None
    overlay_stem: Path | None


def output_paths(out_dir: Path, name: str, volume: bool, probs: bool, overlays: bool) -> OutputPaths:
    """The output files of the input named ``name``."""
    base = out_dir / name
    suffix = ".nii.gz" if volume else ".png"
    probs_suffix = "_probs.nii.gz" if volume else "_probs.npz"
    return OutputPaths(
        mask=base.with_name(base.name + suffix),
        probs=base.with_name(base.name + probs_suffix) if probs else None,
        overlay_stem=base.with_name(base.name + "_overlay") if overlays else None,
    )


def existing_outputs(paths: OutputPaths) -> list[Path]:
    """The files of ``paths`` that already exist (overlays: any file starting with the stem)."""
    found = [p for p in (paths.mask, paths.probs) if p is not None and p.exists()]
    if paths.overlay_stem is not None and paths.overlay_stem.parent.is_dir():
        found += sorted(paths.overlay_stem.parent.glob(paths.overlay_stem.name + "*.png"))
    return found


def mask_values(labels: np.ndarray, num_classes: int, palette: str) -> np.ndarray:
    """Class indices as stored in a PNG: ``index`` (0..C-1) or ``binary`` (0/255, two classes only).

    Raises:
        ValueError: For ``binary`` with more than two classes.
    """
    if palette == "binary":
        if num_classes != 2:
            raise ValueError(f"--palette binary needs a 2-class model, this one has {num_classes} classes")
        return (labels > 0).astype(np.uint8) * 255
    return labels.astype(np.uint8 if num_classes <= 256 else np.uint16)


def write_probs_npz(path: Path, probs: np.ndarray) -> None:
    """Write ``probs`` (``[C, H, W]``) as float16 under the key ``probs`` of a compressed ``.npz``."""
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        np.savez_compressed(handle, probs=probs.astype(np.float16))


def overlay_image(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``image | prediction overlay`` side by side as RGB uint8.

    Shape:
        image ``H x W x C`` in ``[0, 1]``, labels ``H x W`` -> ``H x 2W x 3``.
    """
    rgb = image[:, :, :3] if image.shape[2] >= 3 else np.repeat(image[:, :, :1], 3, axis=2)
    base = (np.clip(rgb, 0.0, 1.0) * 255).round().astype(np.uint8)
    return np.concatenate([base, overlay(base, labels)], axis=1)


def write_overlay(path: Path, image: np.ndarray, labels: np.ndarray) -> Path:
    """Write :func:`overlay_image` as PNG and return the path."""
    write_png_atomic(path, overlay_image(image, labels))
    return path


def to_stored_orientation(canonical: np.ndarray, reference: nib.Nifti1Image) -> np.ndarray:
    """Reorient an array of the RAS-canonical grid back onto the stored file's voxel grid."""
    stored = nib.orientations.io_orientation(reference.affine)
    ras = nib.orientations.axcodes2ornt(("R", "A", "S"))
    return nib.orientations.apply_orientation(canonical, nib.orientations.ornt_transform(ras, stored))


def write_volume(
    path: Path, canonical: np.ndarray, reference: nib.Nifti1Image, dtype: type, reoriented: bool = True
) -> None:
    """Write a canonical-grid array with the reference's affine and header (orientation, spacing).

    Args:
        path: ``.nii.gz`` destination.
        canonical: ``[X, Y, Z]`` or ``[X, Y, Z, C]`` on the RAS-canonical grid of ``reference``.
        reference: The input image as stored.
        dtype: Stored type (``np.uint8``/``np.int16`` for labels, ``np.float32`` for probabilities).
        reoriented: False when ``canonical`` is on the stored axes already (``inference.reorient: false``).
    """
    stored = to_stored_orientation(canonical, reference) if reoriented else canonical
    data = np.ascontiguousarray(stored).astype(dtype)
    header = reference.header.copy()
    header.set_data_dtype(dtype)
    header.set_data_shape(data.shape)
    image = nib.Nifti1Image(data, reference.affine, header)
    image.header.set_slope_inter(1.0, 0.0)
    image.header.set_intent("none")
    with atomic_path(path, keep_suffix=True) as tmp:
        nib.save(image, str(tmp))


def write_csv(out_dir: Path, rows: list[dict]) -> Path:
    """Write ``predictions.csv`` (one row per predicted input)."""
    return atomic_write_csv(out_dir / CSV_NAME, rows, CSV_FIELDS)


def output_row(
    item: Any, paths: Any, labels: np.ndarray, overlays: list[Path], shape: tuple[int, ...]
) -> dict[str, Any]:
    """One ``predictions.csv`` row: the input, its output files, its size and foreground fraction.

    Args:
        item: The input (``path``, ``kind``).
        paths: Its output paths (``mask``, ``probs``).
        labels: The predicted label array (2D image or volume).
        overlays: Overlay PNGs written.
        shape: ``(height, width)`` of an image or the stored ``(X, Y, Z)`` shape of a volume.
    """
    return {
        "input": str(item.path),
        "kind": item.kind,
        "mask": str(paths.mask),
        "probs": str(paths.probs) if paths.probs else "",
        "overlays": ";".join(str(p) for p in overlays),
        "height": shape[0],
        "width": shape[1],
        "depth": shape[2] if len(shape) > 2 else "",
        "foreground_fraction": float((labels > 0).mean()),
    }
