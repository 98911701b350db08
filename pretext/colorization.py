"""Colorization probe: masked superpixels turned grey, the U-Net predicts their colour (masked MSE)."""

from __future__ import annotations

import logging
from typing import Any, Literal

from torch import Tensor

from models.optim import OptimConfig
from pretext.ops import masked_mse, to_grey_in_mask
from pretext.probe_base import PROBE_OPTIM, ProbeModule
from pretext.superpixel_masking import MaskedReconstruction, masker_from_hparams

log = logging.getLogger(__name__)


class ColorizationProbe(MaskedReconstruction, ProbeModule):
    """U-Net on the partly grey image; output clamped to [-1, 1] and multiplied by the mask.

    With ``in_channels: 1`` there is no colour to predict (the input equals the target inside the
    mask): the module runs, but the loss only measures an identity mapping; a warning says so.

    Args:
        in_channels: Image channels (linked from the data section).
        encoder_name: smp encoder name (must match the MIM checkpoint's).
        encoder_weights: Local encoder weights for a standalone run (None = random init).
        encoder_checkpoint: MIM checkpoint whose ``encoder.*`` initialises the encoder (probe mode).
        freeze_encoder: Train only decoder and head (probe mode, the paper's setting).
        n_masked: Superpixels turned grey per image.
        mask_ratio: Alternative to ``n_masked`` (set ``n_masked: null``): grey area fraction.
        on_excess: ``error`` or ``clamp`` when a map has fewer than ``n_masked`` superpixels.
        superpixel_source: ``batch`` (served by the DataModule) or ``gpu`` (computed here).
        superpixel_method: Method for ``gpu``.
        superpixel_params: Method parameters for ``gpu``.
        optim: Optimizer and schedule (Adam 1e-3, cosine per epoch by default).
        seed: Seed of the masks.
    """

    def __init__(
        self,
        in_channels: int = 3,
        encoder_name: str = "tu-tf_efficientnetv2_s",
        encoder_weights: str | None = None,
        encoder_checkpoint: str | None = None,
        freeze_encoder: bool = True,
        n_masked: int | None = 128,
        mask_ratio: float | None = None,
        on_excess: Literal["error", "clamp"] = "error",
        superpixel_source: Literal["batch", "gpu"] = "batch",
        superpixel_method: Literal["slic", "felzenszwalb"] = "slic",
        superpixel_params: dict[str, Any] | None = None,
        optim: OptimConfig = PROBE_OPTIM,
        seed: int = 42,
    ) -> None:
        super().__init__(optim)
        if mask_ratio is not None and n_masked is not None:
            raise ValueError(f"model: give one of n_masked={n_masked} and mask_ratio={mask_ratio}")
        self.save_task_hyperparameters()
        if in_channels == 1:
            log.warning("colorization on 1-channel images: nothing to predict (grey input equals the target)")
        self.net = self.build_net(in_channels, encoder_only=False)
        self.masker = masker_from_hparams(self.hparams)

    def _step(self, batch: dict[str, Any], stage: str) -> tuple[Tensor, dict[str, Tensor]]:
        image = batch["image"]
        masks = self.masker(batch, stage, self.current_epoch)
        mask = masks.mask.unsqueeze(1).to(image.dtype)
        pred = self(to_grey_in_mask(image, mask), mask)
        loss = masked_mse(pred, image, mask)
        return loss, {"masked_fraction": masks.masked_fraction.mean().to(self.device)}
