"""Superpixel algorithms (SLIC in numba / torch / skimage, Felzenszwalb), body masks and quality metrics.

Public API: :func:`superpixels` (dispatcher over the backend registry), :func:`body_mask`,
:func:`enforce_connectivity` and the metrics in :mod:`datasets.superpixels.quality`.
"""

from __future__ import annotations

from datasets.superpixels import numba_setup as _numba_setup  # noqa: F401,I001  (first: fork-safe numba)
from datasets.superpixels.body_mask import body_mask
from datasets.superpixels.connectivity import enforce_connectivity
from datasets.superpixels.engine import (
    BACKENDS,
    METHOD_DEFAULTS,
    available_backends,
    register_backend,
    resolve_params,
    superpixels,
    warmup,
)
from datasets.superpixels.quality import (
    achievable_segmentation_accuracy,
    boundary_recall,
    compactness,
    is_connected,
    segment_count,
    undersegmentation_error,
)
from datasets.superpixels.runs import connected_components

__all__ = [
    "BACKENDS",
    "METHOD_DEFAULTS",
    "achievable_segmentation_accuracy",
    "available_backends",
    "body_mask",
    "boundary_recall",
    "compactness",
    "connected_components",
    "enforce_connectivity",
    "is_connected",
    "register_backend",
    "resolve_params",
    "segment_count",
    "superpixels",
    "undersegmentation_error",
    "warmup",
]
