"""Noisy-label segmentation: superpixel-guided JoCoR (Li, Gao & He, MICCAI 2021) and baselines."""

from __future__ import annotations

from models.noisy.module import METHODS, NoisyLabelSegmentation

__all__ = ["METHODS", "NoisyLabelSegmentation"]
