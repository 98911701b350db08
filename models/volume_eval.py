"""Test a 2D segmentation model on whole volumes: predict slice by slice, stack, score in 3D (mm).

A case batch (:class:`datasets.volume_cases.VolumeCaseDataset`) holds every slice of a volume,
preprocessed as at training. The module's evaluation output (:func:`models.inference.patch_eval.eval_logits`:
resize or sliding windows) is resized to each slice's native size, as the 2D test resizes its logits,
turned back from the training view onto the slice grid and stacked along the slicing axis, so the
predicted volume lies on the label's own canonical grid. Dice, IoU and the other overlap metrics
count every voxel; HD95 is computed over the 3D surfaces with the voxel spacing (millimetres), and is
NaN with an ``hd95_empty`` flag when a side is empty (:func:`models.metrics.per_image_metrics`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from datasets.preprocess import InferenceConfig, from_view
from datasets.volume_cases import VOLUME_BATCH_KEY
from models.inference.patch_eval import eval_logits
from models.metrics import per_image_metrics


def _labels(logits: torch.Tensor) -> torch.Tensor:
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.argmax(dim=1)


@torch.no_grad()
def predict_case(module: Any, batch: dict[str, Any], head_channels: int, slice_batch: int) -> np.ndarray:
    """The predicted label volume of one case on its canonical grid ``[X, Y, Z]`` (int64).

    Args:
        module: A segmentation task module.
        batch: A case batch.
        head_channels: Output channels of the network (1: a binary sigmoid head).
        slice_batch: Slices per forward pass.
    """
    slices = batch[VOLUME_BATCH_KEY]
    dm = module.trainer.datamodule if getattr(module, "_trainer", None) is not None else None
    slicing = getattr(dm, "slicing", None) or InferenceConfig()
    axis, view = slicing.slice_axis, slicing.view
    volume = np.zeros(batch["shape"], dtype=np.int64)
    for start in range(0, slices.shape[0], slice_batch):
        chunk = slices[start : start + slice_batch].to(module.device)
        logits = eval_logits(module, chunk, head_channels).float()
        logits = F.interpolate(logits, size=batch["native_size"], mode="bilinear", align_corners=False)
        for offset, labels in enumerate(_labels(logits).cpu().numpy()):
            where: list[Any] = [slice(None)] * 3
            where[axis] = start + offset
            volume[tuple(where)] = from_view(labels, view)
    return volume


def volume_test_rows(
    module: Any, batch: dict[str, Any], num_classes: int, include_background: bool, with_hd95: bool
) -> list[dict[str, Any]]:
    """The per-case row of a case batch: 3D metrics over the whole volume, HD95 in mm.

    Raises:
        ValueError: If the case has no label volume (nothing to score).
    """
    if batch["label"] is None:
        raise ValueError(f"test case {batch['id']} has no label volume; a test split needs labels")
    head = num_classes if num_classes > 1 else 1
    pred = predict_case(module, batch, head, slice_batch=max(1, int(getattr(module, "test_slice_batch", 16))))
    metrics = per_image_metrics(
        torch.from_numpy(pred), batch["label"], max(num_classes, 2), include_background, with_hd95,
        spacing=batch["spacing"],
    )  # fmt: skip
    x, y, z = batch["shape"]
    spacing = batch["spacing"]
    return [{"id": batch["id"], "size_x": x, "size_y": y, "size_z": z,
             "spacing_mm": "x".join(f"{s:g}" for s in spacing), **metrics}]  # fmt: skip
