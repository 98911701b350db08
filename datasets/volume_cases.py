"""Whole test cases of a volume dataset: every slice preprocessed, the label on the canonical grid.

With ``volumes.test_unit: volume`` the test loader serves one case per batch
(:class:`VolumeCaseDataset`): the slices are made by the training slice reader and the evaluation
preprocessing (:func:`datasets.preprocess.eval_tensor`: resized to ``image_size``, or at native size
for sliding windows), and the label volume stays on the RAS-canonical grid with its spacing, so the
test stage can stack the predicted slices back into the volume and score it in 3D, in millimetres
(:mod:`models.volume_eval`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from datasets.preprocess import InferenceConfig, eval_tensor, volume_slice_image
from datasets.records import SampleRecord
from datasets.volume_slices import VolumeCache

VOLUME_BATCH_KEY = "volume_slices"


def is_volume_batch(batch: dict[str, Any]) -> bool:
    """Whether a test batch is one whole case (:class:`VolumeCaseDataset`)."""
    return VOLUME_BATCH_KEY in batch


class VolumeCaseDataset(Dataset):
    """One item per case: ``volume_slices [Z, C, h, w]``, ``label [X, Y, Z]`` (canonical), ``spacing``.

    Args:
        cases: Case records of a volume layout (``slice_index`` None).
        inference: Slicing settings (axis, view, window or percentiles, context).
        image_size: The network's input size; None keeps each slice's native size (sliding windows).
        channels: The network's input channels.
        num_classes: Classes (labels checked against it).
        cache_volumes: Volumes kept in memory.
    """

    def __init__(
        self,
        cases: Sequence[SampleRecord],
        inference: InferenceConfig,
        image_size: tuple[int, int] | None,
        channels: int,
        num_classes: int,
        cache_volumes: int = 2,
    ) -> None:
        self.records = list(cases)
        self.inference, self.image_size = inference, image_size
        self.channels, self.num_classes = channels, num_classes
        self.cache = VolumeCache(cache_volumes, inference)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        image, label = self.cache.case(record)
        inf = self.inference
        z0, z1 = record.slab or (0, image.array.shape[inf.slice_axis])
        slices = [
            volume_slice_image(
                image.array, inf.slice_axis, z, inf.view, image.window, self.channels, inf.context
            )
            for z in range(z0, z1)
        ]
        shape = list(image.array.shape[:3])
        shape[inf.slice_axis] = z1 - z0
        return {
            "id": record.id,
            VOLUME_BATCH_KEY: torch.stack([eval_tensor(s, self.image_size) for s in slices]),
            "native_size": tuple(int(v) for v in slices[0].shape[:2]),
            "label": None if label is None else self._target(record, label.array, z0, z1),
            "spacing": image.spacing,
            "shape": tuple(shape),
        }

    def _target(self, record: SampleRecord, label: np.ndarray, z0: int, z1: int) -> torch.Tensor:
        target = np.take(label, np.arange(z0, z1), axis=self.inference.slice_axis)
        classes = max(self.num_classes, 2)
        if int(target.max(initial=0)) >= classes:
            raise ValueError(
                f"label volume {record.mask} holds ids up to {int(target.max())}; "
                f"expected 0..{classes - 1} (num_classes)"
            )
        return torch.from_numpy(np.ascontiguousarray(target))


def collate_case(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A batch of exactly one case, unchanged (cases differ in size).

    Raises:
        ValueError: For a batch of several cases.
    """
    if len(batch) != 1:
        raise ValueError(f"volume test batches hold one case each, got {len(batch)}")
    return dict(batch[0])
