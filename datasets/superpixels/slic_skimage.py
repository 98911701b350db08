"""Reference backend: thin wrappers around ``skimage.segmentation.slic`` and ``felzenszwalb``.

These are the maps the numba and torch backends are compared against. Labels are returned from 0
(``start_label=0``) and renumbered consecutively, with the real segment count per image.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from skimage.segmentation import felzenszwalb, slic


def _consecutive(labels: np.ndarray) -> tuple[np.ndarray, int]:
    # skimage's SLIC output is already consecutive; felzenszwalb's is too, but do not rely on it.
    uniq, inv = np.unique(labels, return_inverse=True)
    return inv.reshape(labels.shape).astype(np.int32), int(uniq.size)


def _per_image(
    images: np.ndarray, segment: Callable[[np.ndarray, int | None], np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``segment(float64 image, channel_axis)`` on each image; consecutive labels and counts."""
    b, h, w, c = images.shape
    labels = np.empty((b, h, w), dtype=np.int32)
    counts = np.empty(b, dtype=np.int64)
    for i in range(b):
        # Grey goes in 2-D with channel_axis=None: skimage then uses the raw (stretched) intensity.
        image = images[i, ..., 0] if c == 1 else images[i]
        labels[i], counts[i] = _consecutive(segment(image.astype(np.float64), None if c == 1 else -1))
    return labels, counts


def slic_skimage(
    images: np.ndarray,
    n_segments: int,
    compactness: float,
    max_iter: int,
    sigma: float,
    colour_space: str,
    enforce_connectivity: bool,
    min_size_factor: float,
    max_size_factor: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Run skimage SLIC per image, with the channel axis and Lab switch set from ``colour_space``.

    Args:
        images: float batch ``[B, H, W, C]`` in [0, 1], C in {1, 3}.
        n_segments: k.
        compactness: skimage's compactness.
        max_iter: skimage's ``max_num_iter``.
        sigma: Gaussian pre-smoothing.
        colour_space: "lab" (RGB converted by skimage) or "intensity" (raw values).
        enforce_connectivity: skimage's flag.
        min_size_factor: skimage's flag.
        max_size_factor: skimage's flag.

    Returns:
        ``(labels int32 [B, H, W], counts int64 [B])``.
    """
    return _per_image(
        images,
        lambda image, channel_axis: slic(
            image,
            n_segments=int(n_segments),
            compactness=float(compactness),
            max_num_iter=int(max_iter),
            sigma=float(sigma),
            convert2lab=(colour_space == "lab") if channel_axis is not None else None,
            enforce_connectivity=bool(enforce_connectivity),
            min_size_factor=float(min_size_factor),
            max_size_factor=float(max_size_factor),
            start_label=0,
            channel_axis=channel_axis,
        ),
    )


def felzenszwalb_skimage(
    images: np.ndarray, scale: float, sigma: float, min_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Run skimage's Felzenszwalb-Huttenlocher graph segmentation per image (ALPNet: 1, 1, 400).

    Args:
        images: float batch ``[B, H, W, C]`` in [0, 1]; not stretched (scale refers to these values).
        scale: higher means larger segments.
        sigma: Gaussian pre-smoothing width.
        min_size: minimum component size, enforced by post-merging.

    Returns:
        ``(labels int32 [B, H, W], counts int64 [B])`` with labels ``0..count-1``.
    """
    return _per_image(
        images,
        lambda image, channel_axis: felzenszwalb(
            image, scale=float(scale), sigma=float(sigma), min_size=int(min_size), channel_axis=channel_axis
        ),
    )
