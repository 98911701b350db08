"""Per-item test rows: gathering them across ranks and summarising them (writing is the engine's)."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
import torch.distributed as dist

# Row keys that describe an item rather than measure it.
DESCRIPTIVE_KEYS = ("id", "height", "width", "images", "size_x", "size_y", "size_z", "spacing_mm")


def gather_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Concatenate the per-item rows of every DDP rank (identity without DDP), sorted by id."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        parts: list[list[dict[str, Any]] | None] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, rows)
        rows = [row for part in parts for row in (part or [])]
    # DistributedSampler pads with repeated samples: keep one row per item id.
    unique = {row["id"]: row for row in rows}
    return [unique[k] for k in sorted(unique)]


def summarise_rows(rows: list[dict[str, Any]], weight_key: str | None = None) -> dict[str, Any]:
    """Mean, std and count over items of every numeric metric, ignoring NaN (empty classes).

    Args:
        rows: Per-item rows.
        weight_key: Column weighting each row (e.g. ``images`` for per-batch rows); None = equal.

    Returns:
        ``{"num_images", "mean": {metric: value}, "std": {...}, "count": {...}, "excluded": {...},
        "flags": {...}}``: ``count`` rows entered each mean, ``excluded`` rows did not (NaN, e.g. HD95
        with an empty side), ``flags`` tallies each text column (``hd95_empty``: ``{"pred": 2}``;
        empty strings are not counted). With weights, ``num_images`` is the sum of the weights.
    """
    keys = [k for k in (rows[0] if rows else {}) if k not in DESCRIPTIVE_KEYS and k != weight_key]
    weights = np.array([float(r[weight_key]) for r in rows]) if weight_key else np.ones(len(rows))
    summary: dict[str, Any] = {
        "num_images": int(weights.sum()), "mean": {}, "std": {}, "count": {}, "excluded": {}, "flags": {},
    }  # fmt: skip
    for key in keys:
        if any(isinstance(r[key], str) for r in rows):
            summary["flags"][key] = dict(sorted(Counter(str(r[key]) for r in rows if r[key] != "").items()))
            continue
        values = np.array([float(r[key]) for r in rows], dtype=np.float64)
        finite = np.isfinite(values)
        summary["count"][key] = int(finite.sum())
        summary["excluded"][key] = int((~finite).sum())
        if finite.any():
            mean = float((values[finite] * weights[finite]).sum() / weights[finite].sum())
            var = float((weights[finite] * (values[finite] - mean) ** 2).sum() / weights[finite].sum())
            summary["mean"][key], summary["std"][key] = mean, math.sqrt(var)
        else:
            summary["mean"][key], summary["std"][key] = math.nan, math.nan
    return summary
