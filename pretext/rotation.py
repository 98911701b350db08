"""Rotation probe: predict which of 0/90/180/270 degrees an image was turned (linear head, CE)."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from models.optim import OptimConfig
from pretext.ops import rotate_batch
from pretext.probe_base import PROBE_OPTIM, ProbeModule, pooled_deepest


class RotationProbe(ProbeModule):
    """Linear classifier of the rotation on the pooled deepest encoder feature.

    Args:
        in_channels: Image channels (linked from the data section).
        encoder_name: smp encoder name (must match the MIM checkpoint's).
        encoder_weights: Local encoder weights for a standalone run (None = random init).
        encoder_checkpoint: MIM checkpoint whose ``encoder.*`` initialises the encoder (probe mode).
        freeze_encoder: Train only the head (probe mode, the paper's setting).
        optim: Optimizer and schedule (Adam 1e-3, cosine per epoch by default).
        seed: Seed of the rotations (per batch from seed, stage, epoch and indices).
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
        self.save_task_hyperparameters()
        self.net = self.build_net(in_channels, encoder_only=True)
        self.head = nn.Linear(self.net.out_channels, 4)

    def forward(self, images: Tensor) -> Tensor:
        """Rotation logits.

        Shape:
            ``[B, C, S, S]`` -> ``[B, 4]``.
        """
        return self.head(pooled_deepest(self.net.encoder, images))

    def _step(self, batch: dict[str, Any], stage: str) -> tuple[Tensor, dict[str, Tensor]]:
        rotated, labels = rotate_batch(batch["image"], self.generator(batch, stage))
        logits = self(rotated)
        loss = F.cross_entropy(logits, labels)
        return loss, {"accuracy": (logits.argmax(1) == labels).float().mean()}
