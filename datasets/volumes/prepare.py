"""Writing the prepared layout, and preparing generic NIfTI files, NIfTI folders and DICOM series into it.

Every preparation writes one folder per scan with ``image.nii.gz`` (+ ``label.nii.gz`` when labelled),
then merges ``manifest.json`` (:mod:`datasets.volumes.manifest`) and ``class_slice_index.json``. Labels
are remapped by class name from their source ids onto the target map (``sample``: the framework's ids)
and checked against their image's grid; a common in-plane spacing (``target_spacing_mm``) and an
in-plane size (crop/pad, no resizing) are optional. The public datasets' readers are in
:mod:`datasets.volumes.challenges`.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from datasets.atomic_io import atomic_write_json
from datasets.progress import progress
from datasets.volumes.geometry import check_same_geometry, crop_or_pad, crop_or_pad_affine, resample_inplane
from datasets.volumes.intensity import zscore_global, zscore_volume
from datasets.volumes.io import (
    IMAGE_NAME,
    LABEL_NAME,
    Volume,
    dicom_modality,
    dicom_series_files,
    dicom_series_to_nifti,
    read_nifti,
    write_nifti,
)
from datasets.volumes.label_maps import check_label_range, integer_labels, remap_labels
from datasets.volumes.manifest import merge_manifest

__all__ = ["PairOptions", "class_slice_index", "prepare_dicom", "prepare_nifti_file", "prepare_nifti_folder",
           "write_prepared", "zscore_global", "zscore_volume"]  # fmt: skip
logger = logging.getLogger(__name__)
SLICE_INDEX_NAME = "class_slice_index.json"
NO_WINDOW = "none"


def modality_windows(modality: str, window: Sequence[float] | str | None) -> dict[str, object] | None:
    """The manifest windows one preparation records: ``window`` for ``modality``.

    Args:
        modality: The scans' modality.
        window: ``[low, high]``; ``"none"`` records that the modality is not clipped; None records nothing.
    """
    if window is None:
        return None
    return {modality.upper(): None if window == NO_WINDOW else list(window)}


def class_slice_index(
    labels: Mapping[str, np.ndarray], names: Mapping[str, int]
) -> dict[str, dict[str, list[int]]]:
    """Which slices (last axis) of each scan contain each class.

    Args:
        labels: scan id -> label volume ``[X, Y, Z]``.
        names: class name -> id.

    Returns:
        ``{scan_id: {class_name: [z, ...]}}`` (empty lists for absent classes).
    """
    return {
        sid: {name: np.where((lab == cid).any(axis=(0, 1)))[0].tolist() for name, cid in names.items()}
        for sid, lab in labels.items()
    }


def write_prepared(
    out: str | Path,
    scans: Mapping[str, tuple[Volume, Volume | None]],
    names: Mapping[str, int],
    modality: str | Mapping[str, str],
    windows: Mapping[str, object] | None = None,
    records: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """Write scans into the prepared layout and merge them into its manifest and class-slice index.

    Args:
        out: The prepared folder (created; scans already there are kept unless replaced).
        scans: Scan id -> (image, label or None), labels already in ``names``' ids.
        names: ``{class name: id}`` of the labels.
        modality: One modality for every scan (``CT``, ``MR``, ...) or one per scan id.
        windows: ``{MODALITY: [low, high] or None}`` recorded in the manifest.
        records: Extra manifest fields per scan id (sources, voxels set to background, ...).

    Returns:
        ``out``.

    Raises:
        ValueError: When a label is off its image's grid or holds ids outside ``names``, or the folder's
            manifest disagrees (:func:`datasets.volumes.manifest.merge_manifest`).
    """
    out = Path(out)
    for sid, (image, label) in scans.items():  # every check before the first write
        if label is not None:
            check_same_geometry(image, label, f"scan {sid} image", f"scan {sid} label")
            check_label_range(label.array, names, f"scan {sid} label")
    entries = {}
    for sid, (image, label) in progress(scans.items(), "write"):
        write_nifti(out / sid / IMAGE_NAME, image.array.astype(np.float32), image.affine)
        if label is not None:
            write_nifti(out / sid / LABEL_NAME, label.array.astype(np.int16), label.affine)
        elif (out / sid / LABEL_NAME).is_file():  # a re-prepared scan without labels keeps no stale label
            (out / sid / LABEL_NAME).unlink()
        entries[sid] = {
            "modality": modality if isinstance(modality, str) else modality[sid],
            "label": label is not None,
            "shape": list(image.array.shape),
            "spacing_mm": [round(s, 6) for s in image.spacing],
            **dict((records or {}).get(sid, {})),
        }
    merge_manifest(out, names, entries, windows)
    index_path = out / SLICE_INDEX_NAME
    index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    labelled = {sid: lab.array for sid, (_, lab) in scans.items() if lab is not None}
    index.update(class_slice_index(labelled, names))
    atomic_write_json(index_path, dict(sorted(index.items())))
    return out


@dataclass(frozen=True)
class PairOptions:
    """How an image (and its label) become a prepared scan.

    Attributes:
        source_map: ``{name: id}`` of the label files.
        target_map: ``{name: id}`` written (the framework's ids; equal to ``source_map`` keeps them).
        target_spacing_mm: Common in-plane spacing to resample to (None keeps each scan's).
        size: In-plane centre crop/pad to ``size x size`` after resampling (None keeps the extent).
    """

    source_map: Mapping[str, int]
    target_map: Mapping[str, int]
    target_spacing_mm: float | None = None
    size: int | None = None

    def kept(self) -> dict[str, int]:
        """The classes written: those of the source map that the target map has, with target ids."""
        return {n: self.target_map[n] for n in self.source_map if n in self.target_map}


def prepare_pair(
    image_path: str | Path,
    label_path: str | Path | None,
    options: PairOptions,
    shown: str | Path | None = None,
) -> tuple[Volume, Volume | None, dict[str, Any]]:
    """Read an image and its optional label, check the grids, remap, resample and crop/pad both.

    Args:
        image_path: NIfTI image.
        label_path: NIfTI label volume in ``options.source_map`` ids, or None.
        options: Maps, spacing, size.
        shown: The image's name in messages and the record (default: ``image_path``).

    Returns:
        ``(image, label or None, manifest record)``; the record names the sources and counts the
        label voxels set to background per source id.

    Raises:
        ValueError: For a non-3D file, a label off the image's grid, or non-integer labels.
    """
    image = read_nifti(image_path)
    label, shown = None, shown or image_path
    record: dict[str, Any] = {"source_image": str(shown), "source_label": None}
    if label_path is not None:
        label = read_nifti(label_path, dtype=None)
        label.array = integer_labels(label.array, str(label_path))
        check_same_geometry(image, label, shown, label_path)
        label.array, _, dropped = remap_labels(
            label.array, options.source_map, options.target_map, str(label_path)
        )
        record.update(
            source_label=str(label_path),
            label_voxels_set_to_background={str(k): v for k, v in dropped.items()},
        )
    if options.target_spacing_mm is not None:
        image = resample_inplane(image, options.target_spacing_mm, order=1)
        label = None if label is None else resample_inplane(label, options.target_spacing_mm, order=0)
    if options.size is not None:
        affine = crop_or_pad_affine(image.affine, image.array.shape, options.size)
        image = Volume(crop_or_pad(image.array, options.size, float(image.array.min())), affine)
        label = None if label is None else Volume(crop_or_pad(label.array, options.size, 0), affine)
    return image, label, record


def prepare_nifti_file(
    image_path: str | Path,
    out: str | Path,
    options: PairOptions,
    modality: str,
    label_path: str | Path | None = None,
    scan_id: str | None = None,
    window: Sequence[float] | str | None = None,
) -> Path:
    """One NIfTI image (+ optional label volume) -> scan ``scan_id`` (default: the file's stem) of ``out``.

    ``window`` as :func:`modality_windows`; the other arguments as :func:`prepare_dicom`.
    """
    sid = scan_id or Path(image_path).name.split(".nii")[0]
    image, label, record = prepare_pair(image_path, label_path, options)
    windows = modality_windows(modality, window)
    return write_prepared(
        out, {sid: (image, label)}, options.kept(), modality.upper(), windows, {sid: record}
    )


def prepare_nifti_folder(
    src: str | Path,
    out: str | Path,
    options: PairOptions,
    modality: str,
    window: Sequence[float] | str | None = None,
    image_dir: str = "images",
    label_dir: str = "labels",
) -> Path:
    """Generic: ``src/images/<id>.nii.gz`` + ``src/labels/<id>.nii.gz`` -> prepared layout.

    ``window`` as :func:`modality_windows`; ``options`` as :class:`PairOptions`.

    Raises:
        FileNotFoundError: No image, or an image without its label.
    """
    src = Path(src)
    images = sorted((src / image_dir).glob("*.nii*"))
    if not images:
        raise FileNotFoundError(f"prepare_nifti_folder: no .nii/.nii.gz under {src / image_dir}")
    scans, records = {}, {}
    for path in progress(images, "read"):
        sid = path.name.split(".nii")[0]
        lab = src / label_dir / path.name
        if not lab.is_file():
            raise FileNotFoundError(f"prepare_nifti_folder: image {path} has no label {lab}")
        image, label, records[sid] = prepare_pair(path, lab, options)
        scans[sid] = (image, label)
    windows = modality_windows(modality, window)
    return write_prepared(out, scans, options.kept(), modality.upper(), windows, records)


def prepare_dicom(
    folder: str | Path,
    out: str | Path,
    options: PairOptions,
    label_path: str | Path | None = None,
    series: str | None = None,
    modality: str | None = None,
    scan_id: str | None = None,
    window: Sequence[float] | str | None = None,
) -> Path:
    """One DICOM series (+ optional NIfTI label volume on its grid) -> scan ``scan_id`` of ``out``.

    Args:
        folder: The series folder.
        out: The prepared folder.
        options: Label maps, spacing and size.
        label_path: NIfTI label volume (e.g. TotalSegmentator's) on the series' grid.
        series: SeriesInstanceUID when the folder holds several.
        modality: Overrides the series' Modality tag.
        scan_id: Default: the folder's name.
        window: This modality's window (:func:`modality_windows`).

    Returns:
        ``out``.

    Raises:
        ValueError: When the modality is neither given nor in the series, or as :func:`prepare_pair`.
    """
    files = dicom_series_files(folder, series)
    modality = modality or dicom_modality(files)
    if not modality:
        raise ValueError(f"dicom: {folder} has no Modality tag (0008,0060); pass --modality (e.g. CT, MR)")
    sid = scan_id or Path(folder).resolve().name
    with tempfile.TemporaryDirectory() as tmp:
        converted = dicom_series_to_nifti(folder, Path(tmp) / "series.nii.gz", files=files)
        image, label, record = prepare_pair(converted, label_path, options, shown=f"{folder} (DICOM series)")
    windows = modality_windows(modality, window)
    return write_prepared(
        out, {sid: (image, label)}, options.kept(), modality.upper(), windows, {sid: record}
    )
