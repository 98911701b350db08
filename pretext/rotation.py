"""Rotation probe: predict which of 0/90/180/270 degrees an image was turned (linear head, CE)."""

from __future__ import annotations

from typing import Any, Literal

import torch.nn.functional as F
from torch import Tensor, nn

from pretext.ops import rotate_batch
from pretext.probe_base import ProbeModule, build_probe_net, pooled_deepest


class RotationProbe(ProbeModule):
    """Linear classifier of the rotation on the pooled deepest encoder feature.

    Args:
        in_channels: Image channels (linked from the data section).
        encoder_name: smp encoder name (must match the MIM checkpoint's).
        encoder_weights: Local encoder weights for a standalone run (None = random init).
        encoder_checkpoint: MIM checkpoint whose ``encoder.*`` initialises the encoder (probe mode).
        freeze_encoder: Train only the head (probe mode, the paper's setting).
        optimizer: ``adam``, ``adamw`` or ``sgd``.
        lr: Base learning rate.
        weight_decay: Weight decay.
        scheduler: ``cosine``, ``poly``, ``step`` or ``none``.
        warmup_epochs: Linear warm-up epochs.
        seed: Seed of the rotations (per batch from seed, stage, epoch and indices).
    """

    def __init__(
        self,
        in_channels: int = 3,
        encoder_name: str = "tu-tf_efficientnetv2_s",
        encoder_weights: str | None = None,
        encoder_checkpoint: str | None = None,
        freeze_encoder: bool = True,
        optimizer: Literal["adam", "adamw", "sgd"] = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        scheduler: Literal["cosine", "poly", "step", "none"] = "cosine",
        warmup_epochs: int = 0,
        seed: int = 42,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = build_probe_net(
            in_channels,
            in_channels,
            encoder_name,
            encoder_weights,
            encoder_checkpoint,
            freeze_encoder,
            encoder_only=True,
        )
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
