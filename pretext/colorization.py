"""Colorization probe: masked superpixels turned grey, the U-Net predicts their colour (masked MSE)."""

from __future__ import annotations

import logging
from typing import Any, Literal

from torch import Tensor

from core.settings import check_exclusive
from pretext.masked_reconstruction import MaskedReconstruction, masker_from_hparams
from pretext.ops import masked_mse, to_grey_in_mask
from pretext.probe_base import ProbeModule

log = logging.getLogger(__name__)


class ColorizationProbe(MaskedReconstruction, ProbeModule):
    """U-Net on the partly grey image; output clamped to [-1, 1] and multiplied by the mask.

    With ``in_channels: 1`` there is no colour to predict (the input equals the target inside the
    mask): the module runs, but the loss only measures an identity mapping; a warning says so.

    Args:
        n_masked: Superpixels turned grey per image.
        mask_ratio: Alternative to ``n_masked`` (set ``n_masked: null``): grey area fraction.
        on_excess: ``error`` or ``clamp`` when a map has fewer than ``n_masked`` superpixels.
        superpixel_source: ``batch`` (served by the DataModule) or ``gpu`` (computed here).
        superpixel_method: Method for ``gpu``.
        superpixel_params: Method parameters for ``gpu``.
        **kwargs: :class:`~pretext.probe_base.ProbeModule`'s (``in_channels``, ``encoder_*``,
            ``freeze_encoder``: train only decoder and head, ``optim``, ``seed``: the seed of the masks).
    """

    def __init__(
        self,
        n_masked: int | None = 128,
        mask_ratio: float | None = None,
        on_excess: Literal["error", "clamp"] = "error",
        superpixel_source: Literal["batch", "gpu"] = "batch",
        superpixel_method: Literal["slic", "felzenszwalb"] = "slic",
        superpixel_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        check_exclusive("set n_masked: null to mask by area", n_masked=n_masked, mask_ratio=mask_ratio)
        super().__init__(**kwargs)
        if self.hparams.in_channels == 1:
            log.warning("colorization on 1-channel images: nothing to predict (grey input equals the target)")
        self.net = self.build_net(self.hparams.in_channels, encoder_only=False)
        self.masker = masker_from_hparams(self.hparams)

    def _step(self, batch: dict[str, Any], stage: str) -> tuple[Tensor, dict[str, Tensor]]:
        image = batch["image"]
        masks = self.masker(batch, stage, self.current_epoch)
        mask = masks.mask.unsqueeze(1).to(image.dtype)
        pred = self(to_grey_in_mask(image, mask), mask)
        loss = masked_mse(pred, image, mask)
        return loss, {"masked_fraction": masks.masked_fraction.mean().to(self.device)}
