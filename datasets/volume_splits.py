"""Splits of a volume dataset: cases (patients) are split, then expanded into slices.

The DataModule splits the CASE records of a volume layout exactly as it splits images (layout
splits, a split file of case or patient ids, or seeded k-fold over patients), so no patient is on
both sides. :func:`volume_splits` then applies the labelled fraction (of slices, as SSL-MedSeg
counts, or of patients), expands training and validation cases into slices, repeats foreground
slices; the DataModule keeps the test cases whole for 3D scoring (``volumes.test_unit: volume``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from datasets.preprocess import InferenceConfig
from datasets.records import SampleRecord, subsample
from datasets.volume_slices import VolumeConfig, expand_to_slices, repeat_foreground


def volume_splits(
    cases: dict[str, list[SampleRecord]],
    config: VolumeConfig,
    inference: InferenceConfig,
    percent: float,
    seed: int,
    oversample: bool,
) -> dict[str, list[SampleRecord]]:
    """The served records of each split: training and validation slices, test cases or slices.

    Args:
        cases: ``train``/``val``/``test`` case records (already split by patient).
        config: The ``volumes`` settings.
        inference: Slicing settings (the axis).
        percent: Labelled fraction of the training set.
        seed: Seed of the fraction's draw.
        oversample: Repeat the labelled slices to the full training length.

    Returns:
        ``{"train": slices, "val": slices, "test": slices}`` (the DataModule serves test cases whole
        to segmentation tasks, from its ``cases``).
    """
    train_cases = cases["train"]
    full = None
    if percent < 1.0 and config.percent_of == "patients":
        full = len(expand_to_slices(train_cases, inference)) if oversample else None
        train_cases = subsample(train_cases, percent, seed, by="units")
    train = expand_to_slices(train_cases, inference)
    if percent < 1.0 and config.percent_of == "slices":
        full = len(train)
        train = subsample(train, percent, seed)
    if oversample and full is not None:
        train = (train * math.ceil(full / len(train)))[:full]
    train = repeat_foreground(train, inference, config.foreground_repeat)
    val = expand_to_slices(cases["val"], inference)
    return {"train": train, "val": val, "test": expand_to_slices(cases["test"], inference)}


def resolve_ids(
    records: Sequence[SampleRecord], names: Sequence[str], split: str, where: str
) -> list[SampleRecord]:
    """The records a split file names: each name is a record id or a patient (all its records).

    Raises:
        ValueError: Naming the ids that are neither.
    """
    by_id = {r.id: r for r in records}
    by_unit: dict[str, list[SampleRecord]] = {}
    for record in records:
        by_unit.setdefault(record.unit, []).append(record)
    unknown = [n for n in names if n not in by_id and n not in by_unit]
    if unknown:
        raise ValueError(f"split file {where} ('{split}') names ids not found in the dataset: {unknown[:10]}")
    out: list[SampleRecord] = []
    for name in names:
        out += [by_id[name]] if name in by_id else by_unit[name]
    return list(dict.fromkeys(out))


def check_no_patient_leak(splits: dict[str, list[SampleRecord]], where: str) -> None:
    """No patient may have records in train and in val/test.

    Raises:
        ValueError: Naming the patients found on both sides.
    """
    train = {r.unit for r in splits.get("train", [])}
    held_out = {r.unit for name in ("val", "test") for r in splits.get(name, [])}
    leaked = sorted(train & held_out)
    if leaked:
        raise ValueError(f"{where}: patients in train and also in val/test: {leaked[:10]}")
