"""Sample records (image/mask path pairs) and the split helpers that act on them."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class SampleRecord:
    """One 2D sample on disk: an image file, or one slice of a volume.

    Attributes:
        id: Unique sample identifier (usually the image file stem; ``<case>_zNNN`` for a slice).
        image: Path of the image file (or of the volume).
        mask: Path of the label mask (or label volume), or None for unlabelled data.
        group: The patient the sample belongs to: splits never separate a group (None: its own id).
        slice_index: For a volume: the slice, or None for a whole case (see :mod:`datasets.volume_slices`).
        slab: For a volume case: the slices ``[start, stop)`` it covers along the slicing axis, or
            None for all of them (``volumes.slabs``).
    """

    id: str
    image: Path
    mask: Path | None
    group: str | None = None
    slice_index: int | None = None
    slab: tuple[int, int] | None = None

    @property
    def unit(self) -> str:
        """What splits are made of: the group (patient) when set, else the sample itself."""
        return self.group if self.group is not None else self.id


def _shuffled_units(records: Sequence[SampleRecord], seed: int) -> list[str]:
    # Sort first so the result does not depend on filesystem listing order.
    units = sorted({r.unit for r in records})
    random.Random(seed).shuffle(units)
    return units


def _of_units(records: Sequence[SampleRecord], units: Sequence[str]) -> list[SampleRecord]:
    wanted = set(units)
    return sorted((r for r in records if r.unit in wanted), key=lambda r: r.id)


def kfold_split(
    records: Sequence[SampleRecord], n_folds: int, fold: int, seed: int
) -> tuple[list[SampleRecord], list[SampleRecord]]:
    """Split records into train and validation parts by seeded k-fold over their units (patients).

    The units (:attr:`SampleRecord.unit`: the patient when records carry groups, else each record)
    are sorted, shuffled with ``seed`` and cut into ``n_folds`` nearly equal contiguous folds; fold
    ``fold`` is the validation part. Over all folds the validation parts are disjoint and cover every
    record, and no patient is on both sides.

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
    units = _shuffled_units(records, seed)
    if len(units) < n_folds:
        what = "patients" if len(units) < len(records) else "records"
        raise ValueError(f"cannot split {len(units)} {what} into n_folds={n_folds} folds")
    bounds = [round(i * len(units) / n_folds) for i in range(n_folds + 1)]
    val = units[bounds[fold] : bounds[fold + 1]]
    train = units[: bounds[fold]] + units[bounds[fold + 1] :]
    return _of_units(records, train), _of_units(records, val)


def subsample(
    records: Sequence[SampleRecord], percent: float, seed: int, by: Literal["records", "units"] = "records"
) -> list[SampleRecord]:
    """Keep a seeded random fraction of the records (labelled-data-efficiency runs).

    Args:
        records: Records to draw from.
        percent: Fraction to keep, in ``(0, 1]``; at least one record (or unit) is kept.
        seed: Seed of the draw.
        by: Count ``records`` (slices of a volume dataset, as SSL-MedSeg counts) or ``units``
            (patients: every slice of a drawn patient is kept).

    Returns:
        ``max(1, round(percent * n))`` records (or all records of that many units), sorted by id.

    Raises:
        ValueError: If ``percent`` is not in ``(0, 1]``, ``by`` is unknown or ``records`` is empty.
    """
    if not (0.0 < percent <= 1.0) or math.isnan(percent):
        raise ValueError(f"percent must be in (0, 1], got {percent}")
    if not records:
        raise ValueError("cannot subsample an empty list of records")
    if by == "units":
        units = _shuffled_units(records, seed)
        return _of_units(records, units[: max(1, round(percent * len(units)))])
    if by != "records":
        raise ValueError(f"subsample by must be 'records' or 'units', got {by!r}")
    ordered = sorted(records, key=lambda r: r.id)
    random.Random(seed).shuffle(ordered)
    return sorted(ordered[: max(1, round(percent * len(records)))], key=lambda r: r.id)


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
