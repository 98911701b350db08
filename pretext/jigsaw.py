"""Jigsaw probe: which of the 24 orderings shuffled the 2x2 tiles of an image (CE)."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from models.optim import OptimConfig
from pretext.ops import JIGSAW_PERMUTATIONS, jigsaw_batch
from pretext.probe_base import PROBE_OPTIM, ProbeModule, pooled_deepest


class JigsawProbe(ProbeModule):
    """Per-tile pooled deepest feature -> Linear(512) -> ReLU; the 4 tiles concatenated -> Linear(24).

    The ReLU between the two linear layers is this framework's choice (without it the two layers
    collapse into one linear map).

    Args:
        in_channels: Image channels (linked from the data section).
        encoder_name: smp encoder name (must match the MIM checkpoint's).
        encoder_weights: Local encoder weights for a standalone run (None = random init).
        encoder_checkpoint: MIM checkpoint whose ``encoder.*`` initialises the encoder (probe mode).
        freeze_encoder: Train only the heads (probe mode, the paper's setting).
        tile_features: Width of the per-tile projection (paper: 512).
        optim: Optimizer and schedule (Adam 1e-3, cosine per epoch by default).
        seed: Seed of the permutations (per batch from seed, stage, epoch and indices).
    """

    def __init__(
        self,
        in_channels: int = 3,
        encoder_name: str = "tu-tf_efficientnetv2_s",
        encoder_weights: str | None = None,
        encoder_checkpoint: str | None = None,
        freeze_encoder: bool = True,
        tile_features: int = 512,
        optim: OptimConfig = PROBE_OPTIM,
        seed: int = 42,
    ) -> None:
        super().__init__(optim)
        self.save_task_hyperparameters()
        self.net = self.build_net(in_channels, encoder_only=True)
        self.tile_head = nn.Sequential(nn.Linear(self.net.out_channels, tile_features), nn.ReLU(inplace=True))
        self.head = nn.Linear(4 * tile_features, len(JIGSAW_PERMUTATIONS))

    def forward(self, tiles: Tensor) -> Tensor:
        """Permutation logits from tiles in their (shuffled) grid order.

        Shape:
            ``[B, 4, C, h, w]`` -> ``[B, 24]``.
        """
        b = tiles.shape[0]
        features = pooled_deepest(self.net.encoder, tiles.flatten(0, 1))
        return self.head(self.tile_head(features).reshape(b, -1))

    def _step(self, batch: dict[str, Any], stage: str) -> tuple[Tensor, dict[str, Tensor]]:
        tiles, labels = jigsaw_batch(batch["image"], self.generator(batch, stage))
        logits = self(tiles)
        loss = F.cross_entropy(logits, labels)
        return loss, {"accuracy": (logits.argmax(1) == labels).float().mean()}
