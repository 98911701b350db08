"""The training sampler and loader: a seeded shuffle per epoch whose position survives a resume.

:class:`EpochShuffleSampler` carries the epoch in every index and can start an epoch part-way.
:class:`ResumableDataLoader` is a ``DataLoader`` with ``state_dict`` / ``load_state_dict``, the
interface Lightning's fit loop saves in every checkpoint (``loops.fit_loop.state_dict.combined_loader``)
and restores before it iterates again, so a run resumed mid-epoch sees exactly the batches it had
not trained on yet.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler


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
        self._start: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch of the next pass."""
        self.epoch = int(epoch)

    def start_next_pass_at(self, epoch: int, position: int) -> None:
        """Let the next pass, if it is one of ``epoch``, skip the first ``position`` indices of its order."""
        self._start = (int(epoch), int(position))

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        self.epoch += 1
        start_epoch, position = self._start or (epoch, 0)
        self._start = None
        order_seed = int(np.random.SeedSequence([self.seed, epoch]).generate_state(1)[0])
        generator = torch.Generator().manual_seed(order_seed)
        order = torch.randperm(self.length, generator=generator).tolist()
        for index in order[position if start_epoch == epoch else 0 :]:
            yield index, epoch


class ResumableDataLoader(DataLoader):
    """``DataLoader`` whose state is the epoch of its current pass and the batches it has handed out.

    The count is taken where batches leave the loader in the main process, so batches that worker
    processes prepared ahead (``prefetch_factor``) are not counted; Lightning does not prefetch from a
    loader with a length, so the count is what the fit loop trained on when it saves a checkpoint.

    On ``load_state_dict`` the next pass continues that epoch after the batches already handed out: an
    :class:`EpochShuffleSampler` starts part-way (no sample is read twice); any other sampler (e.g. the
    one DDP substitutes) has the consumed batches drawn and dropped. A pass of another epoch (the saved
    one had ended) starts from its beginning. The pass starts at its first ``next()``, after Lightning
    has set the sampler's epoch, and every pass seeds the worker base seed from ``(seed, epoch)`` through
    the loader's own generator, so iterating never draws from the global torch RNG.

    Args:
        *args: Passed to ``DataLoader``.
        **kwargs: Passed to ``DataLoader``; ``generator`` defaults to a private one.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("generator") is None:
            kwargs["generator"] = torch.Generator()
        super().__init__(*args, **kwargs)
        self._epoch = 0
        self._yielded = 0
        self._passes = 0
        self._resume_at: tuple[int, int] | None = None

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "batches"}``: the current pass's epoch and the batches handed out in it."""
        return {"epoch": self._epoch, "batches": self._yielded}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue epoch ``state["epoch"]`` after ``state["batches"]`` batches on the next pass."""
        self._resume_at = (int(state["epoch"]), int(state["batches"]))

    def _pass_epoch(self) -> int:
        epoch = getattr(self.sampler, "epoch", None)
        return int(epoch) if isinstance(epoch, int) else self._passes

    def __iter__(self) -> Iterator[Any]:
        return self._batches()

    def _batches(self) -> Iterator[Any]:
        epoch = self._pass_epoch()
        resume_epoch, done = self._resume_at or (epoch, 0)
        self._resume_at = None
        skip = done if resume_epoch == epoch else 0
        sampler_skips = isinstance(self.sampler, EpochShuffleSampler) and self.batch_sampler is not None
        if sampler_skips and skip:
            self.sampler.start_next_pass_at(epoch, skip * int(self.batch_size or 1))
        words = [int(getattr(self.sampler, "seed", 0)), epoch]
        self.generator.manual_seed(int(np.random.SeedSequence(words).generate_state(1)[0]))
        self._epoch, self._yielded, self._passes = epoch, skip, self._passes + 1
        iterator = super().__iter__()
        if not sampler_skips:
            for _ in range(skip):
                next(iterator)
        for batch in iterator:
            self._yielded += 1
            yield batch
