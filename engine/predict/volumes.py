"""Slice-wise prediction of a volume with a 2D model, written back on the input's own grid.

Slices across ``inference.slice_axis`` of the RAS-canonical volume are mapped to ``[0, 1]`` (the CT
window or the volume's percentile range), turned into the training view (radiological by default, as
the sample's slices were made), predicted in batches and turned back; the mask is written with the
input's affine and header (:func:`engine.predict.writers.write_volume`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from datasets.preprocess import from_view, intensity_range, volume_slice_image
from engine.predict.inputs import InputItem, read_volume_input
from engine.predict.options import PredictOptions
from engine.predict.runner import Predictor
from engine.predict.writers import OutputPaths, output_row, write_overlay, write_volume


def _put(target: np.ndarray, axis: int, index: int, value: np.ndarray) -> None:
    where: list[Any] = [slice(None)] * target.ndim
    where[axis] = index
    target[tuple(where)] = value


def predict_volume(
    item: InputItem, paths: OutputPaths, predictor: Predictor, options: PredictOptions
) -> dict[str, Any]:
    """Predict one NIfTI file or DICOM series and write its outputs.

    Returns:
        The ``predictions.csv`` row (without ``seconds``).

    Raises:
        ValueError: For an unreadable volume, a bad slice axis, or channels the model cannot take.
    """
    inference = predictor.models[0].inference
    volume = read_volume_input(item, predictor.in_channels, inference.reorient)
    axis, view = inference.slice_axis, inference.view
    window = intensity_range(volume.array, inference)
    grid = volume.array.shape[:3]
    labels = np.zeros(grid, dtype=np.uint8 if predictor.num_classes <= 256 else np.int16)
    probs = np.zeros((*grid, predictor.num_classes), np.float32) if paths.probs else None
    overlays: list[Path] = []
    count = grid[axis]
    for start in range(0, count, options.batch_size):
        indices = range(start, min(count, start + options.batch_size))
        images = [
            volume_slice_image(volume.array, axis, i, view, window, predictor.in_channels, inference.context)
            for i in indices
        ]
        for index, image, log_probs in zip(indices, images, predictor.predict(images), strict=True):
            pred = log_probs.argmax(dim=0).numpy()
            _put(labels, axis, index, from_view(pred, view))
            if probs is not None:
                _put(probs, axis, index, from_view(log_probs.exp().numpy().transpose(1, 2, 0), view))
            if paths.overlay_stem is not None and index % options.overlay_every == 0:
                target = paths.overlay_stem.with_name(f"{paths.overlay_stem.name}_z{index:03d}.png")
                overlays.append(write_overlay(target, image, pred))
    write_volume(paths.mask, labels, volume.reference, labels.dtype.type, volume.canonical)
    if probs is not None and paths.probs is not None:
        write_volume(paths.probs, probs, volume.reference, np.float32, volume.canonical)
    return output_row(item, paths, labels, overlays, volume.reference.shape)
