"""Overlay images (image | ground truth | prediction) as plain functions, and the callback that saves them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor

from datasets.image_io import write_png_atomic
from models.task import local_log_dir

# Distinct colours for classes 1..N (class 0 = background is left transparent).
PALETTE = np.array(
    [
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [210, 245, 60],
        [250, 190, 212],
    ],
    dtype=np.float32,
)


def to_uint8_image(image: Tensor, mean: float = 0.5, std: float = 0.5) -> np.ndarray:
    """Undo normalisation of a ``[C, H, W]`` image and return ``[H, W, 3]`` uint8."""
    arr = (image.detach().float().cpu() * std + mean).clamp(0, 1).numpy()
    arr = np.repeat(arr, 3, axis=0) if arr.shape[0] == 1 else arr[:3]
    return (arr.transpose(1, 2, 0) * 255).round().astype(np.uint8)


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend class colours over an ``[H, W, 3]`` uint8 image where ``labels > 0``."""
    out = image.astype(np.float32)
    fg = labels > 0
    colours = PALETTE[(labels[fg] - 1) % len(PALETTE)]
    out[fg] = (1 - alpha) * out[fg] + alpha * colours
    return out.round().astype(np.uint8)


def overlay_grid(
    images: Tensor, targets: Tensor, preds: Tensor, mean: float = 0.5, std: float = 0.5
) -> np.ndarray:
    """One row per sample: image, ground-truth overlay, prediction overlay.

    Shape:
        images ``[N, C, H, W]``, targets and preds ``[N, H, W]`` -> ``[N*H, 3*W, 3]`` uint8.
    """
    rows = []
    for img, tgt, pred in zip(images, targets, preds, strict=True):
        base = to_uint8_image(img, mean, std)
        rows.append(
            np.concatenate([base, overlay(base, tgt.cpu().numpy()), overlay(base, pred.cpu().numpy())], 1)
        )
    return np.concatenate(rows, axis=0)


def grid_dir(trainer: L.Trainer, batch_idx: int, every_n_epochs: int, subdir: str) -> Path | None:
    """Where a validation-grid callback writes this epoch's PNG, or None when it should not write.

    Only rank 0 writes, only for the first validation batch of every ``every_n_epochs``-th epoch and
    never during the sanity check; the run directory is found without a DDP collective.
    """
    if batch_idx != 0 or trainer.sanity_checking or not trainer.is_global_zero:
        return None
    if trainer.current_epoch % every_n_epochs:
        return None
    log_dir = local_log_dir(trainer)
    return None if log_dir is None else Path(log_dir) / subdir


class PredictionOverlays(L.Callback):
    """Save a PNG of a few validation predictions every ``every_n_epochs`` epochs.

    Files go to ``<log_dir>/overlays/epoch_XXX.png``. The module's ``validation_step`` must return
    ``{"preds": LongTensor[B, H, W]}``; the batch must hold ``image`` and ``mask``.

    Args:
        num_images: Samples per grid (taken from the first validation batch).
        every_n_epochs: Save frequency.
        mean: Normalisation mean used by the data pipeline.
        std: Normalisation std used by the data pipeline.
    """

    def __init__(self, num_images: int = 4, every_n_epochs: int = 1, mean: float = 0.5, std: float = 0.5):
        self.num_images = num_images
        self.every_n_epochs = every_n_epochs
        self.mean, self.std = mean, std

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Save the grid of the first validation batch (rank 0 only)."""
        out = grid_dir(trainer, batch_idx, self.every_n_epochs, "overlays")
        if out is None or not isinstance(outputs, dict) or "preds" not in outputs:
            return
        n = min(self.num_images, batch["image"].shape[0])
        with torch.no_grad():
            grid = overlay_grid(
                batch["image"][:n], batch["mask"][:n], outputs["preds"][:n], self.mean, self.std
            )
        write_png_atomic(out / f"epoch_{trainer.current_epoch:03d}.png", grid)
