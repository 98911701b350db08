"""Per-image test results: gathering across ranks, summarising, writing CSV + JSON atomically."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch.distributed as dist

from datasets.atomic_io import atomic_write_csv, atomic_write_json


def local_log_dir(trainer: Any) -> str | None:
    """The run directory without a collective call.

    ``Trainer.log_dir`` broadcasts from rank 0 under DDP, so calling it from rank 0 alone deadlocks.
    """
    if trainer.loggers:
        return trainer.loggers[0].log_dir
    return trainer.default_root_dir


def gather_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Concatenate the per-image rows of every DDP rank (identity without DDP), sorted by id."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        parts: list[list[dict[str, Any]] | None] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, rows)
        rows = [row for part in parts for row in (part or [])]
    # DistributedSampler pads with repeated samples: keep one row per image id.
    unique = {row["id"]: row for row in rows}
    return [unique[k] for k in sorted(unique)]


def summarise_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean, std and count over images of every numeric metric, ignoring NaN (empty classes).

    Returns:
        ``{"num_images", "mean": {metric: value}, "std": {...}, "count": {...}}``.
    """
    keys = [k for k in (rows[0] if rows else {}) if k not in ("id", "height", "width")]
    summary: dict[str, Any] = {"num_images": len(rows), "mean": {}, "std": {}, "count": {}}
    for key in keys:
        values = np.array([float(r[key]) for r in rows], dtype=np.float64)
        finite = values[np.isfinite(values)]
        summary["count"][key] = int(finite.size)
        summary["mean"][key] = float(finite.mean()) if finite.size else math.nan
        summary["std"][key] = float(finite.std()) if finite.size else math.nan
    return summary


def write_test_results(rows: list[dict[str, Any]], summary: dict[str, Any], out_dir: str | Path) -> Path:
    """Write ``test_per_image.csv`` and ``test_summary.json`` into ``out_dir``.

    Returns:
        The path of the summary JSON.
    """
    out = Path(out_dir)
    atomic_write_csv(out / "test_per_image.csv", rows, list(rows[0]) if rows else ["id"])
    atomic_write_json(out / "test_summary.json", summary)
    return out / "test_summary.json"
