"""Superpixel-wise label refinement: when to refine (loss-gap rule), what to flip, atomic label sets.

A refinement round averages the two networks' probabilities within each superpixel of a training
image and flips the superpixel's (majority) label to the predicted class where the prediction
disagrees and its mean probability exceeds ``threshold``. Flips are kept as a per-image table
``flip[superpixel id] = new class`` (-1: unchanged), which applies to any augmented view of the image
because superpixel maps are warped together with the masks.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from models.noisy.superpixel_ops import segment_means


class LossGapTracker:
    """Refinement trigger: the epoch loss gap has not reached a new maximum for ``patience`` epochs.

    Args:
        patience: Epochs without a new maximum that trigger a refinement.
    """

    def __init__(self, patience: int = 5) -> None:
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.patience = patience
        self.reset()

    def reset(self) -> None:
        """Forget the history (after a refinement round)."""
        self.best = -float("inf")
        self.since_best = 0

    def update(self, gap: float) -> bool:
        """Record one epoch's gap; True when ``patience`` epochs passed without a new maximum."""
        if gap > self.best:
            self.best = float(gap)
            self.since_best = 0
        else:
            self.since_best += 1
        return self.since_best >= self.patience

    def state_dict(self) -> dict[str, float]:
        """Serialisable state (for checkpoints)."""
        return {"best": self.best, "since_best": self.since_best, "patience": self.patience}

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        """Restore :meth:`state_dict`."""
        self.best, self.since_best = float(state["best"]), int(state["since_best"])


def superpixel_flips(probs: Tensor, labels: Tensor, superpixels: Tensor, threshold: float = 0.8) -> Tensor:
    """Flip table of one image: the new class of each confidently mislabelled superpixel.

    Args:
        probs: Probabilities ``[C, H, W]`` (average of both networks).
        labels: Current labels ``[H, W]``.
        superpixels: Ids ``[H, W]``.
        threshold: Minimum mean probability of the predicted class for a flip.

    Returns:
        int64 ``[S]`` with ``S = max id + 1``: the new class, or -1 where the label stays.
    """
    num_segments = int(superpixels.max()) + 1
    num_classes = probs.shape[0]
    mean_probs, counts = segment_means(probs, superpixels, num_segments)
    one_hot = torch.zeros(num_segments, num_classes, device=probs.device)
    one_hot.index_add_(
        0,
        superpixels.reshape(-1).long(),
        torch.nn.functional.one_hot(labels.reshape(-1).long(), num_classes).float(),
    )
    majority = one_hot.argmax(1)
    confidence, predicted = mean_probs.max(1)
    flip = (counts > 0) & (predicted != majority) & (confidence > threshold)
    return torch.where(flip, predicted, torch.full_like(predicted, -1))


def merge_flips(old: Tensor | None, new: Tensor) -> Tensor:
    """Combine an earlier flip table with a newer one (newer flips win)."""
    if old is None:
        return new.clone()
    size = max(old.numel(), new.numel())
    out = torch.full((size,), -1, dtype=torch.long, device=new.device)
    out[: old.numel()] = old.to(new.device)
    changed = new >= 0
    out[: new.numel()][changed] = new[changed]
    return out


def apply_flips(labels: Tensor, superpixels: Tensor, flips: Tensor) -> Tensor:
    """Labels with every flipped superpixel set to its new class.

    Shape:
        labels, superpixels ``[H, W]`` (or ``[B, H, W]`` with one table), flips ``[S]``.
    """
    ids = superpixels.long().clamp_max(flips.numel() - 1)
    inside = superpixels.long() < flips.numel()
    new = flips.to(labels.device)[ids]
    return torch.where(inside & (new >= 0), new, labels)


def write_label_set_atomic(
    out_dir: str | Path,
    masks: Mapping[str, np.ndarray],
    manifest: dict[str, Any],
    write_mask: Callable[[Path, np.ndarray], None],
) -> Path:
    """Write a complete label set into a temporary folder, then rename it into place.

    An interruption at any point leaves an existing ``out_dir`` (the previous set) intact.

    Args:
        out_dir: Final folder of the set.
        masks: ``{id: label map}``; each is written as ``<id>.png``.
        manifest: JSON-serialisable description, written as ``manifest.json``.
        write_mask: Writer ``(path, labels)`` (e.g. PNG with class indices).

    Returns:
        ``out_dir``.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    old = out_dir.parent / f".{out_dir.name}.old"
    try:
        for key, labels in masks.items():
            write_mask(temp / f"{key}.png", labels)
        (temp / "manifest.json").write_text(json.dumps(manifest, indent=2))
        if out_dir.exists():
            if old.exists():
                shutil.rmtree(old)
            os.replace(out_dir, old)
        os.replace(temp, out_dir)
        if old.exists():
            shutil.rmtree(old)
    finally:
        if temp.exists():
            shutil.rmtree(temp)
        if old.exists() and not out_dir.exists():
            os.replace(old, out_dir)  # the swap failed half-way: put the previous set back
    return out_dir
