"""Few-shot slice geometry and intensity preparation, shared by training, the test protocol and prediction.

A RAS volume ``[X, Y, Z]`` becomes a stack of axial slices ``[Z, H, W]`` with anterior up
(:func:`ras_to_stack`), padded to a square and resized to the training size (:func:`square_resize`).
Prediction undoes both (:func:`square_unresize`, :func:`stack_to_ras`) to write masks on the input's
own grid. Intensities are clipped to a window when one is given and z-scored per volume (MR) or over
all volumes together (CT), as :class:`datasets.fewshot.datamodule.FewShotDataModule` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy import ndimage

from datasets.volumes.prepare import zscore_global, zscore_volume

Normalize = Literal["volume", "global"]


def ras_to_stack(array: np.ndarray) -> np.ndarray:
    """``[X, Y, Z]`` RAS -> ``[Z, Y, X]`` slices with anterior (high Y) in the first row (a view)."""
    return np.transpose(array, (2, 1, 0))[:, ::-1, :]


def stack_to_ras(stack: np.ndarray) -> np.ndarray:
    """Inverse of :func:`ras_to_stack` (``[Z, Y, X, ...]`` -> ``[X, Y, Z, ...]``)."""
    axes = (2, 1, 0, *range(3, stack.ndim))
    return np.ascontiguousarray(np.transpose(stack[:, ::-1], axes))


def _square_pad(h: int, w: int) -> tuple[int, tuple[int, int], tuple[int, int]]:
    side = max(h, w)
    return side, ((side - h) // 2, side - h - (side - h) // 2), ((side - w) // 2, side - w - (side - w) // 2)


def square_resize(stack: np.ndarray, size: int, order: int, fill: float) -> np.ndarray:
    """``[Z, H, W]`` -> ``[Z, size, size]``: centred padding to a square with ``fill``, then a zoom.

    Args:
        stack: Slices.
        size: Output side.
        order: Spline order (1 images, 0 labels).
        fill: Padding value.
    """
    side, pad_h, pad_w = _square_pad(*stack.shape[1:3])
    square = np.pad(stack, ((0, 0), pad_h, pad_w), constant_values=fill)
    if side == size:
        return np.ascontiguousarray(square)
    return ndimage.zoom(square, (1.0, size / side, size / side), order=order, mode="nearest", grid_mode=True)


def square_unresize(stack: np.ndarray, shape: tuple[int, int], order: int) -> np.ndarray:
    """Inverse of :func:`square_resize`: ``[Z, size, size]`` back to ``[Z, H, W]`` (``shape = (H, W)``).

    Raises:
        ValueError: If ``stack`` is not a stack of square slices.
    """
    if stack.ndim != 3 or stack.shape[1] != stack.shape[2]:
        raise ValueError(f"square_unresize: expected [Z, size, size] slices, got shape {stack.shape}")
    side, pad_h, pad_w = _square_pad(*shape)
    size = stack.shape[1]
    if side != size:
        stack = ndimage.zoom(
            stack, (1.0, side / size, side / size), order=order, mode="nearest", grid_mode=True
        )
    return np.ascontiguousarray(stack[:, pad_h[0] : pad_h[0] + shape[0], pad_w[0] : pad_w[0] + shape[1]])


def normalise_volumes(
    arrays: Sequence[np.ndarray], windows: Sequence[tuple[float, float] | None], normalize: Normalize
) -> list[np.ndarray]:
    """Clip each volume to its window (None: no clip), then z-score per volume or over all of them.

    Raises:
        ValueError: For an unknown ``normalize`` or a window count that does not match the volumes.
    """
    if len(windows) != len(arrays):
        raise ValueError(f"normalise_volumes: {len(arrays)} volumes but {len(windows)} windows")
    clipped = [a if w is None else np.clip(a, *w) for a, w in zip(arrays, windows, strict=True)]
    if normalize == "global":
        return zscore_global(clipped)
    if normalize == "volume":
        return [zscore_volume(a) for a in clipped]
    raise ValueError(f"normalize must be 'volume' or 'global', got {normalize!r}")


def image_slices(normalised: np.ndarray, size: int) -> np.ndarray:
    """A normalised RAS volume as float32 training slices ``[Z, size, size]`` (padding = its minimum)."""
    return square_resize(ras_to_stack(normalised), size, order=1, fill=float(normalised.min())).astype(
        np.float32
    )


def label_slices(label: np.ndarray, size: int) -> np.ndarray:
    """A RAS label volume as int64 training slices ``[Z, size, size]`` (nearest, padding 0)."""
    return square_resize(ras_to_stack(label), size, order=0, fill=0).astype(np.int64)
