"""Superpixel pseudolabels (SSL-ALPNet): Felzenszwalb per slice inside the body mask, labels 1..N.

Maps are kept in memory or written as NIfTI next to the scan, named after every parameter that
changes them (``superpix_fz_s<scale>_g<sigma>_m<min_size>_t<threshold>_<size>.nii.gz``), so a map made
with other parameters is never reused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datasets.superpixels import body_mask, superpixels
from datasets.volumes.io import read_nifti, write_nifti


def slice_stack_pseudolabels(
    slices: np.ndarray,
    scale: float = 1.0,
    sigma: float = 1.0,
    min_size: int = 400,
    body_threshold: float | None = None,
) -> np.ndarray:
    """Pseudolabels of a stack of 2D slices.

    Args:
        slices: ``[Z, H, W]`` intensities (any range: min-max scaled to [0, 1] over the whole stack,
            so ``scale`` means the same on every slice).
        scale, sigma, min_size: Felzenszwalb parameters (ALPNet: 1, 1, 400 at 256 px).
        body_threshold: Body-mask threshold in the [0, 1] scaled units; None = Otsu per slice.

    Returns:
        int32 ``[Z, H, W]``: 0 outside the body, 1..N inside (every segment kept).
    """
    x = slices.astype(np.float64)
    lo, hi = float(x.min()), float(x.max())
    x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    masks = np.stack([body_mask(s, threshold=body_threshold) for s in x])
    labels, _ = superpixels(
        x.astype(np.float32), method="felzenszwalb", backend="skimage", mask=masks,
        scale=scale, sigma=sigma, min_size=min_size,
    )  # fmt: skip
    return labels.astype(np.int32)


def pseudolabel_name(
    scale: float, sigma: float, min_size: int, body_threshold: float | None, size: int
) -> str:
    """File name encoding every parameter of the map."""
    thr = "otsu" if body_threshold is None else f"{body_threshold:g}"
    return f"superpix_fz_s{scale:g}_g{sigma:g}_m{min_size}_t{thr}_{size}.nii.gz"


def cached_pseudolabels(slices: np.ndarray, path: str | Path | None, **params) -> np.ndarray:
    """Read ``path`` when it exists (shape checked), else compute and (when ``path``) write it.

    Shape:
        ``slices [Z, H, W]`` -> ``[Z, H, W]`` (stored in NIfTI as ``[H, W, Z]`` with an identity affine).

    Raises:
        ValueError: When a stored map's shape differs from ``slices``.
    """
    if path is not None and Path(path).is_file():
        labels = np.moveaxis(read_nifti(path, canonical=False, dtype=np.int32).array, -1, 0)
        if labels.shape != slices.shape:
            raise ValueError(
                f"pseudolabels {path}: shape {labels.shape} differs from the slices {slices.shape}"
            )
        return labels
    labels = slice_stack_pseudolabels(slices, **params)
    if path is not None:
        write_nifti(path, np.moveaxis(labels, 0, -1).astype(np.int32), np.eye(4))
    return labels
