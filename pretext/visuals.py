"""PNG grids of inpainting results: [masked input | prediction composited into the image | target]."""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor

from datasets.image_io import write_png_atomic
from models.overlays import grid_dir, to_uint8_image


def inpainting_grid(masked: Tensor, pred: Tensor, target: Tensor, mask: Tensor) -> np.ndarray:
    """One row per sample: masked input, reconstruction pasted into the visible image, original.

    Args:
        masked: Network inputs (normalised, masked pixels filled).
        pred: Reconstructions (zero outside the mask).
        target: Original normalised images.
        mask: 1 where pixels were hidden.

    Returns:
        ``[N*H, 3*W, 3]`` uint8 RGB image (grey inputs are repeated over 3 channels).

    Shape:
        masked, pred, target ``[N, C, H, W]``; mask ``[N, 1, H, W]`` or ``[N, H, W]``.
    """
    mask = mask.unsqueeze(1) if mask.ndim == 3 else mask
    mask = mask.to(target.dtype)
    composite = target * (1 - mask) + pred * mask
    rows = [
        np.concatenate([to_uint8_image(a), to_uint8_image(b), to_uint8_image(c)], axis=1)
        for a, b, c in zip(masked, composite, target, strict=True)
    ]
    return np.concatenate(rows, axis=0)


class InpaintingGrid(L.Callback):
    """Save ``<run dir>/inpainting/epoch_XXX.png`` from the first validation batch of each epoch.

    The module's ``validation_step`` must return ``{"masked", "pred", "mask"}`` (as
    :class:`~pretext.inpainting.SuperpixelInpainting` does); the batch must hold ``image``.

    Args:
        num_images: Rows of the grid (taken from the first validation batch).
        every_n_epochs: Save frequency.
    """

    def __init__(self, num_images: int = 4, every_n_epochs: int = 1) -> None:
        if num_images < 1 or every_n_epochs < 1:
            raise ValueError(
                f"num_images and every_n_epochs must be >= 1, got {num_images}, {every_n_epochs}"
            )
        self.num_images = num_images
        self.every_n_epochs = every_n_epochs

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Write the grid of the first batch (rank 0 only, never during the sanity check)."""
        out = grid_dir(trainer, batch_idx, self.every_n_epochs, "inpainting")
        if out is None:
            return
        if not isinstance(outputs, dict) or not {"masked", "pred", "mask"} <= set(outputs):
            raise ValueError(
                "InpaintingGrid needs validation_step to return a dict with 'masked', 'pred' and 'mask'; "
                f"got {type(outputs).__name__} {sorted(outputs) if isinstance(outputs, dict) else ''}"
            )
        n = min(self.num_images, batch["image"].shape[0])
        with torch.no_grad():
            grid = inpainting_grid(
                outputs["masked"][:n], outputs["pred"][:n], batch["image"][:n], outputs["mask"][:n]
            )
        write_png_atomic(out / f"epoch_{trainer.current_epoch:03d}.png", grid)
