"""Checks of the SegmentationDataModule's arguments, made before anything is read."""

from __future__ import annotations

from datasets.layouts import LAYOUTS
from datasets.preprocess import InferenceConfig
from datasets.records import SPLIT_NAMES


def check_args(
    layout: str,
    num_classes: int,
    in_channels: int,
    batch_size: int,
    n_folds: int,
    fold: int,
    percent: float,
    test_split: str,
) -> None:
    """Refuse impossible DataModule arguments, each with a one-line error naming the value.

    Raises:
        ValueError: For an unknown layout (closest names), a class, channel, batch, fold or fraction
            value out of range, or an unknown ``test_split``.
    """
    LAYOUTS.check(layout)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if n_folds < 2 or not 0 <= fold < n_folds:
        raise ValueError(f"need n_folds >= 2 and 0 <= fold < n_folds, got n_folds={n_folds}, fold={fold}")
    if not 0.0 < percent <= 1.0:
        raise ValueError(f"percent must be in (0, 1], got {percent}")
    if test_split not in (*SPLIT_NAMES, "all"):
        raise ValueError(f"test_split must be one of {(*SPLIT_NAMES, 'all')}, got '{test_split}'")


def inference_config(value: InferenceConfig | dict | None) -> InferenceConfig:
    """The ``inference`` block as a dataclass (a checkpoint's hyper-parameters hold a dict)."""
    if value is None:
        return InferenceConfig()
    if isinstance(value, InferenceConfig):
        return value
    return InferenceConfig(**dict(value))
