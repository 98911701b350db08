"""Superpixel masking policies: which superpixels of an image get masked (autoSMIM's (k, n) policy).

Every label present in the map is drawable (autoSMIM and SSL-ALPNet drew with an exclusive
``randint`` and never picked the last superpixel, and dropped label 0). Randomness always comes
from an explicit generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch


@dataclass(frozen=True)
class MaskResult:
    """A sampled superpixel mask.

    Attributes:
        mask: Bool ``(H, W)``, True where a chosen superpixel lies.
        ids: The chosen superpixel labels, in the order they were drawn.
        masked_fraction: Fraction of all ``H * W`` pixels that are masked.
        clamped: True if the request exceeded what the map offers and was clamped to it.
    """

    mask: np.ndarray
    ids: np.ndarray
    masked_fraction: float
    clamped: bool = False


def _drawable_ids(labels: np.ndarray, ignore_label: int | None) -> tuple[np.ndarray, np.ndarray]:
    ids, areas = np.unique(labels, return_counts=True)
    if ignore_label is not None:
        keep = ids != ignore_label
        ids, areas = ids[keep], areas[keep]
    return ids, areas


def sample_superpixel_mask(
    labels: np.ndarray,
    n: int | None = None,
    ratio: float | None = None,
    *,
    rng: np.random.Generator,
    on_excess: Literal["error", "clamp"] = "error",
    ignore_label: int | None = None,
) -> MaskResult:
    """Mask ``n`` random superpixels, or random superpixels until ``ratio`` of the image is masked.

    Args:
        labels: Superpixel map; its distinct values (minus ``ignore_label``) are the real superpixels.
        n: Number of distinct superpixels to mask, drawn uniformly without replacement.
        ratio: Alternative to ``n``: add random superpixels until the masked area is at least
            ``ratio`` of ``H * W``; must lie in ``(0, 1)``.
        rng: Source of randomness.
        on_excess: What to do if ``n`` exceeds the number of real superpixels, or ``ratio`` exceeds
            the area they cover: ``error`` raises, ``clamp`` masks all of them and sets ``clamped``.
        ignore_label: A label that is never masked (e.g. 0 outside a body mask).

    Returns:
        The mask, the chosen ids and the masked fraction.

    Shape:
        labels: ``(H, W)``; mask: ``(H, W)`` bool.

    Raises:
        ValueError: If not exactly one of ``n``/``ratio`` is given, ``n < 1``, ``ratio`` is outside
            ``(0, 1)``, ``labels`` is not 2D integer, ``on_excess`` is unknown, or the request exceeds
            the map with ``on_excess="error"``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 2D integer array, got shape {labels.shape} dtype {labels.dtype}")
    if (n is None) == (ratio is None):
        raise ValueError(f"give exactly one of n or ratio, got n={n!r}, ratio={ratio!r}")
    if on_excess not in ("error", "clamp"):
        raise ValueError(f"on_excess must be 'error' or 'clamp', got {on_excess!r}")
    ids, areas = _drawable_ids(labels, ignore_label)
    if n is not None:
        chosen, clamped = _choose_count(ids, int(n), rng, on_excess)
    else:
        chosen, clamped = _choose_ratio(ids, areas, float(ratio), labels.size, rng, on_excess)
    mask = np.isin(labels, chosen)
    return MaskResult(mask=mask, ids=chosen, masked_fraction=float(mask.mean()), clamped=clamped)


def _choose_count(
    ids: np.ndarray, n: int, rng: np.random.Generator, on_excess: str
) -> tuple[np.ndarray, bool]:
    if n < 1:
        raise ValueError(f"n must be >= 1 superpixel, got n={n}")
    clamped = False
    if n > len(ids):
        if on_excess == "error":
            raise ValueError(
                f"cannot mask n={n} superpixels: the map has only {len(ids)} real superpixels "
                "(lower n, or pass on_excess='clamp')"
            )
        n, clamped = len(ids), True
    return rng.choice(ids, size=n, replace=False), clamped


def _choose_ratio(
    ids: np.ndarray, areas: np.ndarray, ratio: float, total: int, rng: np.random.Generator, on_excess: str
) -> tuple[np.ndarray, bool]:
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"ratio must lie in (0, 1), got ratio={ratio}")
    order = rng.permutation(len(ids))
    covered = np.cumsum(areas[order])
    target = ratio * total
    if len(ids) == 0 or covered[-1] < target:
        available = float(covered[-1]) / total if len(ids) else 0.0
        if on_excess == "error":
            raise ValueError(
                f"cannot mask ratio={ratio}: the drawable superpixels cover only {available:.4f} of the image"
            )
        return ids[order], True
    # First prefix whose area reaches the target: greedy random addition.
    stop = int(np.searchsorted(covered, target, side="left")) + 1
    return ids[order[:stop]], False


def mask_superpixels_torch(
    labels: torch.Tensor,
    n: int,
    generator: torch.Generator,
    counts: torch.Tensor,
    label_offset: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask ``n`` random superpixels per image of a batch, fully vectorised (GPU path).

    Superpixel labels of image ``b`` must be ``label_offset .. label_offset + counts[b] - 1``.
    Each ``(image, label)`` pair gets a uniform random score, labels beyond the image's count get
    ``inf``, and the ``n`` smallest scores are masked: a uniform draw without replacement.

    Args:
        labels: Superpixel maps, integer.
        n: Superpixels to mask per image, ``1 <= n <= min(counts)``.
        generator: Generator on ``labels.device``; the same seed gives the same masks.
        counts: Number of real superpixels per image.
        label_offset: First label value (0 for 0-based maps, 1 for skimage's ``start_label=1``).

    Returns:
        ``(mask, masked_fraction)``.

    Shape:
        labels: ``(B, H, W)``; counts: ``(B,)``; mask: ``(B, H, W)`` bool; masked_fraction: ``(B,)``.

    Raises:
        ValueError: If shapes disagree, ``n < 1`` or ``n`` exceeds some image's count.
    """
    if labels.ndim != 3:
        raise ValueError(f"labels must have shape (B, H, W), got {tuple(labels.shape)}")
    if counts.shape != labels.shape[:1]:
        raise ValueError(f"counts must have shape ({labels.shape[0]},), got {tuple(counts.shape)}")
    if n < 1:
        raise ValueError(f"n must be >= 1 superpixel, got n={n}")
    counts = counts.to(labels.device, torch.long)
    smallest = int(counts.min())  # one host sync per batch, to fail loudly instead of masking less
    if n > smallest:
        raise ValueError(f"cannot mask n={n} superpixels: an image of the batch has only {smallest}")
    batch = labels.shape[0]
    index = labels.reshape(batch, -1).long() - label_offset
    width = int(counts.max())
    scores = torch.rand(batch, width, generator=generator, device=labels.device)
    slots = torch.arange(width, device=labels.device).unsqueeze(0)
    scores = scores.masked_fill(slots >= counts.unsqueeze(1), float("inf"))
    chosen = scores.topk(n, dim=1, largest=False).indices
    selected = torch.zeros(batch, width + 1, dtype=torch.bool, device=labels.device)
    selected.scatter_(1, chosen, True)
    # Out-of-range labels (e.g. an ignored background) read the always-False extra slot.
    index = torch.where((index >= 0) & (index < width), index, torch.full_like(index, width))
    mask = selected.gather(1, index).reshape(labels.shape)
    return mask, mask.flatten(1).float().mean(1)


def policy_is_feasible(k: int, n: int) -> tuple[bool, str]:
    """Check a (k, n) masking policy: ``k`` requested superpixels, ``n`` masked per image.

    autoSMIM's search penalised ``n > k / 2`` (more than half the superpixels masked); note that the
    real count is usually well below ``k``, so feasibility here does not guarantee ``n <= count``.

    Args:
        k: Requested number of superpixels (SLIC ``n_segments``).
        n: Number of superpixels masked per image.

    Returns:
        ``(True, "")`` if feasible, else ``(False, reason)``.
    """
    if k < 1:
        return False, f"k must be >= 1, got k={k}"
    if n < 1:
        return False, f"n must be >= 1, got n={n}"
    if n > k / 2:
        return False, f"n={n} masks more than half of k={k} superpixels (n > k/2 is penalised)"
    return True, ""
