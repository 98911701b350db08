"""Samplers of the DataModules: a seeded shuffle per epoch that carries the epoch in every index."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


class EpochShuffleSampler(Sampler):
    """Seeded shuffle whose order depends only on ``(seed, epoch)``; yields ``(index, epoch)``.

    Carrying the epoch in every index lets persistent workers reseed augmentations per epoch.
    Lightning calls ``set_epoch`` each epoch; without it (e.g. when wrapped for DDP) the epoch
    advances by one per pass.

    Args:
        length: Dataset length.
        seed: Shuffle seed.
    """

    def __init__(self, length: int, seed: int) -> None:
        self.length = length
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch of the next pass."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        self.epoch += 1
        order_seed = int(np.random.SeedSequence([self.seed, epoch]).generate_state(1)[0])
        generator = torch.Generator().manual_seed(order_seed)
        for index in torch.randperm(self.length, generator=generator).tolist():
            yield index, epoch
