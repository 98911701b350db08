"""One label-refinement round over the training images, as plain functions the module calls.

A round predicts every training image with the peers' averaged probabilities (networks in eval mode,
no augmentation), flips the superpixels whose mean probability of another class exceeds the threshold
(on top of earlier rounds' flips), then rebuilds the full-resolution label set from the given masks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from datasets.image_io import read_image, read_mask
from models.noisy.refinement import apply_flips, merge_flips, superpixel_flips


def main_output(out: Tensor | list[Tensor] | tuple[Tensor, ...]) -> Tensor:
    """The main logits of a network's output (the first of a deep-supervision list)."""
    return out[0] if isinstance(out, (list, tuple)) else out


def peer_probabilities(nets: Sequence[nn.Module], image: Tensor) -> Tensor:
    """Softmax probabilities averaged over the peers (deep-supervision heads: the main output).

    Shape:
        image ``[B, C_in, H, W]`` -> ``[B, C, H, W]``.
    """
    return torch.stack([main_output(net(image)).softmax(1) for net in nets]).mean(0)


@torch.no_grad()
def update_flips(
    nets: Sequence[nn.Module],
    items: Iterable[dict[str, Any]],
    flips: dict[str, Tensor],
    threshold: float,
    device: torch.device,
) -> dict[str, dict[str, int]]:
    """Predict each item and merge this round's superpixel flips into ``flips`` (in place).

    Args:
        nets: The peer networks (switched to eval mode for the round, then restored).
        items: Dataset items with ``image``, ``mask``, ``superpixels`` and ``id`` (unaugmented).
        flips: Per-id flip table (superpixel -> new class, -1 for none), updated in place.
        threshold: Mean probability above which a disagreeing superpixel is flipped.
        device: Where the networks run.

    Returns:
        ``{id: {"flipped_superpixels": n}}`` for this round.
    """
    was_training = [net.training for net in nets]
    for net in nets:
        net.eval()
    stats: dict[str, dict[str, int]] = {}
    try:
        for item in items:
            probs = peer_probabilities(nets, item["image"][None].to(device))[0]
            superpixels = item["superpixels"].to(device)
            key = item["id"]
            old = flips.get(key)
            labels = item["mask"].to(device)
            if old is not None:
                labels = apply_flips(labels, superpixels, old)
            new = superpixel_flips(probs, labels, superpixels, threshold)
            flips[key] = merge_flips(old, new).cpu()
            stats[key] = {"flipped_superpixels": int((new >= 0).sum())}
    finally:
        for net, mode in zip(nets, was_training, strict=True):
            net.train(mode)
    return stats


def refined_masks(
    records: Sequence[Any],
    flips: dict[str, Tensor],
    superpixel_hook: Callable[[Any, np.ndarray], dict[str, np.ndarray]],
    num_classes: int,
    in_channels: int,
    stats: dict[str, dict[str, int]],
) -> dict[str, np.ndarray]:
    """Apply the flip tables to the given masks at full resolution.

    Args:
        records: Training records (``id``, ``image``, ``mask`` paths).
        flips: Per-id flip tables (every record must have one).
        superpixel_hook: The DataModule's hook giving a record's full-resolution superpixel map.
        num_classes: Classes of the masks.
        in_channels: Image channels (for the hook's image read).
        stats: Per-id statistics, completed here with ``changed_pixels``.

    Returns:
        ``{id: refined label map}``.
    """
    masks = {}
    for record in records:
        given = torch.from_numpy(read_mask(record.mask, num_classes))
        image = read_image(record.image, in_channels)
        superpixels = torch.from_numpy(superpixel_hook(record, image)["superpixels"]).long()
        refined = apply_flips(given, superpixels, flips[record.id]).numpy()
        stats[record.id]["changed_pixels"] = int((refined != given.numpy()).sum())
        masks[record.id] = refined
    return masks
