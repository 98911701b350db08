"""Native-resolution patch sampling with foreground oversampling (``data.sampling: patch``).

nnU-Net's recipe for small structures: train on patches cut from the image at its native
resolution instead of resizing the whole image, centre a share of them (``foreground_fraction``)
on a random pixel of a random foreground class present in the mask, pad images smaller than the
patch, and evaluate with overlapping windows over the whole image
(:func:`models.inference.sliding_window_inference`).

The patch of a sample is a deterministic function of ``(seed, epoch, index)`` (:func:`patch_rng`),
like the augmentations, so a seed reproduces the patches whatever the worker count, and a run
resumed mid-epoch gets the patches the uninterrupted run would have had.

Superpixel maps (``data.superpixels``) are made once per whole image (read from the cache or
computed in the worker, at ``superpixels.size``) and cropped with the patch, not computed per
patch: a per-image map stays cacheable (patches move every epoch, so per-patch maps could never
be cached and SLIC would run for every sample of every epoch), every patch of an image sees the
same segments, and the map matches what ``sp_generation.py`` writes. Maps are padded by edge
replication (the border segments extend into the padding; no new segment id appears).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from datasets.patch_scale import ScaleSource
from datasets.records import SampleRecord

SAMPLING_MODES = ("resize", "patch")
# Stream word separating the patch draws from the augmentation seeds of the same sample.
_PATCH_STREAM = 0x9A7C

# (targets, record, rng) -> targets: a spatial step applied before the albumentations pipeline.
SpatialStep = Callable[[dict[str, np.ndarray], SampleRecord, np.random.Generator], dict[str, np.ndarray]]


@dataclass
class PatchConfig:
    """The ``data.patches`` block: how patches are cut and how patch-trained models are evaluated."""

    patch_size: int | list[int] | None = None
    """Patch side (or ``[height, width]``) fed to the network; None = the data's ``image_size``."""

    foreground_fraction: float = 0.33
    """Share of training patches centred on a random pixel of a random foreground class present in
    the mask (nnU-Net: 33%); the rest are placed uniformly. Images without foreground (or without a
    mask) always get a uniform patch."""

    pad_value: float = 0.0
    """Intensity (in the ``[0, 1]`` units of the read image) of the padding of images smaller than
    the patch; masks are padded with background, superpixel maps by edge replication."""

    overlap: float = 0.5
    """Sliding-window overlap of validation and test, in ``[0, 1)``."""

    sw_batch_size: int = 4
    """Windows per forward pass in sliding-window validation and test."""

    target_spacing_mm: float | None = None
    """Common pixel size to train and evaluate at; needs ``spacing_mm`` or ``spacing_file``."""

    spacing_mm: float | None = None
    """Pixel size of every image (mm), when one value holds for the dataset."""

    spacing_file: str | None = None
    """JSON ``{sample id: pixel size in mm}`` (images of different resolutions)."""

    scale_jitter: list[float] | None = None
    """``[low, high]`` random zoom factor of each training patch (e.g. ``[0.8, 1.25]``), seeded."""

    def __post_init__(self) -> None:
        check_patch_config(self)

    def size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """The patch ``(height, width)``: ``patch_size``, or ``image_size`` when it is None."""
        if self.patch_size is None:
            return image_size
        if isinstance(self.patch_size, int):
            return self.patch_size, self.patch_size
        return int(self.patch_size[0]), int(self.patch_size[1])


def _fail(key: str, expected: str, value: Any) -> None:
    raise ValueError(f"data.patches.{key} must be {expected}, got {value!r}")


def _positive(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def check_patch_config(config: PatchConfig) -> None:
    """Check every field of a :class:`PatchConfig`.

    Raises:
        ValueError: One line naming the first bad key, what it must be and the value given.
    """
    size = config.patch_size
    if size is not None and not (
        _positive(size) or (isinstance(size, (list, tuple)) and len(size) == 2 and all(map(_positive, size)))
    ):
        _fail("patch_size", "a positive int or [height, width] of positive ints (or null)", size)
    if (
        not isinstance(config.foreground_fraction, (int, float))
        or not 0.0 <= config.foreground_fraction <= 1.0
    ):
        _fail("foreground_fraction", "a number in [0, 1]", config.foreground_fraction)
    if not 0.0 <= config.overlap < 1.0:
        _fail("overlap", "a number in [0, 1)", config.overlap)
    if not _positive(config.sw_batch_size):
        _fail("sw_batch_size", "a positive int", config.sw_batch_size)
    for key in ("target_spacing_mm", "spacing_mm"):
        value = getattr(config, key)
        if value is not None and not (isinstance(value, (int, float)) and value > 0):
            _fail(key, "a positive number of mm (or null)", value)
    if config.target_spacing_mm is not None and config.spacing_mm is None and config.spacing_file is None:
        _fail("spacing_mm", "set (or spacing_file) when target_spacing_mm is set", None)
    if config.spacing_mm is not None and config.spacing_file is not None:
        _fail("spacing_file", "null when spacing_mm is set (give one of them)", config.spacing_file)
    jitter = config.scale_jitter
    if jitter is not None and not (
        isinstance(jitter, (list, tuple)) and len(jitter) == 2 and 0 < jitter[0] <= jitter[1]
    ):
        _fail("scale_jitter", "[low, high] with 0 < low <= high (or null)", jitter)


def check_sampling(sampling: str, patches: PatchConfig | None) -> None:
    """Check ``data.sampling`` against the ``data.patches`` block.

    Raises:
        ValueError: For an unknown mode, or a ``patches`` block given with ``sampling: resize``.
    """
    if sampling not in SAMPLING_MODES:
        raise ValueError(f"data.sampling must be one of {SAMPLING_MODES}, got {sampling!r}")
    if sampling == "resize" and patches is not None:
        raise ValueError("data.patches is set but data.sampling is 'resize'; set data.sampling: patch")


def patch_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one sample's patch draw, a function of ``(seed, epoch, index)`` only."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch), int(index), _PATCH_STREAM]))


def choose_corner(
    mask: np.ndarray | None,
    image_hw: tuple[int, int],
    side: tuple[int, int],
    foreground_fraction: float,
    rng: np.random.Generator,
) -> tuple[int, int]:
    """Top-left corner of a patch in the image padded (centred) to at least ``side``.

    Args:
        mask: Class-index mask ``(H, W)`` or None (unlabelled).
        image_hw: ``(H, W)`` of the image.
        side: Patch ``(height, width)`` in image pixels.
        foreground_fraction: Probability of centring the patch on a foreground pixel.
        rng: The sample's generator (:func:`patch_rng`).

    Returns:
        ``(y, x)`` in padded coordinates; the padded image is ``max(H, h) x max(W, w)`` with the
        image at offset ``((max(H, h) - H) // 2, (max(W, w) - W) // 2)``.
    """
    padded = [max(n, s) for n, s in zip(image_hw, side, strict=True)]
    offset = [(p - n) // 2 for p, n in zip(padded, image_hw, strict=True)]
    centre = None
    if rng.random() < foreground_fraction and mask is not None:
        classes = np.unique(mask)
        classes = classes[classes > 0]
        if classes.size:
            cls = classes[rng.integers(classes.size)]
            pixels = np.flatnonzero(mask == cls)
            flat = int(pixels[rng.integers(pixels.size)])
            centre = (flat // mask.shape[1] + offset[0], flat % mask.shape[1] + offset[1])
    if centre is None:
        return tuple(int(rng.integers(p - s + 1)) for p, s in zip(padded, side, strict=True))  # type: ignore[return-value]
    # Clipping keeps the chosen pixel inside the patch (the patch never leaves the padded image).
    return tuple(  # type: ignore[return-value]
        int(np.clip(c - s // 2, 0, p - s)) for c, s, p in zip(centre, side, padded, strict=True)
    )


def crop_padded(
    array: np.ndarray, corner: tuple[int, int], side: tuple[int, int], fill: float | None
) -> np.ndarray:
    """Cut ``side`` at ``corner`` of ``array`` padded as :func:`choose_corner` describes.

    Args:
        array: ``(H, W)`` or ``(H, W, C)``.
        corner: ``(y, x)`` in padded coordinates.
        side: ``(height, width)``.
        fill: Constant of the padding; None replicates the edge (label maps).

    Returns:
        The ``(h, w[, C])`` patch, same dtype.
    """
    starts, pads = [], []
    for axis, (c, s) in enumerate(zip(corner, side, strict=True)):
        n = array.shape[axis]
        origin = c - (max(n, s) - n) // 2  # corner in image coordinates (negative inside the padding)
        lo, hi = max(origin, 0), min(origin + s, n)
        starts.append(slice(lo, hi))
        pads.append((lo - origin, origin + s - hi))
    part = array[starts[0], starts[1]]
    if not any(sum(p) for p in pads):
        return np.ascontiguousarray(part)
    widths = pads + [(0, 0)] * (array.ndim - 2)
    if fill is None:
        return np.pad(part, widths, mode="edge")
    return np.pad(part, widths, mode="constant", constant_values=np.asarray(fill, dtype=array.dtype))


class PatchSampler:
    """Spatial step of the training stage: one (possibly zoomed) patch per sample.

    The patch is cut at native resolution; with a target spacing or scale jitter the cut region is
    ``patch / zoom`` image pixels, which the training pipeline's resize (to ``patch``) then zooms.

    Args:
        config: The ``data.patches`` block.
        patch: Patch ``(height, width)`` fed to the network.
        scales: Per-image zoom to the target spacing (None: native resolution).
    """

    def __init__(self, config: PatchConfig, patch: tuple[int, int], scales: ScaleSource | None) -> None:
        self.config = config
        self.patch = patch
        self.scales = scales

    def __call__(
        self, targets: dict[str, np.ndarray], record: SampleRecord, rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        """Crop ``image``, ``mask`` and every extra map to the same patch."""
        zoom = self.scales.zoom(record) if self.scales is not None else 1.0
        if self.config.scale_jitter is not None:
            low, high = self.config.scale_jitter
            zoom *= float(np.exp(rng.uniform(np.log(low), np.log(high))))
        side = tuple(max(1, round(p / zoom)) for p in self.patch)
        image = targets["image"]
        corner = choose_corner(
            targets.get("mask"), image.shape[:2], side, self.config.foreground_fraction, rng
        )
        out = {}
        for name, array in targets.items():
            fill = self.config.pad_value if name == "image" else (0 if name == "mask" else None)
            out[name] = crop_padded(array, corner, side, fill)
        return out
