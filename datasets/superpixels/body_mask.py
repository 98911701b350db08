"""Foreground (body) mask of a medical slice, as SSL-ALPNet builds it for its pseudolabels.

Threshold (Otsu unless given), keep the largest 8-connected component, fill its holes.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu


def body_mask(image: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Largest bright connected region of an image, holes filled.

    Args:
        image: grey ``[H, W]`` or multi-channel ``[H, W, C]`` image (channels are averaged), any
            real dtype; the threshold is in the image's own units.
        threshold: pixels strictly above it are foreground; None picks Otsu's threshold. A constant
            image has no foreground.

    Returns:
        bool mask ``[H, W]``; all False when nothing is above the threshold.

    Shape:
        ``[H, W]`` or ``[H, W, C]`` -> ``[H, W]``.

    Raises:
        ValueError: for other dimensions, an empty image or non-finite values.
    """
    image = np.asarray(image)
    if image.ndim == 3:
        image = image.astype(np.float64).mean(axis=2)
    if image.ndim != 2 or image.size == 0:
        raise ValueError(
            f"body_mask: expected a non-empty [H, W] or [H, W, C] image, got shape {image.shape}"
        )
    grey = image.astype(np.float64)
    if not np.isfinite(grey).all():
        raise ValueError("body_mask: image contains NaN or infinite values")
    if threshold is None:
        if grey.min() == grey.max():
            return np.zeros(grey.shape, dtype=bool)
        threshold = float(threshold_otsu(grey))
    fg = grey > threshold
    comp, n = ndimage.label(fg, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return fg
    sizes = np.bincount(comp.ravel())
    sizes[0] = 0  # background
    largest = comp == int(np.argmax(sizes))
    return ndimage.binary_fill_holes(largest)
