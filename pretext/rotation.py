"""Rotation probe: predict which of 0/90/180/270 degrees an image was turned (linear head, CE)."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from pretext.ops import rotate_batch
from pretext.probe_base import ProbeModule, pooled_deepest


class RotationProbe(ProbeModule):
    """Linear classifier of the rotation on the pooled deepest encoder feature.

    Args:
        **kwargs: :class:`~pretext.probe_base.ProbeModule`'s (``in_channels``, ``encoder_*``,
            ``freeze_encoder``, ``optim``, ``seed``: the seed of the rotations).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.net = self.build_net(self.hparams.in_channels, encoder_only=True)
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
