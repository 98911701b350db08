"""Few-shot segmentation data (SSL-ALPNet): superpixel-pseudolabel episodes and the 1-shot protocol."""

from __future__ import annotations

from datasets.fewshot.episodes import AugmentParams, PseudolabelEpisodes, augment_pair, sample_episode
from datasets.fewshot.protocol import (
    aggregate_folds,
    chunk_of,
    class_slices,
    dice_3d,
    fold_splits,
    keep_slices,
    query_plan,
    support_slices,
)

__all__ = [
    "AugmentParams",
    "PseudolabelEpisodes",
    "aggregate_folds",
    "augment_pair",
    "chunk_of",
    "class_slices",
    "keep_slices",
    "dice_3d",
    "fold_splits",
    "query_plan",
    "sample_episode",
    "support_slices",
]
