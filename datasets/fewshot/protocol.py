"""SSL-ALPNet's 1-shot evaluation protocol as plain functions.

For a class, the z-range of the support scan (first to last slice containing it) is split into
``n_parts`` chunks and the support slices are the chunk centres. The query scan's z-range of the
class is split the same way and each query slice is segmented with its chunk's support slice.
Slices outside the query's range are predicted background. 3D Dice per organ per query scan,
averaged over scans, then over folds.

Chunking: position ``i`` of a range of ``n`` slices belongs to chunk ``floor(i * P / n)``; the centre
of a chunk is its middle position (the upper one of two). With fewer slices than chunks,
``P = n``. Example: ``n = 10, P = 3`` -> chunks {0..3}, {4..6}, {7..9}; centres 2, 5, 8.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

import numpy as np


def class_slices(label: np.ndarray, class_id: int, where: str = "scan") -> tuple[int, int]:
    """First and last slice (axis 0 of ``[Z, H, W]``) containing ``class_id``.

    Raises:
        ValueError: When the class is absent (naming ``where``).
    """
    zs = np.where((label == class_id).any(axis=(1, 2)))[0]
    if zs.size == 0:
        raise ValueError(f"{where}: class id {class_id} is absent; expected at least one slice containing it")
    return int(zs[0]), int(zs[-1])


def chunk_of(n: int, n_parts: int) -> np.ndarray:
    """Chunk index of each of ``n`` positions for ``min(n_parts, n)`` chunks."""
    if n < 1 or n_parts < 1:
        raise ValueError(f"chunk_of: need n >= 1 and n_parts >= 1, got n={n}, n_parts={n_parts}")
    parts = min(n_parts, n)
    return (np.arange(n) * parts) // n


def support_slices(z_range: tuple[int, int], n_parts: int = 3) -> list[int]:
    """Support slice per chunk: the centre of each chunk of the inclusive ``z_range``."""
    z0, z1 = z_range
    chunks = chunk_of(z1 - z0 + 1, n_parts)
    out = []
    for part in range(int(chunks.max()) + 1):
        positions = np.where(chunks == part)[0]
        out.append(z0 + int(positions[len(positions) // 2]))
    return out


def query_plan(
    query_range: tuple[int, int], supports: Sequence[int], exclude: Iterable[int] = ()
) -> list[tuple[int, int]]:
    """``(query_z, support_z)`` for every slice of the query's class range.

    The query range is split into ``len(supports)`` chunks by relative position (so a short query
    range may skip a chunk, a long one reuses each chunk's support for several slices).

    Args:
        query_range: Inclusive first and last slice of the class in the query scan.
        supports: Support slice per chunk (:func:`support_slices`).
        exclude: Query slices left out of the plan: the support slices themselves when the query
            scan is the support scan (within-scan evaluation), which would otherwise be segmented
            with their own annotation.

    Raises:
        ValueError: When every slice of the range is excluded.
    """
    q0, q1 = query_range
    n = q1 - q0 + 1
    parts = len(supports)
    skip = set(exclude)
    plan = [(q0 + i, supports[(i * parts) // n]) for i in range(n) if q0 + i not in skip]
    if not plan:
        raise ValueError(
            f"query_plan: every slice of the query range {query_range} is excluded {sorted(skip)}; "
            "expected at least one slice to segment"
        )
    return plan


def dice_3d(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice of two binary volumes, ``2|P & G| / (|P| + |G|)``; NaN when both are empty."""
    pred, gt = pred.astype(bool), gt.astype(bool)
    denom = int(pred.sum()) + int(gt.sum())
    return math.nan if denom == 0 else 2.0 * int((pred & gt).sum()) / denom


def fold_splits(scan_ids: Sequence[str], n_folds: int = 5, support_index: int = 0) -> list[dict]:
    """Cross-validation folds over sorted scan ids.

    Each fold's test scans are one of ``n_folds`` consecutive chunks; its support scan is
    ``test[support_index]`` (held out of training like the rest of the test chunk), the other
    test scans are queries, every other scan trains (unlabelled).

    Returns:
        ``[{"support": id, "queries": [...], "train": [...]}, ...]``.

    Raises:
        ValueError: When a fold would have no query or no training scan.
    """
    ids = sorted(scan_ids)
    folds = []
    for k, test in enumerate(np.array_split(np.array(ids, dtype=object), n_folds)):
        test = [str(t) for t in test]
        if len(test) < 2 or support_index >= len(test):
            raise ValueError(
                f"fold_splits: fold {k} has test scans {test}; need >= 2 and support_index "
                f"{support_index} < {len(test)} ({len(ids)} scans, n_folds={n_folds})"
            )
        train = [i for i in ids if i not in test]
        if not train:
            raise ValueError(
                f"fold_splits: fold {k} leaves no training scan ({len(ids)} scans, n_folds={n_folds})"
            )
        support = test[support_index]
        folds.append({"support": support, "queries": [t for t in test if t != support], "train": train})
    return folds


def keep_slices(label: np.ndarray | None, exclude_ids: Iterable[int], n_slices: int) -> np.ndarray:
    """Setting 2: bool ``[Z]``, False for every slice containing any of ``exclude_ids``.

    With nothing to exclude (setting 1) every slice is kept and the label may be None.

    Raises:
        ValueError: When classes must be excluded but the scan has no label volume.
    """
    exclude = list(exclude_ids)
    if not exclude:
        return np.ones(n_slices, dtype=bool)
    if label is None:
        raise ValueError("keep_slices: setting 2 needs the label volume of every training scan")
    return ~np.isin(label, exclude).any(axis=(1, 2))


def aggregate_folds(rows: Iterable[Mapping]) -> dict[str, float]:
    """Mean Dice per organ: over query scans within a fold, then over folds (NaN rows ignored).

    Args:
        rows: ``{"fold", "scan", "organ", "dice"}`` each.

    Returns:
        ``{"dice_<organ>": value, ..., "dice_mean": mean over organs}``.
    """
    per_fold: dict[str, dict[object, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if not math.isnan(float(row["dice"])):
            per_fold[str(row["organ"])][row["fold"]].append(float(row["dice"]))
    out = {
        f"dice_{organ}": float(np.mean([np.mean(v) for v in folds.values()]))
        for organ, folds in per_fold.items()
    }
    out["dice_mean"] = float(np.mean(list(out.values()))) if out else math.nan
    return out
