"""Pretext operations as plain tensor functions: masking fills, losses, rotations, grey-in-mask, jigsaw.

Images are normalised to ``[-1, 1]`` (Normalize(0.5, 0.5)); every random choice takes a
``torch.Generator`` so the same seed reproduces the same batch.
"""

from __future__ import annotations

import itertools
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

FillMode = Literal["zero", "mean", "noise"]
FILL_MODES: tuple[str, ...] = ("zero", "mean", "noise")
# Intensity 0 (black) after Normalize(0.5, 0.5): autoSMIM set masked pixels to 0 before normalising.
BLACK = -1.0

# All orderings of the 4 tiles of a 2x2 grid, in lexicographic order; a label is an index here.
JIGSAW_PERMUTATIONS: tuple[tuple[int, ...], ...] = tuple(itertools.permutations(range(4)))


def _check_mask(image: Tensor, mask: Tensor) -> Tensor:
    if image.ndim != 4:
        raise ValueError(f"image must be [B, C, H, W], got shape {tuple(image.shape)}")
    if mask.ndim == 3:
        mask = mask.unsqueeze(1)
    if mask.shape[0] != image.shape[0] or mask.shape[1] != 1 or mask.shape[2:] != image.shape[2:]:
        raise ValueError(
            f"mask must be [B, H, W] or [B, 1, H, W] matching image {tuple(image.shape)}, "
            f"got {tuple(mask.shape)}"
        )
    return mask.to(image.dtype)


def fill_masked(
    image: Tensor, mask: Tensor, mode: FillMode = "zero", generator: torch.Generator | None = None
) -> Tensor:
    """Replace the masked pixels of a normalised image.

    Args:
        image: Normalised images in ``[-1, 1]``.
        mask: True/1 where pixels are hidden.
        mode: ``zero``: black (intensity 0, i.e. ``-1`` after normalisation; the paper's choice);
            ``mean``: each image's per-channel mean over its visible pixels; ``noise``: uniform
            noise in ``[-1, 1]`` drawn from ``generator``.
        generator: Needed for ``noise`` (on the image's device).

    Returns:
        A new tensor; unmasked pixels are unchanged.

    Shape:
        image ``[B, C, H, W]``, mask ``[B, H, W]`` or ``[B, 1, H, W]`` -> ``[B, C, H, W]``.

    Raises:
        ValueError: Unknown mode, shape mismatch, or ``noise`` without a generator.
    """
    m = _check_mask(image, mask)
    if mode == "zero":
        fill = torch.full_like(image, BLACK)
    elif mode == "mean":
        visible = 1.0 - m
        area = visible.sum(dim=(2, 3), keepdim=True).clamp_min(1.0)
        fill = ((image * visible).sum(dim=(2, 3), keepdim=True) / area).expand_as(image)
    elif mode == "noise":
        if generator is None:
            raise ValueError("fill mode 'noise' needs a torch.Generator (every random choice is seeded)")
        noise = torch.rand(image.shape, generator=generator, device=generator.device, dtype=image.dtype)
        fill = noise.to(image.device) * 2.0 - 1.0
    else:
        raise ValueError(f"unknown fill mode {mode!r}; expected one of {FILL_MODES}")
    return image * (1.0 - m) + fill * m


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error over the masked pixels only (normalised by masked area x channels).

    Returns 0 (with a gradient path) when nothing is masked, rather than NaN.

    Shape:
        pred, target ``[B, C, H, W]``; mask ``[B, H, W]`` or ``[B, 1, H, W]`` -> scalar.
    """
    m = _check_mask(pred, mask)
    squared = (pred - target) ** 2 * m
    denom = m.sum() * pred.shape[1]
    return squared.sum() / denom.clamp_min(1.0)


def paper_mse_x100(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """AutoSMIM's reported loss: ``100 * MSE(pred * mask, target * mask)`` averaged over ALL pixels.

    It shrinks with the masked fraction, so it is only comparable between equal policies; the
    training loss is :func:`masked_mse`.

    Shape:
        pred, target ``[B, C, H, W]``; mask ``[B, H, W]`` or ``[B, 1, H, W]`` -> scalar.
    """
    m = _check_mask(pred, mask)
    return 100.0 * F.mse_loss(pred * m, target * m)


def rotate_batch(images: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Rotate each image by a random multiple of 90 degrees (counter-clockwise).

    Args:
        images: Square images.
        generator: CPU generator choosing the rotations.

    Returns:
        ``(rotated, labels)``; label ``r`` means ``r * 90`` degrees.

    Shape:
        images ``[B, C, S, S]`` -> rotated ``[B, C, S, S]``, labels ``[B]`` int64 in ``{0, 1, 2, 3}``.

    Raises:
        ValueError: For non-square images (a 90-degree turn would change their shape).
    """
    if images.ndim != 4 or images.shape[-1] != images.shape[-2]:
        raise ValueError(f"rotation needs square images [B, C, S, S], got shape {tuple(images.shape)}")
    labels = torch.randint(0, 4, (images.shape[0],), generator=generator)
    rotated = torch.stack(
        [torch.rot90(img, int(k), dims=(1, 2)) for img, k in zip(images, labels, strict=True)]
    )
    return rotated, labels.to(images.device)


def to_grey_in_mask(image: Tensor, mask: Tensor) -> Tensor:
    """Replace colour by its luma (ITU-R 601: 0.299 R + 0.587 G + 0.114 B) inside the mask.

    Grey (1-channel) images are returned unchanged: there is no colour to remove.

    Shape:
        image ``[B, C, H, W]`` (C = 1 or 3), mask ``[B, H, W]`` or ``[B, 1, H, W]`` -> ``[B, C, H, W]``.
    """
    m = _check_mask(image, mask)
    if image.shape[1] == 1:
        return image.clone()
    if image.shape[1] != 3:
        raise ValueError(f"to_grey_in_mask needs 1 or 3 channels, got {image.shape[1]}")
    weights = torch.tensor([0.299, 0.587, 0.114], device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
    grey = (image * weights).sum(dim=1, keepdim=True).expand_as(image)
    return image * (1.0 - m) + grey * m


def split_tiles(images: Tensor) -> Tensor:
    """Cut each image into a 2x2 grid, row-major (top-left, top-right, bottom-left, bottom-right).

    Shape:
        ``[B, C, H, W]`` with even H, W -> ``[B, 4, C, H/2, W/2]``.
    """
    b, c, h, w = images.shape
    if h % 2 or w % 2:
        raise ValueError(f"jigsaw needs even height and width, got {h}x{w}")
    tiles = images.reshape(b, c, 2, h // 2, 2, w // 2).permute(0, 2, 4, 1, 3, 5)
    return tiles.reshape(b, 4, c, h // 2, w // 2)


def merge_tiles(tiles: Tensor) -> Tensor:
    """Inverse of :func:`split_tiles`.

    Shape:
        ``[B, 4, C, h, w]`` -> ``[B, C, 2h, 2w]``.
    """
    b, _, c, h, w = tiles.shape
    return tiles.reshape(b, 2, 2, c, h, w).permute(0, 3, 1, 4, 2, 5).reshape(b, c, 2 * h, 2 * w)


def jigsaw_batch(images: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Shuffle the 2x2 tiles of each image by a random one of the 24 permutations.

    Position ``j`` of the output holds tile ``JIGSAW_PERMUTATIONS[label][j]`` of the input.

    Args:
        images: Images with even height and width.
        generator: CPU generator choosing the permutations.

    Returns:
        ``(tiles, labels)``; :func:`merge_tiles` turns the tiles back into a shuffled image.

    Shape:
        images ``[B, C, H, W]`` -> tiles ``[B, 4, C, H/2, W/2]``, labels ``[B]`` int64 in ``[0, 24)``.
    """
    tiles = split_tiles(images)
    labels = torch.randint(0, len(JIGSAW_PERMUTATIONS), (images.shape[0],), generator=generator)
    order = torch.tensor([JIGSAW_PERMUTATIONS[int(k)] for k in labels], device=images.device)
    index = order.view(-1, 4, 1, 1, 1).expand_as(tiles)
    return torch.gather(tiles, 1, index), labels.to(images.device)


def log_stage(module: Any, stage: str, loss: Tensor, metrics: dict[str, Tensor], batch_size: int) -> None:
    """Log ``<stage>/loss`` (progress bar) and ``<stage>/<metric>`` epoch means; synced off-train.

    Test values are not logged here: the task contract logs the test summary (``test/<key>``).

    Args:
        module: The LightningModule logging the values.
        stage: ``train``, ``val`` or ``test``.
        loss: Scalar loss of the batch.
        metrics: Extra scalar tensors of the batch.
        batch_size: Samples in the batch (weights the epoch mean).
    """
    if stage == "test":
        return
    sync = stage != "train"
    module.log(
        f"{stage}/loss",
        loss,
        on_step=False,
        on_epoch=True,
        prog_bar=True,
        sync_dist=sync,
        batch_size=batch_size,
    )
    for key, value in metrics.items():
        module.log(
            f"{stage}/{key}",
            value.to(module.device),
            on_step=False,
            on_epoch=True,
            sync_dist=sync,
            batch_size=batch_size,
        )


def pretext_predict_message(module: Any) -> str:
    """Why a pretext module cannot predict masks, and what to do instead."""
    return (
        f"this checkpoint is a pretext model ({type(module).__name__}); fine-tune it first: "
        "pass it as model.init_args.pretrained of a segmentation config (see configs/downstream_sample.yaml)"
    )
