"""Jigsaw probe: which of the 24 orderings shuffled the 2x2 tiles of an image (CE)."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from pretext.ops import JIGSAW_PERMUTATIONS, jigsaw_batch
from pretext.probe_base import ProbeModule, pooled_deepest


class JigsawProbe(ProbeModule):
    """Per-tile pooled deepest feature -> Linear(512) -> ReLU; the 4 tiles concatenated -> Linear(24).

    The ReLU between the two linear layers is this framework's choice (without it the two layers
    collapse into one linear map).

    Args:
        tile_features: Width of the per-tile projection (paper: 512).
        **kwargs: :class:`~pretext.probe_base.ProbeModule`'s (``in_channels``, ``encoder_*``,
            ``freeze_encoder``, ``optim``, ``seed``: the seed of the permutations).
    """

    def __init__(self, tile_features: int = 512, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.net = self.build_net(self.hparams.in_channels, encoder_only=True)
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
