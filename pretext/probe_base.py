"""Shared parts of the pretext probes: encoder from an MIM checkpoint, freezing, seeding, test summary.

autoSMIM's policy search evaluates frozen encoders initialised from the MIM checkpoint; the same
modules train standalone when no checkpoint is given and ``freeze_encoder`` is False.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from models.networks.registry import create_model
from models.optim import OptimConfig
from models.task import TaskModule
from models.test_rows import summarise_rows
from models.transfer import load_pretrained
from pretext.ops import log_stage, pretext_predict_message
from pretext.superpixel_masking import STAGE_CODES

log = logging.getLogger(__name__)

# The probes' optimisation defaults: Adam 1e-3, cosine per epoch.
PROBE_OPTIM = OptimConfig(name="adam", lr=1e-3, scheduler="cosine")


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


class ProbeModule(TaskModule):
    """Base of the probes: subclasses set ``self.net`` and implement ``_step(batch, stage)``.

    ``_step`` returns ``(loss, metrics)`` with metrics as scalar tensors; they are logged as
    ``{stage}/{name}``. At test, each batch becomes one row (weighted by its image count), so the
    test summary holds the means over images.

    The probes' shared arguments are declared here once; each probe's ``__init__`` adds its own and
    forwards the rest with ``**kwargs`` (the config schema and the saved hyper-parameters hold both).

    Args:
        in_channels: Image channels (linked from the data section).
        encoder_name: smp encoder name (must match the MIM checkpoint's).
        encoder_weights: Local encoder weights for a standalone run (None = random init).
        encoder_checkpoint: MIM checkpoint whose ``encoder.*`` initialises the encoder (probe mode).
        freeze_encoder: Train only the probe's head (and colorization's decoder): probe mode, the
            paper's setting.
        optim: Optimizer and schedule (Adam 1e-3, cosine per epoch by default).
        seed: Seed of the probe's random choices (per batch from seed, stage, epoch and indices).
    """

    def __init__(
        self,
        in_channels: int = 3,
        encoder_name: str = "tu-tf_efficientnetv2_s",
        encoder_weights: str | None = None,
        encoder_checkpoint: str | None = None,
        freeze_encoder: bool = True,
        optim: OptimConfig = PROBE_OPTIM,
        seed: int = 42,
    ) -> None:
        super().__init__(optim)
        # Called here, inside the subclass's __init__: the saved hyper-parameters are this class's
        # arguments (defaults included) plus the subclass's own.
        self.save_task_hyperparameters()

    def train(self, mode: bool = True) -> ProbeModule:
        """Switch modes but keep a frozen encoder in eval mode (fixed BatchNorm statistics)."""
        super().train(mode)
        if self.hparams.get("freeze_encoder") and hasattr(self, "net"):
            self.net.encoder.eval()
        return self

    def build_net(self, out_channels: int, encoder_only: bool) -> nn.Module:
        """:func:`build_probe_net` from this probe's ``in_channels`` and ``encoder_*`` hyper-parameters."""
        hp = self.hparams
        return build_probe_net(
            hp.in_channels,
            out_channels,
            hp.encoder_name,
            hp.encoder_weights,
            hp.encoder_checkpoint,
            hp.freeze_encoder,
            encoder_only=encoder_only,
        )

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
            # One row per batch: the probes' metrics are batch means (e.g. jigsaw accuracy).
            first = int(batch["index"][0])
            row = {"id": f"batch_from_{first:07d}", "images": size, "loss": float(loss)}
            self.add_test_rows([{**row, **{k: float(v) for k, v in metrics.items()}}])
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """One optimisation step of the probe head (and the encoder when not frozen)."""
        return self._run(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """Validation loss with fixed (epoch-independent) random choices."""
        return self._run(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """Test loss and metrics of the batch, kept as one row."""
        return self._run(batch, "test")

    def summarise_test(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Means over images (rows are batches, weighted by their ``images``)."""
        return summarise_rows(rows, weight_key="images")

    def predict_step(self, batch: dict[str, Any], batch_idx: int = 0) -> Tensor:
        """Not a segmentation model.

        Raises:
            TypeError: Always; a probe checkpoint is not a segmentation model.
        """
        raise TypeError(pretext_predict_message(self))
