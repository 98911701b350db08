"""Superpixel-inpainting masked image modelling (autoSMIM): hide n superpixels, reconstruct them."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor

from core.settings import check_exclusive
from models.networks.registry import create_model
from models.optim import OptimConfig
from models.task import TaskModule
from pretext.masked_reconstruction import MaskedReconstruction, masker_from_hparams
from pretext.ops import fill_masked, log_stage, masked_mse, paper_mse_x100, pretext_predict_message
from pretext.superpixel_masking import MaskBatch


def per_image_masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Masked MSE of each image separately (NaN for an image with nothing masked).

    Shape:
        pred, target ``[B, C, H, W]``; mask ``[B, 1, H, W]`` float -> ``[B]``.
    """
    squared = ((pred - target) ** 2 * mask).flatten(1).sum(1)
    area = mask.flatten(1).sum(1) * pred.shape[1]
    return squared / area


# autoSMIM's optimisation: Adam 1e-3, cosine per epoch.
MIM_OPTIM = OptimConfig(name="adam", lr=1e-3, scheduler="cosine")


class SuperpixelInpainting(MaskedReconstruction, TaskModule):
    """U-Net that reconstructs randomly masked superpixels (autoSMIM's MIM pretext task).

    The network (``self.net``: ``encoder``/``decoder``/``segmentation_head``) maps the masked image to
    ``in_channels`` outputs, clamped to ``[-1, 1]`` and multiplied by the mask. The loss is the MSE over
    masked pixels (normalised by masked area); the paper's ``100 x MSE`` over all pixels is logged as
    ``*/mse_x100``. Downstream segmentation loads ``net.encoder.*`` from its checkpoints.

    Args:
        in_channels: Image channels (linked from the data section); also the output channels.
        encoder_name: smp encoder, e.g. ``tu-tf_efficientnetv2_s`` (paper) or ``resnet18``.
        encoder_weights: Local file of encoder weights (e.g. ImageNet), None = random init.
        decoder_channels: U-Net decoder widths.
        n_masked: Superpixels masked per image (autoSMIM's ``n``; ``--aug_n``).
        mask_ratio: Alternative to ``n_masked`` (set ``n_masked: null``): masked area fraction.
        fill: Value of hidden pixels: ``zero`` (black, the paper), ``mean`` or ``noise``.
        on_excess: ``error`` when a map has fewer than ``n_masked`` superpixels, or ``clamp`` (mask all
            of them; the share of clamped images is logged as ``*/clamped_fraction``).
        superpixel_source: ``batch`` (maps served by the DataModule, ``source: cache|cpu``) or ``gpu``
            (computed here after augmentation with the torch backend).
        superpixel_method: Method for ``gpu``.
        superpixel_params: Method parameters for ``gpu`` (e.g. ``{n_segments: 512, compactness: 10}``).
        optim: Optimizer and schedule (the paper's Adam + cosine by default).
        seed: Seed of the masks (per sample from ``(seed, stage, epoch, index)``) and noise fills.
    """

    default_optim: ClassVar[OptimConfig] = MIM_OPTIM

    def __init__(
        self,
        in_channels: int = 3,
        encoder_name: str = "tu-tf_efficientnetv2_s",
        encoder_weights: str | None = None,
        decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16),
        n_masked: int | None = 128,
        mask_ratio: float | None = None,
        fill: Literal["zero", "mean", "noise"] = "zero",
        on_excess: Literal["error", "clamp"] = "error",
        superpixel_source: Literal["batch", "gpu"] = "batch",
        superpixel_method: Literal["slic", "felzenszwalb"] = "slic",
        superpixel_params: dict[str, Any] | None = None,
        optim: OptimConfig = MIM_OPTIM,
        seed: int = 42,
    ) -> None:
        super().__init__(optim)
        check_exclusive("set n_masked: null to mask by area", n_masked=n_masked, mask_ratio=mask_ratio)
        self.save_task_hyperparameters()
        self.net = create_model(
            "encoder_unet",
            in_channels=in_channels,
            num_classes=in_channels,
            encoder_name=encoder_name,
            encoder_weights=encoder_weights,
            decoder_channels=decoder_channels,
        )
        self.masker = masker_from_hparams(self.hparams)
        self.fill = fill

    def _noise_generator(self, batch: dict[str, Any], stage: str) -> torch.Generator | None:
        if self.fill != "noise":
            return None
        words = [self.hparams.seed, self.current_epoch if stage == "train" else 0, *map(int, batch["index"])]
        seed = int(np.random.SeedSequence(words).generate_state(1)[0])
        return torch.Generator().manual_seed(seed)

    def _step(self, batch: dict[str, Any], stage: str) -> tuple[Tensor, dict[str, Tensor]]:
        image = batch["image"]
        masks: MaskBatch = self.masker(batch, stage, self.current_epoch)
        mask = masks.mask.unsqueeze(1).to(image.dtype)
        masked = fill_masked(image, mask, self.fill, self._noise_generator(batch, stage))
        pred = self(masked, mask)
        loss = masked_mse(pred, image, mask)
        values = {
            "mse_x100": paper_mse_x100(pred.detach(), image, mask),
            "masked_fraction": masks.masked_fraction.mean(),
            "clamped_fraction": masks.clamped.float().mean(),
        }
        log_stage(self, stage, loss, values, image.shape[0])
        return loss, {"masked": masked, "pred": pred, "mask": mask, "fraction": masks.masked_fraction}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """One optimisation step (masks drawn per sample from seed, epoch and index)."""
        loss, _ = self._step(batch, "train")
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        """Loss on fixed validation masks; returns tensors for :class:`pretext.visuals.InpaintingGrid`."""
        loss, out = self._step(batch, "val")
        return {"loss": loss, **out}

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Per-image masked MSE, paper MSE x100 and masked fraction."""
        _, out = self._step(batch, "test")
        image, pred, mask = batch["image"], out["pred"], out["mask"]
        mse = per_image_masked_mse(pred, image, mask)
        paper = 100.0 * ((pred - image * mask) ** 2).flatten(1).mean(1)
        self.add_test_rows(
            {
                "id": image_id,
                "loss": float(mse[i]),
                "mse_x100": float(paper[i]),
                "masked_fraction": float(out["fraction"][i]),
            }
            for i, image_id in enumerate(batch["id"])
        )

    def predict_step(self, batch: dict[str, Any], batch_idx: int = 0) -> Tensor:
        """Not a segmentation model.

        Raises:
            TypeError: Always; a pretext checkpoint must be fine-tuned first.
        """
        raise TypeError(pretext_predict_message(self))
