"""The model-input preprocessing shared by validation, test and prediction, and what prediction needs.

Training, validation, test and ``run.py --predict`` turn an image read by
:func:`datasets.image_io.read_image` (float32 ``[0, 1]``, ``H x W x C``) into the network's input with
the same two steps: the evaluation resize of :func:`datasets.transforms.build_transforms` and
:func:`normalise_image` (``(x - 0.5) / 0.5``, values in ``[-1, 1]``). :func:`eval_tensor` is both in
one call. A volume slice is first mapped to ``[0, 1]`` by :func:`volume_slice_to_unit` (the CT window,
or the volume's percentile range) in the view the training slices were made in (:func:`to_view`).

:class:`InferenceConfig` is the data section's ``inference`` block: what a checkpoint must record so
that it alone is enough to predict new images and volumes.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import albumentations as A
import numpy as np
import torch
from torch import Tensor

from datasets.transforms import build_transforms

# The input normalisation of every task: [0, 1] -> [-1, 1].
NORM_MEAN = 0.5
NORM_STD = 0.5


@dataclass
class InferenceConfig:
    """How a trained model is applied to new data (``data.init_args.inference``; saved in checkpoints)."""

    mode: Literal["resize", "sliding"] = "resize"
    """``resize``: each image is resized to ``image_size`` as in training (the default); ``sliding``:
    windows of ``image_size`` at the native resolution, Gaussian-blended."""

    overlap: float = 0.5
    """Fraction of a window shared by neighbours in ``sliding`` mode."""

    window: list[float] | None = None
    """Intensity window ``[low, high]`` mapped to ``[0, 1]`` for volumes (CT in HU: the window the
    training slices were made with, e.g. ``[-125, 275]``); None: each volume's percentile range."""

    percentiles: list[float] | None = None
    """``[low, high]`` percentiles of the volume mapped to ``[0, 1]`` when ``window`` is None
    (default ``[0.0, 99.5]``)."""

    slice_axis: int = 2
    """Axis of the RAS-canonical volume the 2D model's slices lie across (2: axial)."""

    view: Literal["radiological", "array"] = "radiological"
    """How a slice was turned into the training image: ``radiological`` (anterior up, patient right on
    the image left, as the embedded sample's slices) or ``array`` (the array's own axes)."""

    reorient: bool = True
    """Read volumes on their closest RAS axes (``nibabel.as_closest_canonical``: axis flips and swaps,
    no resampling), so ``slice_axis: 2`` is axial whatever the file's order. False keeps the stored
    voxel axes: for oblique stacks such as cardiac short-axis MR (ACDC), whose slices are the stored
    z axis whichever RAS axis it is closest to."""

    context: int = 0
    """2.5D input: the ``context`` slices on each side of a slice are its other channels (the network
    takes ``2 * context + 1`` channels; slices past the volume's ends repeat the end slice). 0: one
    slice, repeated to the network's channels."""


def normalise_image(image: np.ndarray) -> Tensor:
    """The model-input normalisation: ``[0, 1]`` ``H x W (x C)`` -> ``[C, H, W]`` float32 in ``[-1, 1]``.

    Args:
        image: float array in ``[0, 1]``, ``H x W`` or ``H x W x C``.

    Returns:
        The normalised tensor.
    """
    if image.ndim == 2:
        image = image[:, :, None]
    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))
    return (tensor - NORM_MEAN) / NORM_STD


def eval_tensor(image: np.ndarray, image_size: int | Sequence[int] | None) -> Tensor:
    """The evaluation preprocessing of one image: resize to ``image_size`` (as val/test), normalise.

    Args:
        image: float32 ``H x W x C`` in ``[0, 1]`` (``read_image``'s output).
        image_size: Training size; None keeps the native size (sliding-window inference).

    Returns:
        ``[C, h, w]`` float32 network input.
    """
    if image_size is not None:
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(int(s) for s in image_size)
        image = _eval_transform(size)(image=image)["image"]
    return normalise_image(image)


@functools.lru_cache(maxsize=8)
def _eval_transform(size: tuple[int, int]) -> A.Compose:
    # The val/test pipeline (a deterministic resize), built once per size.
    return build_transforms(None, size, "test")


def to_view(slice_2d: np.ndarray, view: str) -> np.ndarray:
    """A slice of the canonical volume as the training image (see :attr:`InferenceConfig.view`).

    Shape:
        ``(A, B[, C])`` -> ``(B, A[, C])`` for ``radiological``, unchanged for ``array``.
    """
    if view == "radiological":
        return np.ascontiguousarray(np.swapaxes(slice_2d, 0, 1)[::-1, ::-1])
    if view == "array":
        return slice_2d
    raise ValueError(f"unknown view {view!r}; expected 'radiological' or 'array'")


def from_view(image_2d: np.ndarray, view: str) -> np.ndarray:
    """Inverse of :func:`to_view` (a predicted mask back onto the slice's voxel grid)."""
    if view == "radiological":
        return np.ascontiguousarray(np.swapaxes(image_2d[::-1, ::-1], 0, 1))
    if view == "array":
        return image_2d
    raise ValueError(f"unknown view {view!r}; expected 'radiological' or 'array'")


def intensity_range(volume: np.ndarray, config: InferenceConfig) -> tuple[float, float]:
    """The ``(low, high)`` intensities mapped to 0 and 1 for a volume.

    Raises:
        ValueError: If the range is empty (a constant volume without a window) or the window is bad.
    """
    if config.window is not None:
        if len(config.window) != 2 or config.window[0] >= config.window[1]:
            raise ValueError(f"inference.window must be [low, high] with low < high, got {config.window}")
        return float(config.window[0]), float(config.window[1])
    lo_p, hi_p = config.percentiles or (0.0, 99.5)
    low, high = (float(v) for v in np.percentile(volume, [lo_p, hi_p]))
    if high <= low:
        raise ValueError(
            f"volume intensities have an empty {lo_p}-{hi_p} percentile range [{low}, {high}]; "
            "set --window LOW HIGH"
        )
    return low, high


def volume_slice_to_unit(slice_2d: np.ndarray, low: float, high: float) -> np.ndarray:
    """Clip a slice to ``[low, high]`` and scale it to float32 ``[0, 1]``."""
    return ((np.clip(slice_2d.astype(np.float32), low, high) - low) / (high - low)).astype(np.float32)


def volume_slice_image(
    volume: np.ndarray,
    axis: int,
    index: int,
    view: str,
    window: tuple[float, float],
    channels: int,
    context: int = 0,
) -> np.ndarray:
    """One slice of a canonical volume as a 2D model's input: float32 ``H x W x channels`` in ``[0, 1]``.

    The one function training slices (:mod:`datasets.volume_slices`) and ``run.py --predict`` use.

    Args:
        volume: RAS-canonical voxels ``[X, Y, Z]`` (or ``[X, Y, Z, C]`` with the network's channels).
        axis: The slicing axis.
        index: The slice.
        view: :attr:`InferenceConfig.view`.
        window: Intensities mapped to 0 and 1 (:func:`intensity_range`).
        channels: The network's input channels.
        context: Neighbouring slices per side stacked as channels (:attr:`InferenceConfig.context`).

    Raises:
        ValueError: If ``context > 0`` and ``channels != 2 * context + 1``, or the axis is not 0, 1, 2.
    """
    if axis not in (0, 1, 2):
        raise ValueError(f"inference.slice_axis must be 0, 1 or 2, got {axis}")
    if context > 0 and channels != 2 * context + 1:
        raise ValueError(
            f"inference.context {context} stacks {2 * context + 1} slices "
            f"but the network takes {channels} channels"
        )
    if volume.ndim == 4:  # [X, Y, Z, C]: the channels are the volume's own
        if context:
            raise ValueError("inference.context needs a 3D volume; this one has channels (4D)")
        return np.ascontiguousarray(
            to_view(volume_slice_to_unit(np.take(volume, index, axis=axis), *window), view)
        )
    last = volume.shape[axis] - 1
    picks = [min(max(index + d, 0), last) for d in range(-context, context + 1)]
    planes = [to_view(volume_slice_to_unit(np.take(volume, i, axis=axis), *window), view) for i in picks]
    image = np.stack(planes, axis=-1)
    if context == 0 and channels != 1:
        image = np.repeat(image, channels, axis=2)
    return np.ascontiguousarray(image)
