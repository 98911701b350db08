"""Intensity processing of volumes: CT windows, MR top-percentile clipping, z-scores.

Z-scoring is not baked into prepared files: :func:`zscore_volume` / :func:`zscore_global` are applied
when a DataModule loads the scans (per volume for MR, one mean/std over all scans for CT), after the
window of each scan's modality (the prepared manifest's ``windows``).
"""

from __future__ import annotations

import numpy as np


def clip_top_percent(image: np.ndarray, percent: float = 0.5) -> np.ndarray:
    """Clip intensities above the ``100 - percent`` percentile (CHAOS-T2: top 0.5%)."""
    return np.minimum(image, np.percentile(image, 100.0 - percent)).astype(np.float32)


def window(image: np.ndarray, low: float = -125.0, high: float = 275.0) -> np.ndarray:
    """Clip CT intensities to an HU window (SABS: abdominal window [-125, 275])."""
    return np.clip(image, low, high).astype(np.float32)


def zscore_volume(image: np.ndarray) -> np.ndarray:
    """Per-volume z-score (MR). A constant volume maps to zeros rather than dividing by 0."""
    std = float(image.std())
    return ((image - image.mean()) / (std if std > 0 else 1.0)).astype(np.float32)


def zscore_global(images: list[np.ndarray]) -> list[np.ndarray]:
    """One mean/std over all voxels of all volumes (CT), applied to each.

    Raises:
        ValueError: If ``images`` is empty or holds no voxels.
    """
    total = sum(float(v.size) for v in images)
    if total == 0:
        raise ValueError("zscore_global: no voxels to normalise (expected at least one non-empty volume)")
    mean = sum(float(v.sum()) for v in images) / total
    var = sum(float(((v - mean) ** 2).sum()) for v in images) / total
    std = np.sqrt(var) if var > 0 else 1.0
    return [((v - mean) / std).astype(np.float32) for v in images]
