"""Shared parts of the pretext probes: encoder from an MIM checkpoint, freezing, seeding, test summary.

autoSMIM's policy search evaluates frozen encoders initialised from the MIM checkpoint; the same
modules train standalone when no checkpoint is given and ``freeze_encoder`` is False.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn

from models.checkpoints import load_pretrained
from models.optim import build_optimizer, build_scheduler
from models.registry import create_model
from pretext.ops import log_stage
from pretext.superpixel_masking import STAGE_CODES

log = logging.getLogger(__name__)


class EncoderOnly(nn.Module):
    """Holds just ``encoder`` so state-dict keys read ``encoder.*`` like the full U-Net's."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    @property
    def out_channels(self) -> int:
        """Channels of the deepest feature map."""
        return int(self.encoder.out_channels[-1])


def build_probe_net(
    in_channels: int,
    out_channels: int,
    encoder_name: str,
    encoder_weights: str | None,
    encoder_checkpoint: str | None,
    freeze_encoder: bool,
    encoder_only: bool,
) -> nn.Module:
    """Build a U-Net (or only its encoder), load the encoder from a checkpoint and freeze it.

    Args:
        in_channels: Image channels.
        out_channels: Output channels of the U-Net head (ignored when ``encoder_only``).
        encoder_name: smp encoder name.
        encoder_weights: Local encoder weights for a standalone run (None = random init).
        encoder_checkpoint: MIM (or any) checkpoint whose ``encoder.*`` tensors initialise the encoder.
        freeze_encoder: Stop gradients into the encoder (its BatchNorm statistics stay fixed too).
        encoder_only: Return an :class:`EncoderOnly` instead of the whole U-Net.

    Returns:
        A module with an ``encoder`` attribute.

    Raises:
        FileNotFoundError: Missing checkpoint.
        ValueError: Checkpoint without matching encoder tensors.
    """
    if freeze_encoder and encoder_checkpoint is None and encoder_weights is None:
        log.warning(
            "freeze_encoder=True without encoder_checkpoint/encoder_weights: probing a RANDOM encoder"
        )
    net = create_model(
        "encoder_unet",
        in_channels=in_channels,
        num_classes=out_channels,
        encoder_name=encoder_name,
        encoder_weights=encoder_weights,
    )
    if encoder_only:
        net = EncoderOnly(net.encoder)
    if encoder_checkpoint is not None:
        load_pretrained(net, encoder_checkpoint, parts="encoder")
    if freeze_encoder:
        net.encoder.requires_grad_(False)
        net.encoder.eval()
    return net


def pooled_deepest(encoder: nn.Module, images: Tensor) -> Tensor:
    """Global-average-pooled deepest encoder feature.

    Shape:
        ``[B, C, H, W]`` -> ``[B, encoder.out_channels[-1]]``.
    """
    return encoder(images)[-1].mean(dim=(2, 3))


class ProbeModule(L.LightningModule):
    """Base of the probes: subclasses set ``self.net`` and implement ``_step(batch, stage)``.

    ``_step`` returns ``(loss, metrics)`` with metrics as scalar tensors; they are logged as
    ``{stage}/{name}``, and test means become ``self.test_summary["mean"]``.
    """

    monitor = ("val/loss", "min")

    def train(self, mode: bool = True) -> ProbeModule:
        """Switch modes but keep a frozen encoder in eval mode (fixed BatchNorm statistics)."""
        super().train(mode)
        if self.hparams.get("freeze_encoder") and hasattr(self, "net"):
            self.net.encoder.eval()
        return self

    def generator(self, batch: dict[str, Any], stage: str) -> torch.Generator:
        """CPU generator seeded from (seed, stage, epoch, batch indices); eval stages use epoch 0."""
        epoch = self.current_epoch if stage == "train" else 0
        words = [int(self.hparams.seed), STAGE_CODES[stage], epoch, *map(int, batch["index"])]
        return torch.Generator().manual_seed(int(np.random.SeedSequence(words).generate_state(1)[0]))

    def _step(self, batch: dict[str, Any], stage: str) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def _run(self, batch: dict[str, Any], stage: str) -> Tensor:
        loss, metrics = self._step(batch, stage)
        size = batch["image"].shape[0]
        log_stage(self, stage, loss, metrics, size)
        if stage == "test":
            self._test_sums["loss"] = self._test_sums.get("loss", 0.0) + loss.detach().double() * size
            for key, value in metrics.items():
                self._test_sums[key] = self._test_sums.get(key, 0.0) + value.detach().double() * size
            self._test_count += size
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """One optimisation step of the probe head (and the encoder when not frozen)."""
        return self._run(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """Validation loss with fixed (epoch-independent) random choices."""
        return self._run(batch, "val")

    def on_test_epoch_start(self) -> None:
        """Reset the per-image test accumulators."""
        self._test_sums: dict[str, Any] = {}
        self._test_count = 0

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """Test loss and metrics, accumulated for :attr:`test_summary`."""
        return self._run(batch, "test")

    def on_test_epoch_end(self) -> None:
        """Means over all test images of every rank: ``self.test_summary = {"mean": {...}}``."""
        reduce = self.trainer.strategy.reduce
        count = float(reduce(torch.tensor(float(self._test_count), device=self.device), reduce_op="sum"))
        means = {}
        for key, total in self._test_sums.items():
            summed = reduce(torch.as_tensor(total, device=self.device, dtype=torch.float64), reduce_op="sum")
            means[key] = float(summed) / max(count, 1.0)
        self.test_summary = {"num_images": int(count), "mean": means}

    def configure_optimizers(self) -> dict[str, Any]:
        """Optimizer over the trainable parameters + epoch-wise schedule."""
        hp = self.hparams
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = build_optimizer(params, hp.optimizer, hp.lr, hp.weight_decay)
        scheduler = build_scheduler(optimizer, hp.scheduler, self.trainer.max_epochs, hp.warmup_epochs)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
