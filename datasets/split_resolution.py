"""Which records each loader serves: layout splits, split files, k-fold by patient, labelled fractions.

:func:`resolve_splits` is the DataModule's split logic as one plain function of its settings
(:class:`SplitSettings`): the layout's own splits, replaced by a split file when one is given (ids or
patient ids); a missing val split is fold ``fold`` of a seeded ``n_folds``-fold split of train by
patient; a missing test split reuses val (with a warning); then the labelled fraction. Volume layouts
are split as cases and served as slices (:mod:`datasets.volume_splits`); ``test_split: all`` serves
every record to the test loader (``--evaluate`` on another dataset).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from datasets.layouts import find_samples
from datasets.preprocess import InferenceConfig
from datasets.records import SPLIT_NAMES, SampleRecord, kfold_split, read_split_file, subsample
from datasets.volume_slices import VolumeConfig, expand_to_slices, split_into_slabs
from datasets.volume_splits import check_no_patient_leak, resolve_ids, volume_splits

log = logging.getLogger(__name__)
Splits = dict[str, list[SampleRecord]]


@dataclass(frozen=True)
class SplitSettings:
    """The DataModule arguments that decide the splits (see ``SegmentationDataModule``).

    Attributes:
        volumes: The ``volumes`` options of a volume layout; None for a layout of 2D images.
        slicing: The ``inference`` block (the slicing axis of volumes).
    """

    layout: str
    root: str
    split_file: str | None
    n_folds: int
    fold: int
    seed: int
    percent: float
    oversample: bool
    test_split: str
    volumes: VolumeConfig | None
    slicing: InferenceConfig


@dataclass
class ResolvedSplits:
    """Served records per split, and for volume layouts the cases they came from."""

    served: Splits
    cases: Splits = field(default_factory=dict)


def resolve_splits(settings: SplitSettings) -> ResolvedSplits:
    """The records of every split (no image is read).

    Raises:
        FileNotFoundError: If the root or expected files are missing.
        ValueError: If a split is empty, the split file names unknown ids or puts a patient on both sides.
    """
    s = settings
    splits = {name: find_samples(s.layout, s.root, name) for name in SPLIT_NAMES}
    if s.volumes is not None:
        splits = {k: split_into_slabs(v, s.slicing, s.volumes.slabs) for k, v in splits.items()}
    if s.split_file is not None:
        splits = apply_split_file(splits, Path(s.split_file))
    if s.test_split == "all":
        return _everything(splits, s)
    train, val, test = _derive_val_and_test(splits, s)
    if s.volumes is not None:
        cases = {"train": train, "val": val, "test": test}
        served = volume_splits(cases, s.volumes, s.slicing, s.percent, s.seed, s.oversample)
        resolved = ResolvedSplits(served, cases)
    else:
        resolved = ResolvedSplits({"train": _labelled_fraction(train, s), "val": val, "test": test})
    for name, records in resolved.served.items():
        if not records:
            raise ValueError(f"the {name} split of {s.root} (layout '{s.layout}') is empty")
    return resolved


def _derive_val_and_test(splits: Splits, s: SplitSettings) -> tuple[list, list, list]:
    train, val, test = splits["train"], splits["val"], splits["test"]
    if not train:
        raise ValueError(f"the train split of {s.root} (layout '{s.layout}') is empty")
    if not val:
        train, val = kfold_split(train, s.n_folds, s.fold, s.seed)
        log.info("no val split in %s: using fold %d of %d (seed %d)", s.root, s.fold, s.n_folds, s.seed)
    if not test:
        test = val
        log.warning(
            "no test split in %s (layout '%s'): testing on the validation fold, "
            "so test metrics are not held-out estimates",
            s.root,
            s.layout,
        )
    return train, val, test


def _labelled_fraction(train: list[SampleRecord], s: SplitSettings) -> list[SampleRecord]:
    if s.percent >= 1.0:
        return train
    full = len(train)
    train = subsample(train, s.percent, s.seed)
    return (train * math.ceil(full / len(train)))[:full] if s.oversample else train


def _everything(splits: Splits, s: SplitSettings) -> ResolvedSplits:
    """``test_split: all``: every record (case) to the test loader, none to train or val."""
    everything = sorted({r for records in splits.values() for r in records}, key=lambda r: r.id)
    if not everything:
        raise ValueError(f"{s.root} (layout '{s.layout}') holds no sample to evaluate")
    if s.volumes is None:
        return ResolvedSplits({"train": [], "val": [], "test": everything})
    cases = {"train": [], "val": [], "test": everything}
    return ResolvedSplits({"train": [], "val": [], "test": expand_to_slices(everything, s.slicing)}, cases)


def apply_split_file(layout_splits: Splits, split_file: Path) -> Splits:
    """Re-split all records the layout found according to the ids (or patient ids) in a split file.

    Raises:
        ValueError: For an id naming two samples, unknown ids, or a patient in train and val/test.
    """
    by_id: dict[str, SampleRecord] = {}
    for records in layout_splits.values():
        for record in records:
            other = by_id.setdefault(record.id, record)
            if other != record:
                raise ValueError(
                    f"id '{record.id}' names two samples ({other.image}, {record.image}); "
                    f"ids must be unique across splits to use split_file {split_file}"
                )
    ids = read_split_file(split_file)
    records = list(by_id.values())
    splits = {name: resolve_ids(records, names, name, str(split_file)) for name, names in ids.items()}
    check_no_patient_leak(splits, f"split file {split_file}")
    return splits
