"""Sliding-window inference: a network trained on fixed-size tiles applied to images of any size.

One implementation for prediction (``run.py --predict --mode sliding``) and, later, for the validation
and test of patch-trained models. Windows of the training size cover the image with a chosen
overlap, the last window of each axis ends flush with the border (no border pixel is left out), and
overlapping outputs are blended with a Gaussian weight centred on each window (seams fade out). Images
smaller than the window are padded and cropped back. Windows go through the network in batches of
``batch_size``, so memory is bounded by the batch, never by the image.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def window_starts(length: int, window: int, overlap: float) -> list[int]:
    """Start offsets of windows covering ``[0, length)``; the last one ends at ``length``.

    Args:
        length: Size of the (padded) axis, at least ``window``.
        window: Window size along the axis.
        overlap: Fraction of a window shared by neighbours, in ``[0, 1)``.

    Returns:
        Sorted, unique start offsets.

    Raises:
        ValueError: If ``overlap`` is outside ``[0, 1)`` or ``length < window``.
    """
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if length < window:
        raise ValueError(f"axis of length {length} is shorter than the window {window}; pad it first")
    stride = max(1, int(window * (1.0 - overlap)))
    count = math.ceil((length - window) / stride) + 1
    return sorted({min(i * stride, length - window) for i in range(count)})


def gaussian_weights(size: Sequence[int], sigma_scale: float = 0.125, floor: float = 1e-3) -> Tensor:
    """A separable Gaussian weight map peaking at 1 in the window centre.

    Args:
        size: ``(height, width)`` of the window.
        sigma_scale: Standard deviation as a fraction of each side.
        floor: Smallest weight relative to the peak, so border pixels still count (never divide by 0).

    Returns:
        float32 tensor ``[height, width]`` in ``[floor, 1]``.
    """
    axes = []
    for n in size:
        coords = torch.arange(n, dtype=torch.float64) - (n - 1) / 2.0
        sigma = max(n * sigma_scale, 1e-6)
        axes.append(torch.exp(-0.5 * (coords / sigma) ** 2))
    weights = axes[0][:, None] * axes[1][None, :]
    return (weights / weights.max()).clamp_min(floor).float()


def _pad_to(image: Tensor, window: tuple[int, int], value: float) -> tuple[Tensor, tuple[int, int]]:
    height, width = image.shape[-2:]
    pad_h, pad_w = max(0, window[0] - height), max(0, window[1] - width)
    if pad_h or pad_w:
        # Centred padding, so a small image sits in the window's well-weighted middle.
        top, left = pad_h // 2, pad_w // 2
        image = F.pad(image, (left, pad_w - left, top, pad_h - top), value=value)
        return image, (top, left)
    return image, (0, 0)


def sliding_window_inference(
    image: Tensor,
    predict: Callable[[Tensor], Tensor],
    window: int | Sequence[int],
    overlap: float = 0.5,
    batch_size: int = 4,
    gaussian: bool = True,
    sigma_scale: float = 0.125,
    pad_value: float = 0.0,
) -> Tensor:
    """Apply ``predict`` window by window and blend the outputs into one map of the image's size.

    Args:
        image: One image ``[C, H, W]`` or a batch ``[B, C, H, W]`` (any size, on any device).
        predict: Maps a batch of windows ``[N, C, h, w]`` to outputs ``[N, K, h, w]`` (e.g.
            probabilities); called with at most ``batch_size`` windows at a time.
        window: Window size (the training size), int or ``(h, w)``.
        overlap: Fraction of a window shared with its neighbour along each axis, in ``[0, 1)``.
        batch_size: Windows per call of ``predict`` (bounds the memory).
        gaussian: Blend with a centred Gaussian weight (False: plain average of overlapping windows).
        sigma_scale: Gaussian standard deviation as a fraction of the window side.
        pad_value: Value of the padding of images smaller than the window (the normalised background).

    Returns:
        float32 outputs ``[B, K, H, W]`` (``[K, H, W]`` for a single image), on ``image``'s device:
        for each pixel the weighted mean of the outputs of every window covering it.

    Raises:
        ValueError: For a bad window size, overlap or batch size.
    """
    single = image.dim() == 3
    batch = image[None] if single else image
    size = (window, window) if isinstance(window, int) else tuple(int(w) for w in window)
    if len(size) != 2 or min(size) < 1 or batch_size < 1:
        raise ValueError(
            f"need a (h, w) window of positive sides and batch_size >= 1, got {window}, {batch_size}"
        )
    height, width = batch.shape[-2:]
    padded, (top, left) = _pad_to(batch, size, pad_value)
    ys = window_starts(padded.shape[-2], size[0], overlap)
    xs = window_starts(padded.shape[-1], size[1], overlap)
    corners = [(b, y, x) for b in range(padded.shape[0]) for y in ys for x in xs]
    weight = gaussian_weights(size, sigma_scale) if gaussian else torch.ones(size)
    weight = weight.to(padded.device)
    out: Tensor | None = None
    norm = torch.zeros(padded.shape[-2:], device=padded.device)
    for y, x in {(y, x) for _, y, x in corners}:
        norm[y : y + size[0], x : x + size[1]] += weight
    for start in range(0, len(corners), batch_size):
        chunk = corners[start : start + batch_size]
        tiles = torch.stack([padded[b, :, y : y + size[0], x : x + size[1]] for b, y, x in chunk])
        outputs = predict(tiles).float()
        if out is None:
            out = torch.zeros((padded.shape[0], outputs.shape[1], *padded.shape[-2:]), device=padded.device)
        for (b, y, x), tile_out in zip(chunk, outputs, strict=True):
            out[b, :, y : y + size[0], x : x + size[1]] += tile_out.to(out.device) * weight
    assert out is not None  # at least one window always exists
    out = (out / norm)[..., top : top + height, left : left + width]
    return out[0] if single else out
