"""Voxel-grid operations on volumes: resampling, in-plane crop/pad/resize, and image/label grid checks.

Arrays are ``[X, Y, Z]`` in nibabel's voxel order; the first two axes are in-plane. Every function that
changes the grid returns the matching affine, so world coordinates (mm) are kept.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

if TYPE_CHECKING:  # io.py imports this module (read_scan checks grids)
    from datasets.volumes.io import Volume

# Image and label grids agree when direction cosines and relative spacing differ by at most this,
# and origins by at most ORIGIN_TOLERANCE voxels (headers store float32, converters round differently).
GEOMETRY_TOLERANCE = 1e-3
ORIGIN_TOLERANCE = 0.05


def zoomed_affine(affine: np.ndarray, old_shape: tuple[int, ...], new_shape: tuple[int, ...]) -> np.ndarray:
    """The affine of a ``grid_mode=True`` zoom from ``old_shape`` to ``new_shape`` (voxel edges kept).

    A new voxel centre ``i`` lies at old voxel ``(i + 0.5) r - 0.5`` with ``r = old / new`` per axis.
    """
    ratio = np.asarray(old_shape[:3], dtype=np.float64) / np.asarray(new_shape[:3], dtype=np.float64)
    out = affine.copy()
    out[:3, 3] = affine[:3, :3] @ ((ratio - 1.0) / 2.0) + affine[:3, 3]
    out[:3, :3] = affine[:3, :3] * ratio[None, :]
    return out


def resample(volume: Volume, spacing: tuple[float, float, float], order: int) -> Volume:
    """Resample to a new voxel size (scipy zoom; order 1 for images, 0 for labels), affine updated.

    The output shape is the rounded ``shape * old / new spacing``; the affine holds the exact
    spacing that rounding gives.
    """
    factors = np.asarray(volume.spacing) / np.asarray(spacing, dtype=np.float64)
    array = ndimage.zoom(volume.array, factors, order=order, mode="nearest", grid_mode=True)
    return replace(volume, array=array, affine=zoomed_affine(volume.affine, volume.array.shape, array.shape))


def resample_inplane(volume: Volume, spacing_mm: float, order: int) -> Volume:
    """Resample the two in-plane axes to ``spacing_mm`` (z untouched); see :func:`resample`.

    Raises:
        ValueError: For a spacing that is not positive.
    """
    if not spacing_mm > 0:
        raise ValueError(f"target_spacing_mm must be > 0, got {spacing_mm}")
    sx, sy, sz = volume.spacing
    return resample(volume, (float(spacing_mm), float(spacing_mm), sz), order)


def crop_or_pad(array: np.ndarray, size: int, fill: float = 0.0) -> np.ndarray:
    """Centre crop or pad the two in-plane axes of ``[X, Y, Z]`` to ``size x size``."""
    out = array
    for axis in (0, 1):
        n = out.shape[axis]
        if n > size:
            start = (n - size) // 2
            out = np.take(out, np.arange(start, start + size), axis=axis)
        elif n < size:
            pad = [(0, 0)] * out.ndim
            pad[axis] = ((size - n) // 2, size - n - (size - n) // 2)
            out = np.pad(out, pad, constant_values=fill)
    return out


def crop_or_pad_affine(affine: np.ndarray, shape: tuple[int, ...], size: int) -> np.ndarray:
    """The affine matching :func:`crop_or_pad` of an array of ``shape`` (origin moved by the offset)."""
    offset = np.zeros(3)
    for axis in (0, 1):
        n = shape[axis]
        offset[axis] = (n - size) // 2 if n > size else -((size - n) // 2)
    out = affine.copy()
    out[:3, 3] = affine[:3, :3] @ offset + affine[:3, 3]
    return out


def resize_inplane(array: np.ndarray, size: int, order: int) -> np.ndarray:
    """Resize the in-plane axes of ``[X, Y, Z]`` to ``size x size`` (z untouched)."""
    factors = (size / array.shape[0], size / array.shape[1], 1.0)
    return ndimage.zoom(array, factors, order=order, mode="nearest", grid_mode=True)


def body_bbox(image: np.ndarray, threshold: float) -> tuple[slice, slice]:
    """In-plane bounding box of voxels above ``threshold`` over all slices (SABS border crop)."""
    fg = (image > threshold).any(axis=2)
    if not fg.any():
        raise ValueError(f"body_bbox: no voxel above {threshold}; cannot crop")
    xs, ys = np.where(fg.any(axis=1))[0], np.where(fg.any(axis=0))[0]
    return slice(xs[0], xs[-1] + 1), slice(ys[0], ys[-1] + 1)


def _mm(values: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def _affine_text(affine: np.ndarray) -> str:
    rows = ["[" + ", ".join(f"{v:.4g}" for v in row) + "]" for row in np.asarray(affine)[:3]]
    return "[" + ", ".join(rows) + "]"


def grid_difference(image: Volume, label: Volume, tolerance: float = GEOMETRY_TOLERANCE) -> str | None:
    """What differs between two voxel grids (shape, orientation, spacing, origin), None when they agree."""
    if image.array.shape != label.array.shape:
        return "shapes differ"
    if image.orientation != label.orientation:
        return f"orientation {label.orientation} vs the image's {image.orientation}"
    spacing_i, spacing_l = np.asarray(image.spacing), np.asarray(label.spacing)
    if np.any(np.abs(spacing_l - spacing_i) > tolerance * spacing_i):
        return f"spacing {_mm(spacing_l)} vs the image's {_mm(spacing_i)} mm"
    directions = np.abs(image.affine[:3, :3] / spacing_i - label.affine[:3, :3] / spacing_l)
    if directions.max() > tolerance:
        return f"axis directions differ by up to {directions.max():.4g}"
    offset = np.abs(image.affine[:3, 3] - label.affine[:3, 3])
    if offset.max() > ORIGIN_TOLERANCE * spacing_i.min():
        return f"origins differ by {offset.max():.4g} mm"
    return None


def check_same_geometry(
    image: Volume,
    label: Volume,
    image_path: str | Path,
    label_path: str | Path,
    tolerance: float = GEOMETRY_TOLERANCE,
) -> None:
    """Refuse a label whose voxel grid is not its image's (both as read, i.e. reoriented to RAS+).

    A label stored with flipped axes AND flipped data describes the same grid and passes; one whose
    affine alone is flipped (or shifted, rescaled) does not.

    Raises:
        ValueError: Naming both files, both shapes and both affines, and what differs.
    """
    difference = grid_difference(image, label, tolerance)
    if difference is not None:
        raise ValueError(
            f"label {label_path} (shape {label.array.shape}, affine {_affine_text(label.affine)}) does not "
            f"match image {image_path} (shape {image.array.shape}, affine {_affine_text(image.affine)}): "
            f"{difference}; expected the same voxel grid"
        )
