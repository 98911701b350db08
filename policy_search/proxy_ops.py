"""The proxy objective's plain functions: frozen models from checkpoints, one batch's losses.

Used by :class:`policy_search.proxy_module.PolicyProxyObjective`.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.checkpoint_io import check_checkpoint, safe_loading
from pretext.ops import fill_masked, jigsaw_batch, masked_mse
from pretext.superpixel_masking import draw_superpixel_masks, sample_seed


def load_frozen(class_path: str, checkpoint: str, **overrides: Any) -> L.LightningModule:
    """Load a LightningModule from its checkpoint, in eval mode with gradients off.

    Args:
        class_path: ``module.Class`` of the saved module, e.g. ``pretext.jigsaw.JigsawProbe``.
        checkpoint: Lightning checkpoint written by that module's training run.
        **overrides: Hyper-parameters replacing the saved ones (e.g. ``encoder_checkpoint=None``: the
            full state dict is loaded anyway, so the file it named need not exist any more).

    Returns:
        The frozen module on the CPU.

    Raises:
        FileNotFoundError: Missing checkpoint (never a silent random init).
        ValueError: A ``class_path`` that does not name a LightningModule class.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {checkpoint} for {class_path} does not exist (train it first, e.g. "
            "`python -m policy_search.prepare_sample` for the sample search)"
        )
    module_name, _, class_name = class_path.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name, None) if module_name else None
    if not (isinstance(cls, type) and issubclass(cls, L.LightningModule)):
        raise ValueError(f"{class_path!r} does not name a LightningModule class (module.Class)")
    check_checkpoint(path)
    with safe_loading() as weights_only:
        model = cls.load_from_checkpoint(
            str(path), map_location="cpu", weights_only=weights_only, **overrides
        )
    model.requires_grad_(False)
    return model.eval()


@dataclass
class BatchLosses:
    """Losses of one batch under one policy.

    Attributes:
        jigsaw: Cross-entropy of the jigsaw probe on the shuffled masked images.
        inpainting: Masked MSE of the inpainting model.
        masked_fraction: Mean fraction of masked pixels.
    """

    jigsaw: float
    inpainting: float
    masked_fraction: float


def superpixel_counts(labels: Tensor) -> list[int]:
    """Real number of distinct superpixels in each map.

    Shape:
        labels ``[B, H, W]`` -> ``B`` ints.
    """
    return [int(torch.unique(labels[b]).numel()) for b in range(labels.shape[0])]


def policy_masks(labels: Tensor, indices: list[int], n: int, seed: int, k: int | None = None) -> Tensor:
    """Masks of ``n`` superpixels per image, seeded per sample so a (k, n, seed) is reproducible.

    Shape:
        labels ``[B, H, W]`` -> float ``[B, 1, H, W]``.
    """
    seeds = [sample_seed(seed, "test", 0, i) for i in indices]
    masks = draw_superpixel_masks(labels, seeds, n=n, on_excess="error", k=k, indices=indices)
    return masks.mask.unsqueeze(1).float()


def jigsaw_generator(seed: int, indices: list[int]) -> torch.Generator:
    """Generator of the tile permutations: depends on seed and image indices only, not on (k, n)."""
    state = np.random.SeedSequence([int(seed), 7, *indices]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


@torch.no_grad()
def evaluate_batch(
    inpainting: nn.Module,
    jigsaw: nn.Module,
    batch: dict[str, Any],
    n: int,
    seed: int,
    fill: str = "zero",
    k: int | None = None,
) -> BatchLosses:
    """Jigsaw and inpainting losses of one batch masked with ``n`` superpixels per image.

    Args:
        inpainting: Module called as ``inpainting(masked_image, mask)`` returning the reconstruction.
        jigsaw: Module called on tiles ``[B, 4, C, h, w]`` returning 24 permutation logits.
        batch: ``image`` ``[B, C, H, W]``, ``superpixels`` ``[B, H, W]``, ``index`` ``[B]``.
        n: Superpixels masked per image (must be below every image's real count).
        seed: Seed of masks and permutations.
        fill: How hidden pixels are filled (``zero`` = black, the paper).
        k: Requested superpixels, for error messages.

    Returns:
        The :class:`BatchLosses`.
    """
    image = batch["image"]
    indices = [int(i) for i in batch["index"]]
    mask = policy_masks(batch["superpixels"], indices, n, seed, k).to(image.device, image.dtype)
    masked = fill_masked(image, mask, fill)  # type: ignore[arg-type]
    inpainting_loss = masked_mse(inpainting(masked, mask), image, mask)
    tiles, labels = jigsaw_batch(masked, jigsaw_generator(seed, indices))
    jigsaw_loss = F.cross_entropy(jigsaw(tiles), labels)
    return BatchLosses(float(jigsaw_loss), float(inpainting_loss), float(mask.mean()))


def nni_active() -> bool:
    """True inside an NNI trial (the training service sets ``NNI_PLATFORM``)."""
    return bool(os.environ.get("NNI_PLATFORM")) and os.environ.get("NNI_PLATFORM") != "unittest"
