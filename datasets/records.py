"""Sample records (image/mask path pairs) and the split helpers that act on them."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class SampleRecord:
    """One 2D sample on disk.

    Attributes:
        id: Unique sample identifier (usually the image file stem).
        image: Path of the image file.
        mask: Path of the label mask, or None for unlabelled data.
    """

    id: str
    image: Path
    mask: Path | None


def _shuffled(records: Sequence[SampleRecord], seed: int) -> list[SampleRecord]:
    # Sort first so the result does not depend on filesystem listing order.
    ordered = sorted(records, key=lambda r: r.id)
    random.Random(seed).shuffle(ordered)
    return ordered


def kfold_split(
    records: Sequence[SampleRecord], n_folds: int, fold: int, seed: int
) -> tuple[list[SampleRecord], list[SampleRecord]]:
    """Split records into train and validation parts by seeded k-fold.

    The records are sorted by id, shuffled with ``seed`` and cut into ``n_folds`` nearly equal
    contiguous folds; fold ``fold`` is the validation part. Over all folds the validation parts are
    disjoint and cover every record.

    Args:
        records: Records to split.
        n_folds: Number of folds (>= 2, <= number of records).
        fold: Index of the validation fold in ``[0, n_folds)``.
        seed: Seed of the shuffle.

    Returns:
        ``(train, val)`` lists, each sorted by id.

    Raises:
        ValueError: If ``n_folds`` or ``fold`` is out of range, or there are fewer records than folds.
    """
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")
    if not 0 <= fold < n_folds:
        raise ValueError(f"fold must be in [0, {n_folds}), got {fold}")
    if len(records) < n_folds:
        raise ValueError(f"cannot split {len(records)} records into n_folds={n_folds} folds")
    ordered = _shuffled(records, seed)
    bounds = [round(i * len(ordered) / n_folds) for i in range(n_folds + 1)]
    val = ordered[bounds[fold] : bounds[fold + 1]]
    train = ordered[: bounds[fold]] + ordered[bounds[fold + 1] :]
    return sorted(train, key=lambda r: r.id), sorted(val, key=lambda r: r.id)


def subsample(records: Sequence[SampleRecord], percent: float, seed: int) -> list[SampleRecord]:
    """Keep a seeded random fraction of the records (labelled-data-efficiency runs).

    Args:
        records: Records to draw from.
        percent: Fraction to keep, in ``(0, 1]``; at least one record is kept.
        seed: Seed of the draw.

    Returns:
        ``max(1, round(percent * len(records)))`` records, sorted by id.

    Raises:
        ValueError: If ``percent`` is not in ``(0, 1]`` or ``records`` is empty.
    """
    if not (0.0 < percent <= 1.0) or math.isnan(percent):
        raise ValueError(f"percent must be in (0, 1], got {percent}")
    if not records:
        raise ValueError("cannot subsample an empty list of records")
    count = max(1, round(percent * len(records)))
    return sorted(_shuffled(records, seed)[:count], key=lambda r: r.id)


def read_split_file(path: str | Path) -> dict[str, list[str]]:
    """Read a JSON split file ``{"train": [ids], "val": [ids], "test": [ids]}``.

    Args:
        path: Path of the JSON file. Missing keys mean an empty split.

    Returns:
        Mapping from each of ``train``/``val``/``test`` to a list of sample ids.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If the JSON is malformed, has unknown keys or non-string ids, or a train id is
            also in val or test (val and test may share ids, e.g. when no separate test set exists).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"split file {path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"split file {path} must hold a JSON object with keys {SPLIT_NAMES}")
    unknown = sorted(set(data) - set(SPLIT_NAMES))
    if unknown:
        raise ValueError(f"split file {path} has unknown keys {unknown}; expected a subset of {SPLIT_NAMES}")
    splits: dict[str, list[str]] = {}
    for name in SPLIT_NAMES:
        ids = data.get(name, [])
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ValueError(f"split file {path}: '{name}' must be a list of string ids")
        splits[name] = list(ids)
    leaked = sorted(set(splits["train"]) & (set(splits["val"]) | set(splits["test"])))
    if leaked:
        raise ValueError(f"split file {path}: ids in train and also in val/test: {leaked[:10]}")
    return splits
