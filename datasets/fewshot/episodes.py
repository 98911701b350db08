"""Self-supervised episodes: one superpixel of a slice is the foreground class.

Support and query are two independent augmentations of the same slice and its superpixel mask
(affine, elastic, gamma). Every superpixel label 1..N of at least ``min_fg_pixels`` pixels can be drawn
(none dropped, the last one included), so the foreground is never empty.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torch.utils.data import Dataset, Sampler


@dataclass(frozen=True)
class AugmentParams:
    """SSL-ALPNet's augmentation ranges.

    Attributes:
        rotate: Max rotation in degrees (uniform in ``[-rotate, rotate]``).
        shift: Max translation in pixels per axis.
        shear: Max shear in degrees.
        scale: Zoom range.
        elastic_alpha: Displacement magnitude (pixels) of the smoothed random field.
        elastic_sigma: Gaussian smoothing of the field (pixels).
        gamma: Gamma range applied to the min-max scaled image.
    """

    rotate: float = 5.0
    shift: float = 5.0
    shear: float = 5.0
    scale: tuple[float, float] = (0.9, 1.2)
    elastic_alpha: float = 10.0
    elastic_sigma: float = 5.0
    gamma: tuple[float, float] = (0.5, 1.5)


def _coords(shape: tuple[int, int], rng: np.random.Generator, p: AugmentParams) -> np.ndarray:
    # Output pixel -> input coordinate: inverse affine about the centre plus an elastic field.
    h, w = shape
    rot, shear = np.deg2rad(rng.uniform(-p.rotate, p.rotate)), np.deg2rad(rng.uniform(-p.shear, p.shear))
    zoom = rng.uniform(*p.scale)
    shift = rng.uniform(-p.shift, p.shift, size=2)
    forward = zoom * np.array([[np.cos(rot), -np.sin(rot + shear)], [np.sin(rot), np.cos(rot + shear)]])
    inverse = np.linalg.inv(forward)
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    centre = np.array([(h - 1) / 2, (w - 1) / 2])
    pts = np.stack([yy.ravel() - centre[0] - shift[0], xx.ravel() - centre[1] - shift[1]])
    src = (inverse @ pts).reshape(2, h, w) + centre[:, None, None]
    for axis in range(2):
        field = ndimage.gaussian_filter(rng.uniform(-1, 1, size=(h, w)), p.elastic_sigma, mode="constant")
        peak = np.abs(field).max()
        src[axis] += p.elastic_alpha * field / (peak if peak > 0 else 1.0)
    return src


def augment_pair(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, params: AugmentParams | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One random geometric (image + mask) and gamma (image) augmentation.

    Args:
        image: ``[H, W]`` float slice.
        mask: ``[H, W]`` binary mask.
        rng: Source of every random choice.
        params: Ranges (default: SSL-ALPNet's).

    Returns:
        ``(image, mask)`` augmented, same shapes; the mask stays binary (nearest interpolation).
    """
    p = params or AugmentParams()
    src = _coords(image.shape, rng, p)
    fill = float(image.min())
    out = ndimage.map_coordinates(image.astype(np.float64), src, order=1, mode="constant", cval=fill)
    out_mask = ndimage.map_coordinates(mask.astype(np.uint8), src, order=0, mode="constant", cval=0)
    lo, hi = float(out.min()), float(out.max())
    if hi > lo:
        out = ((out - lo) / (hi - lo)) ** rng.uniform(*p.gamma) * (hi - lo) + lo
    return out.astype(np.float32), out_mask.astype(np.uint8)


def eligible_labels(pseudo: np.ndarray, min_fg_pixels: int) -> np.ndarray:
    """Superpixel labels (>= 1) with at least ``min_fg_pixels`` pixels; label 0 is outside the body."""
    counts = np.bincount(pseudo.ravel())
    labels = np.arange(counts.size)
    return labels[(labels >= 1) & (counts >= min_fg_pixels)]


def sample_episode(
    image: np.ndarray,
    pseudo: np.ndarray,
    rng: np.random.Generator,
    min_fg_pixels: int = 1,
    augment: AugmentParams | None = AugmentParams(),
    max_redraws: int = 10,
) -> dict[str, np.ndarray | int]:
    """Draw one foreground superpixel of a slice and make the support/query pair.

    Args:
        image: ``[H, W]`` slice.
        pseudo: ``[H, W]`` superpixel labels (0 outside the body, 1..N inside).
        rng: Generator for every choice.
        min_fg_pixels: Smallest superpixel that may be drawn.
        augment: Augmentation ranges, or None for identical un-augmented copies.
        max_redraws: An augmentation that pushes the whole superpixel out of view is redrawn; after
            this many tries the un-augmented copy is used (so the foreground is never empty).

    Returns:
        ``support_image``, ``support_mask``, ``query_image``, ``query_mask`` (``[H, W]``) and ``label``.

    Raises:
        ValueError: When no superpixel has ``min_fg_pixels`` pixels.
    """
    labels = eligible_labels(pseudo, min_fg_pixels)
    if labels.size == 0:
        raise ValueError(f"sample_episode: no superpixel with >= {min_fg_pixels} pixels in this slice")
    label = int(labels[rng.integers(0, labels.size)])
    fg = (pseudo == label).astype(np.uint8)
    out: dict[str, np.ndarray | int] = {"label": label}
    for role in ("support", "query"):
        img, msk = image.astype(np.float32), fg
        if augment is not None:
            for _ in range(max_redraws):
                img, msk = augment_pair(image, fg, rng, augment)
                if msk.any():
                    break
            else:
                img, msk = image.astype(np.float32), fg
        out[f"{role}_image"], out[f"{role}_mask"] = img, msk
    return out


def to_three_channels(image: np.ndarray) -> torch.Tensor:
    """Grey ``[H, W]`` -> float tensor ``[3, H, W]`` (the backbone expects RGB)."""
    return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None].repeat(3, 1, 1)


class EpochIndexSampler(Sampler[int]):
    """Yields ``epoch * length + i`` so every epoch draws new episodes (Lightning calls set_epoch)."""

    def __init__(self, length: int) -> None:
        self.length, self.epoch = length, 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's block of episode indices."""
        self.epoch = epoch

    def __iter__(self):
        start = self.epoch * self.length
        return iter(range(start, start + self.length))

    def __len__(self) -> int:
        return self.length


class PseudolabelEpisodes(Dataset):
    """Episodes drawn from the pseudolabels of training slices; episode ``i`` is a pure function of (seed, i).

    Args:
        images: Per scan ``[Z, H, W]`` normalised slices.
        pseudolabels: Per scan ``[Z, H, W]`` superpixel labels.
        keep: Per scan bool ``[Z]``: slices allowed in training (setting 2 removes test classes).
        length: Episodes per epoch.
        seed: Base seed.
        min_fg_pixels: Smallest superpixel drawn.
        augment: Augmentation ranges or None.

    Raises:
        ValueError: When no slice has a drawable superpixel.
    """

    def __init__(
        self,
        images: list[np.ndarray],
        pseudolabels: list[np.ndarray],
        keep: list[np.ndarray],
        length: int,
        seed: int = 0,
        min_fg_pixels: int = 1,
        augment: AugmentParams | None = AugmentParams(),
    ) -> None:
        self.images, self.pseudolabels = images, pseudolabels
        self.length, self.seed, self.min_fg_pixels, self.augment = length, seed, min_fg_pixels, augment
        self.pool = [
            (s, z)
            for s, (pl, k) in enumerate(zip(pseudolabels, keep, strict=True))
            for z in range(pl.shape[0])
            if k[z] and eligible_labels(pl[z], min_fg_pixels).size > 0
        ]
        if not self.pool:
            raise ValueError(
                f"PseudolabelEpisodes: no training slice has a superpixel of >= {min_fg_pixels} pixels "
                "(check the pseudolabel parameters, min_fg_pixels and the setting-2 exclusions)"
            )

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index])
        scan, z = self.pool[int(rng.integers(0, len(self.pool)))]
        ep = sample_episode(
            self.images[scan][z], self.pseudolabels[scan][z], rng, self.min_fg_pixels, self.augment
        )
        return {
            "support_image": to_three_channels(ep["support_image"]),
            "support_mask": torch.from_numpy(ep["support_mask"].astype(np.int64)),
            "query_image": to_three_channels(ep["query_image"]),
            "query_mask": torch.from_numpy(ep["query_mask"].astype(np.int64)),
            "slice": torch.tensor([scan, z, int(ep["label"])]),
        }
