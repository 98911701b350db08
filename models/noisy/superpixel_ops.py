"""Superpixel operations of the noisy-label method: scatter means and per-class small-loss selection."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def _flat_segments(superpixels: Tensor) -> tuple[Tensor, int]:
    """Per-pixel segment index unique over the batch (image b's ids shifted by ``b * S``)."""
    if superpixels.ndim != 3:
        raise ValueError(f"superpixels must be [B, H, W], got shape {tuple(superpixels.shape)}")
    if superpixels.numel() and int(superpixels.min()) < 0:
        raise ValueError(f"superpixel ids must be >= 0, got min {int(superpixels.min())}")
    per_image = int(superpixels.max()) + 1 if superpixels.numel() else 1
    offsets = torch.arange(superpixels.shape[0], device=superpixels.device).view(-1, 1, 1) * per_image
    return (superpixels.long() + offsets).reshape(-1), superpixels.shape[0] * per_image


def superpixel_mean(values: Tensor, superpixels: Tensor) -> Tensor:
    """Replace every pixel's values by their mean over its superpixel (differentiable).

    Sums are accumulated with ``index_add`` over segment ids, never with a dense one-hot, so memory
    is ``O(B * S * C)`` for ``S`` superpixels per image.

    Args:
        values: ``[B, C, H, W]`` (e.g. softmax probabilities).
        superpixels: Integer ids ``[B, H, W]`` (>= 0), ids local to each image.

    Returns:
        ``[B, C, H, W]`` superpixel-averaged values.

    Raises:
        ValueError: On mismatched shapes or negative ids.
    """
    if (
        values.ndim != 4
        or values.shape[0] != superpixels.shape[0]
        or values.shape[2:] != superpixels.shape[1:]
    ):
        raise ValueError(
            f"superpixel_mean: values {tuple(values.shape)} and superpixels {tuple(superpixels.shape)} "
            "must be [B, C, H, W] and [B, H, W]"
        )
    b, c, h, w = values.shape
    index, total = _flat_segments(superpixels)
    flat = values.permute(0, 2, 3, 1).reshape(-1, c)
    sums = flat.new_zeros(total, c).index_add(0, index, flat)
    counts = torch.bincount(index, minlength=total).clamp_min(1).to(flat.dtype)
    means = sums / counts[:, None]
    return means[index].reshape(b, h, w, c).permute(0, 3, 1, 2)


def segment_means(values: Tensor, segments: Tensor, num_segments: int) -> tuple[Tensor, Tensor]:
    """Mean of ``values`` per segment of ONE image, and the pixel count of each segment.

    Args:
        values: ``[C, H, W]``.
        segments: ``[H, W]`` ids in ``[0, num_segments)``.
        num_segments: Number of segment slots.

    Returns:
        ``(means [num_segments, C], counts [num_segments])``; empty segments have mean 0.
    """
    c = values.shape[0]
    index = segments.reshape(-1).long()
    sums = values.new_zeros(num_segments, c).index_add(0, index, values.reshape(c, -1).T)
    counts = torch.bincount(index, minlength=num_segments)
    return sums / counts.clamp_min(1)[:, None].to(values.dtype), counts


def keep_rates_at(keep_rates: Sequence[float], epoch: int, ramp_epochs: int) -> list[float]:
    """Keep rate per class at an epoch: the forget rate ``1 - R_c`` ramps linearly from 0.

    Args:
        keep_rates: Final keep rate ``R_c`` per class, in ``(0, 1]``.
        epoch: Current epoch (0-based).
        ramp_epochs: Epochs over which the forget rate reaches ``1 - R_c`` (0: at once).

    Returns:
        ``1 - min(epoch / ramp_epochs, 1) * (1 - R_c)`` per class.

    Raises:
        ValueError: If a rate is outside ``(0, 1]``.
    """
    bad = [r for r in keep_rates if not 0.0 < r <= 1.0]
    if bad:
        raise ValueError(f"keep rates must lie in (0, 1], got {list(keep_rates)}")
    progress = 1.0 if ramp_epochs <= 0 else min(max(epoch, 0) / ramp_epochs, 1.0)
    return [1.0 - progress * (1.0 - r) for r in keep_rates]


def select_small_loss(losses: Tensor, labels: Tensor, keep_rates: Sequence[float]) -> Tensor:
    """Keep, within each (noisy) label class, the fraction ``keep_rates[c]`` of smallest-loss pixels.

    Args:
        losses: Per-pixel losses, any shape (e.g. ``[B, H, W]``).
        labels: Integer labels of the same shape.
        keep_rates: Fraction kept per class (``round(rate * count)`` pixels, at least 1 if any).

    Returns:
        Boolean mask of the selected pixels, same shape as ``losses``.

    Raises:
        ValueError: On mismatched shapes or a label without a rate.
    """
    if losses.shape != labels.shape:
        raise ValueError(f"select_small_loss: losses {tuple(losses.shape)} vs labels {tuple(labels.shape)}")
    if labels.numel() and int(labels.max()) >= len(keep_rates):
        raise ValueError(f"label {int(labels.max())} has no keep rate (rates {list(keep_rates)})")
    flat_loss, flat_labels = losses.detach().reshape(-1), labels.reshape(-1)
    selected = torch.zeros_like(flat_labels, dtype=torch.bool)
    for cls, rate in enumerate(keep_rates):
        idx = torch.nonzero(flat_labels == cls, as_tuple=True)[0]
        if idx.numel() == 0:
            continue
        k = max(1, int(round(rate * idx.numel())))
        order = torch.argsort(flat_loss[idx], stable=True)[:k]
        selected[idx[order]] = True
    return selected.reshape(labels.shape)
