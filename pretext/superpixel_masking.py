"""Turn a batch's superpixel maps into pixel masks for masked image modelling (autoSMIM's (k, n) policy).

Maps come from the batch (``superpixels.source`` ``cache``/``cpu``: computed before augmentation and
augmented jointly with the image) or are computed here on the training device from the augmented,
de-normalised image (``source: gpu``). Each sample's draw is seeded from ``(seed, stage, epoch,
index)``, so a seed reproduces the masks whatever the batch composition, device or worker count.
The drawable pool is every superpixel present in the map (or ``0..count-1`` when the batch carries
``superpixel_counts`` of the un-augmented maps). A request the map cannot satisfy raises an error
naming k, n and the real count, or is clamped when configured and reported in ``clamped``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from datasets.superpixels import superpixels

log = logging.getLogger(__name__)

STAGE_CODES = {"train": 0, "val": 1, "test": 2, "predict": 3}
SOURCES = ("batch", "gpu")


def sample_seed(seed: int, stage: str, epoch: int, index: int) -> int:
    """A 63-bit seed for one sample's mask, independent of batch composition.

    Raises:
        ValueError: For an unknown stage.
    """
    if stage not in STAGE_CODES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {sorted(STAGE_CODES)}")
    state = np.random.SeedSequence([int(seed), STAGE_CODES[stage], int(epoch), int(index)]).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


@dataclass
class MaskBatch:
    """Masks of one batch.

    Attributes:
        mask: Bool ``[B, H, W]``, True where a chosen superpixel lies.
        masked_fraction: ``[B]`` float, fraction of each image's pixels that are masked.
        counts: ``[B]`` int64, drawable superpixels per image (the real count).
        clamped: ``[B]`` bool, True where the request exceeded the map and was clamped.
    """

    mask: Tensor
    masked_fraction: Tensor
    counts: Tensor
    clamped: Tensor


def _excess_error(
    k: int | None, n: int | None, ratio: float | None, count: int, what: str, index: int
) -> str:
    policy = f"n={n}" if n is not None else f"mask_ratio={ratio}"
    return (
        f"superpixel masking policy k={k if k is not None else '?'}, {policy} is impossible for sample "
        f"index {index}: {what} (real superpixel count {count}; SLIC returns fewer segments than k and "
        "crops remove more). Lower n_masked / mask_ratio, raise k, or set on_excess: clamp."
    )


def _choose_ids(
    labels: Tensor,
    generator: torch.Generator,
    n: int | None,
    ratio: float | None,
    pool_size: int | None,
    on_excess: str,
    k: int | None,
    index: int,
) -> tuple[Tensor, int, bool]:
    """Chosen labels of one image, its real count and whether the request was clamped."""
    ids, areas = torch.unique(labels, return_counts=True)
    if pool_size is not None and n is not None:
        ids = torch.arange(pool_size, device=labels.device, dtype=labels.dtype)
    count = int(ids.numel())
    order = torch.randperm(count, generator=generator).to(labels.device)
    if n is not None:
        if n > count:
            if on_excess == "error":
                raise ValueError(_excess_error(k, n, None, count, f"cannot mask n={n} of {count}", index))
            return ids, count, True
        return ids[order[:n]], count, False
    covered = torch.cumsum(areas[order.to(areas.device)], 0).float()
    target = float(ratio) * labels.numel()
    if covered[-1] < target:
        if on_excess == "error":
            raise ValueError(_excess_error(k, None, ratio, count, "the superpixels cover too little", index))
        return ids, count, True
    stop = int(torch.searchsorted(covered, torch.tensor([target], device=covered.device)).item()) + 1
    return ids[order[:stop]], count, False


def _check_mask_request(
    labels: Tensor, seeds: list[int], n: int | None, ratio: float | None, on_excess: str
) -> None:
    """Refuse bad arguments of :func:`draw_superpixel_masks` before any drawing."""
    if labels.ndim != 3:
        raise ValueError(f"superpixel labels must be [B, H, W], got shape {tuple(labels.shape)}")
    if (n is None) == (ratio is None):
        raise ValueError(f"give exactly one of n_masked or mask_ratio, got n={n!r}, ratio={ratio!r}")
    if n is not None and n < 1:
        raise ValueError(f"n_masked must be >= 1, got {n}")
    if ratio is not None and not 0.0 < ratio < 1.0:
        raise ValueError(f"mask_ratio must lie in (0, 1), got {ratio}")
    if on_excess not in ("error", "clamp"):
        raise ValueError(f"on_excess must be 'error' or 'clamp', got {on_excess!r}")
    if len(seeds) != labels.shape[0]:
        raise ValueError(f"need one seed per image: {len(seeds)} seeds for {labels.shape[0]} maps")


def draw_superpixel_masks(
    labels: Tensor,
    seeds: list[int],
    n: int | None = None,
    ratio: float | None = None,
    on_excess: Literal["error", "clamp"] = "error",
    pool_sizes: Tensor | None = None,
    k: int | None = None,
    indices: list[int] | None = None,
) -> MaskBatch:
    """Mask ``n`` random superpixels (or random superpixels up to ``ratio`` of the area) per image.

    Args:
        labels: Integer superpixel maps (any device).
        seeds: One seed per image (see :func:`sample_seed`); drawing happens on a CPU generator.
        n: Superpixels to mask per image, drawn uniformly without replacement.
        ratio: Alternative to ``n``: add random superpixels until this fraction of pixels is masked.
        on_excess: ``error`` raises when the map has fewer than ``n`` superpixels (or too little
            area); ``clamp`` masks every drawable superpixel and flags the image in ``clamped``.
        pool_sizes: Optional ``[B]`` counts of the un-augmented maps: labels are then drawn from
            ``0..count-1`` (an augmented crop keeps only some; absent ones mask nothing), which keeps
            the expected masked fraction at ``n / count`` whatever the crop. Ignored with ``ratio``.
        k: The requested ``n_segments``, only for error messages.
        indices: Dataset indices, only for error messages.

    Returns:
        The :class:`MaskBatch`.

    Shape:
        labels ``[B, H, W]`` -> mask ``[B, H, W]``.

    Raises:
        ValueError: Not exactly one of ``n``/``ratio``, bad values, wrong shapes, or an impossible
            request with ``on_excess="error"`` (the message names k, n and the real count).
    """
    _check_mask_request(labels, seeds, n, ratio, on_excess)
    indices = indices if indices is not None else list(range(labels.shape[0]))
    masks, counts, clamped = [], [], []
    for b in range(labels.shape[0]):
        generator = torch.Generator().manual_seed(int(seeds[b]))
        pool = None if pool_sizes is None else int(pool_sizes[b])
        chosen, count, was_clamped = _choose_ids(
            labels[b], generator, n, ratio, pool, on_excess, k, indices[b]
        )
        masks.append(torch.isin(labels[b], chosen))
        counts.append(count)
        clamped.append(was_clamped)
    mask = torch.stack(masks)
    return MaskBatch(
        mask=mask,
        masked_fraction=mask.flatten(1).float().mean(1),
        counts=torch.tensor(counts, dtype=torch.int64),
        clamped=torch.tensor(clamped, dtype=torch.bool),
    )


@dataclass
class SuperpixelMasker:
    """Masks for a batch dict: maps from ``batch["superpixels"]`` or computed on the device.

    Attributes:
        n_masked: Superpixels masked per image (autoSMIM's ``n``); None when ``mask_ratio`` is used.
        mask_ratio: Alternative to ``n_masked``: masked area fraction.
        on_excess: ``error`` or ``clamp`` (see :func:`draw_superpixel_masks`).
        source: ``batch`` (the DataModule serves ``superpixels``) or ``gpu`` (computed here).
        method: Superpixel method for ``gpu``.
        params: Method parameters for ``gpu`` (e.g. ``{n_segments: 512, compactness: 10}``).
        seed: Base seed of the draws.
        k: Requested ``n_segments`` for messages (taken from ``params`` for ``gpu``).
    """

    n_masked: int | None = 128
    mask_ratio: float | None = None
    on_excess: Literal["error", "clamp"] = "error"
    source: Literal["batch", "gpu"] = "batch"
    method: str = "slic"
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    k: int | None = None
    clamped: dict[str, list[int]] = field(default_factory=dict, repr=False)
    """Per stage: ``[clamped images, images]`` since the last :meth:`report_clamped`."""

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"superpixel_source must be one of {SOURCES}, got {self.source!r}")
        if self.source == "gpu" and self.k is None:
            self.k = self.params.get("n_segments")

    def labels_of(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor | None]:
        """The batch's superpixel maps ``[B, H, W]`` and optional un-augmented pool sizes ``[B]``."""
        if self.source == "gpu":
            unit = (batch["image"].detach().float() * 0.5 + 0.5).clamp(0.0, 1.0)
            labels, counts = superpixels(unit, method=self.method, backend="torch", **self.params)
            return labels.long(), counts
        if "superpixels" not in batch:
            raise KeyError(
                "superpixel_source 'batch' needs batch['superpixels']: set data.init_args.superpixels "
                "with source 'cache' or 'cpu', or use model.init_args.superpixel_source: gpu"
            )
        return batch["superpixels"], batch.get("superpixel_counts")

    def __call__(self, batch: dict[str, Any], stage: str, epoch: int) -> MaskBatch:
        """Draw the masks of a batch (``image`` ``[B, C, H, W]``, ``index`` ``[B]``).

        Validation and test use epoch 0 whatever ``epoch`` is, so their masks never change.
        """
        labels, pool_sizes = self.labels_of(batch)
        if labels.shape[-2:] != batch["image"].shape[-2:]:
            raise ValueError(
                f"superpixel maps {tuple(labels.shape)} do not match images {tuple(batch['image'].shape)}"
            )
        indices = [int(i) for i in batch["index"]]
        draw_epoch = epoch if stage == "train" else 0
        seeds = [sample_seed(self.seed, stage, draw_epoch, i) for i in indices]
        masks = draw_superpixel_masks(
            labels, seeds, self.n_masked, self.mask_ratio, self.on_excess, pool_sizes, self.k, indices
        )
        tally = self.clamped.setdefault(stage, [0, 0])
        tally[0] += int(masks.clamped.sum())
        tally[1] += len(indices)
        return masks

    def report_clamped(self, stage: str, epoch: int) -> float | None:
        """Warn once for the epoch when ``on_excess: clamp`` clamped images of ``stage``; reset the tally.

        Returns:
            The clamped fraction of the stage's images since the last report (None: none drawn).
        """
        clamped, total = self.clamped.pop(stage, [0, 0])
        if total == 0:
            return None
        if clamped:
            policy = (
                f"n_masked={self.n_masked}" if self.n_masked is not None else f"mask_ratio={self.mask_ratio}"
            )
            log.warning(
                "on_excess: clamp: %s epoch %d: %d of %d images (%.1f%%) had fewer superpixels than "
                "k=%s, %s asks for and got every superpixel masked",
                stage, epoch, clamped, total, 100.0 * clamped / total, self.k, policy,
            )  # fmt: skip
        return clamped / total
