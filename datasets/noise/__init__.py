"""Label-noise simulation (Li, Gao & He, MICCAI 2021), noisy-label statistics and the ``noisy`` layout."""

from __future__ import annotations

from datasets.noise.simulate import (
    NOISE_TYPES,
    NoiseResult,
    corrupt_binary,
    corrupt_label_map,
    noise_level,
    select_noisy_ids,
)

__all__ = [
    "NOISE_TYPES",
    "NoiseResult",
    "corrupt_binary",
    "corrupt_label_map",
    "noise_level",
    "select_noisy_ids",
]
