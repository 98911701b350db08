"""The few-shot prediction run: read the support, segment each query, write masks, overlays and the CSV.

Outputs follow :mod:`engine.predict.writers` (the names, ``predictions.csv``, never overwriting
without ``--overwrite``). Mask values are the support label's ids as the training reader reads them
(a 0/255 mask is class 1; ``--palette binary``: 255 for any class). ``--save_probs`` writes one
foreground-probability channel per class, in the order of ``--organs`` (or of the support's ids).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from datasets.fewshot.slices import stack_to_ras
from datasets.image_io import read_image, read_mask, write_png_atomic
from datasets.volumes.label_maps import label_map as resolve_label_map
from engine.predict.fewshot import FewShotRun, best_class_labels, segment_image, segment_volume
from engine.predict.fewshot_model import FewShotModel, resolve_window, support_classes
from engine.predict.inputs import InputItem, VolumeData, discover_inputs, predict_each, read_volume_input
from engine.predict.options import PredictOptions
from engine.predict.writers import output_paths, output_row, write_overlay, write_probs_npz, write_volume

log = logging.getLogger(__name__)
# Largest id a PNG mask can hold.
PNG_MAX_ID = 255


def _unit(image: np.ndarray) -> np.ndarray:
    lo, hi = float(image.min()), float(image.max())
    return ((image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)).astype(np.float32)


def _label_map(options: PredictOptions, model: FewShotModel) -> dict[str, int] | None:
    if options.label_map is None:
        return model.label_map
    try:
        return resolve_label_map(options.label_map)
    except ValueError as err:  # an unknown name is a ValueError too (UnknownNameError)
        raise ValueError(f"--label_map {options.label_map}: {err}") from err


def _support_item(path: str) -> InputItem:
    items = discover_inputs(path)
    if len(items) != 1:
        raise ValueError(
            f"--support {path}: expected one image, NIfTI file or DICOM series, found {len(items)}"
        )
    return items[0]


def _read_support_volume(item: InputItem, label_path: str) -> tuple[VolumeData, np.ndarray]:
    """The support volume and its integer label on the same RAS grid (shapes and affines compared)."""
    image = read_volume_input(item, 1)
    label_item = _support_item(label_path)
    if label_item.kind == "image":
        raise ValueError(f"--support_label {label_path} is a 2D image but --support {item.path} is a volume")
    label = read_volume_input(label_item, 1)
    if label.array.shape != image.array.shape or not np.allclose(
        label.reference.affine, image.reference.affine, atol=1e-3
    ):
        raise ValueError(
            f"--support_label {label_path} (shape {label.array.shape}, affine "
            f"{np.round(label.reference.affine, 3).tolist()}) does not lie on the grid of "
            f"--support {item.path} "
            f"(shape {image.array.shape}, affine {np.round(image.reference.affine, 3).tolist()})"
        )
    ids = np.rint(label.array)
    if not np.array_equal(ids, label.array):
        raise ValueError(f"--support_label {label_path} holds non-integer values; expected class ids")
    return image, ids.astype(np.int64)


def _write_image_outputs(item: InputItem, paths: Any, q_norm: np.ndarray, probs: list, palette: str) -> dict:
    labels = best_class_labels(probs, q_norm.shape, np.uint8)
    write_png_atomic(
        paths.mask, np.where(labels > 0, 255, 0).astype(np.uint8) if palette == "binary" else labels
    )
    if paths.probs is not None:
        write_probs_npz(paths.probs, np.stack([p for _, p in probs]))
    overlays = []
    if paths.overlay_stem is not None:
        grey = np.repeat(_unit(q_norm)[..., None], 3, axis=2)
        overlays.append(write_overlay(paths.overlay_stem.with_suffix(".png"), grey, labels))
    return output_row(item, paths, labels, overlays, labels.shape)


def _write_volume_outputs(
    item: InputItem, paths: Any, query: VolumeData, native: np.ndarray, probs: list, options: PredictOptions
) -> dict:
    top = max(class_id for class_id, _ in probs)
    dtype = np.uint8 if top <= PNG_MAX_ID else np.int16
    stack = best_class_labels(probs, native.shape, dtype)
    labels = stack_to_ras(stack)
    write_volume(paths.mask, labels, query.reference, dtype)
    if paths.probs is not None:
        write_volume(
            paths.probs, np.stack([stack_to_ras(p) for _, p in probs], axis=-1), query.reference, np.float32
        )
    overlays = []
    if paths.overlay_stem is not None:
        for z in range(0, native.shape[0], options.overlay_every):
            grey = np.repeat(_unit(native[z])[..., None], 3, axis=2)
            target = paths.overlay_stem.with_name(f"{paths.overlay_stem.name}_z{z:03d}.png")
            overlays.append(write_overlay(target, grey, stack[z]))
    return output_row(item, paths, labels, overlays, query.reference.shape)


def _predict_one(item: InputItem, support: dict[str, Any], run: FewShotRun, options: PredictOptions) -> dict:
    """Segment and write one query; returns its CSV row."""
    volume = item.kind != "image"
    if volume != support["volume"]:
        raise ValueError(
            f"{item.path}: a {'volume' if support['volume'] else '2D'} support segments "
            f"{'volumes' if support['volume'] else '2D images'} only"
        )
    paths = output_paths(Path(options.output), item.name, volume, options.save_probs, options.overlay)
    found = [p for p in (paths.mask, paths.probs) if p is not None and p.exists()]
    if found and not options.overwrite:
        raise ValueError(f"output {found[0]} exists; pass --overwrite to replace it")
    if not volume:
        query = read_image(item.path, 1)[..., 0]
        q_norm, probs = segment_image(run, (support["image"], support["label"]), query, support["classes"])
        return _write_image_outputs(item, paths, q_norm, probs, options.palette)
    query_volume = read_volume_input(item, 1)
    window = resolve_window("--window", options.window, run.models[0], options.no_clip)
    native, probs = segment_volume(
        run, support["volume_data"], (query_volume.array, window), support["classes"], options.query_range
    )
    return _write_volume_outputs(item, paths, query_volume, native, probs, options)


def read_support(options: PredictOptions, run: FewShotRun) -> dict[str, Any]:
    """The support (2D image and mask, or volume, label and window) and the classes to segment.

    Raises:
        ValueError: For missing flags, a 2D/volume mismatch, labels off the image's grid, or classes
            that are unknown or absent from the support label.
    """
    if options.support is None or options.support_label is None:
        raise ValueError(
            f"{run.models[0].path} is a few-shot checkpoint: pass --support IMAGE|VOLUME and "
            "--support_label MASK|LABEL (the annotated example of the classes to segment)"
        )
    item = _support_item(options.support)
    names = _label_map(options, run.models[0])
    if item.kind == "image":
        image = read_image(item.path, 1)[..., 0]
        label = read_mask(options.support_label, PNG_MAX_ID + 1)
        if label.shape != image.shape:
            raise ValueError(
                f"--support_label {options.support_label} is {label.shape} but "
                f"--support {item.path} is {image.shape}"
            )
        classes = support_classes(label, options.organs, names, options.support_label)
        return {"volume": False, "image": image, "label": label, "classes": classes}
    image, label = _read_support_volume(item, options.support_label)
    window = resolve_window("--support_window", options.support_window, run.models[0], options.no_clip)
    classes = support_classes(label, options.organs, names, options.support_label)
    return {"volume": True, "volume_data": (image.array, label, window), "classes": classes}


def predict_fewshot(
    items: list[InputItem], run: FewShotRun, options: PredictOptions
) -> tuple[list[dict[str, Any]], list[str]]:
    """Segment every query from the support; returns the CSV rows and the failure lines."""
    support = read_support(options, run)
    log.info("few-shot classes %s from %s", support["classes"], options.support_label)
    with tqdm(total=len(items), unit="img", desc="predict", disable=not options.progress) as bar:
        return predict_each(items, lambda item: _predict_one(item, support, run, options), bar)
