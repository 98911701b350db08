"""Find and read prediction inputs: 2D images, NIfTI volumes and DICOM series.

2D images are read by the training reader (:func:`datasets.image_io.read_image`), so grey/RGB, 8/16-bit
and mixed sizes behave as in training. Volumes keep their original affine and header: inference runs on
the RAS-canonical array and the prediction is turned back to the file's own orientation when written.
A DICOM series is converted by SimpleITK (as ``python -m datasets.volumes`` does) and then read as NIfTI.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import nibabel as nib
import numpy as np

from datasets.image_io import IMAGE_SUFFIXES, read_image
from datasets.volumes.io import dicom_series_to_nifti

NIFTI_SUFFIXES = (".nii", ".nii.gz")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputItem:
    """One input to predict.

    Attributes:
        path: Image file, NIfTI file or DICOM series folder.
        kind: ``image``, ``nifti`` or ``dicom``.
        name: Output name relative to ``--output`` without suffix (``sub/img`` for ``sub/img.png``).
    """

    path: Path
    kind: Literal["image", "nifti", "dicom"]
    name: str


@dataclass
class VolumeData:
    """A volume ready for slice-wise inference.

    Attributes:
        array: RAS-canonical voxels ``[X, Y, Z]`` (or ``[X, Y, Z, C]``), float32; the stored axes
            when ``canonical`` is False.
        reference: The image as stored (its affine and header are the output's).
        canonical: Whether ``array`` was reoriented to the closest RAS axes (``inference.reorient``).
    """

    array: np.ndarray
    reference: nib.Nifti1Image
    canonical: bool = True


def _nifti_stem(path: Path) -> str | None:
    name = path.name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return None


def _kind_of_file(path: Path) -> Literal["image", "nifti"] | None:
    if _nifti_stem(path) is not None:
        return "nifti"
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return "image"
    return None


def _is_dicom_series(folder: Path) -> bool:
    import SimpleITK as sitk  # noqa: N813 - the library's usual name

    return bool(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))


def _item(path: Path, root: Path) -> InputItem | None:
    kind = _kind_of_file(path)
    if kind is None:
        return None
    rel = path.relative_to(root) if root != path else Path(path.name)
    stem = _nifti_stem(rel) if kind == "nifti" else rel.stem
    return InputItem(path, kind, str(rel.parent / stem) if str(rel.parent) != "." else str(stem))


def discover_inputs(path: str | Path) -> list[InputItem]:
    """The inputs under ``--input``: one file, the image/NIfTI files below a folder, or a DICOM series.

    Folders are searched recursively (hidden files skipped); output names keep the sub-folders. A
    folder without image or NIfTI files is read as one DICOM series.

    Raises:
        FileNotFoundError: If ``path`` does not exist or holds nothing to predict.
        ValueError: For a file of an unknown type, or two inputs that would share an output name.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"--input {path} does not exist")
    if path.is_file():
        item = _item(path, path)
        if item is None:
            raise ValueError(
                f"--input {path}: unknown file type; expected an image ({', '.join(IMAGE_SUFFIXES)}), "
                "a NIfTI file (.nii, .nii.gz) or a DICOM series folder"
            )
        return [item]
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    items = [item for p in files if (item := _item(p, path)) is not None]
    if not items:
        if _is_dicom_series(path):
            return [InputItem(path, "dicom", path.name)]
        raise FileNotFoundError(f"--input {path}: no image, NIfTI file or DICOM series found")
    _check_unique_names(items)
    return items


def _check_unique_names(items: list[InputItem]) -> None:
    seen: dict[str, Path] = {}
    for item in items:
        other = seen.setdefault(item.name, item.path)
        if other != item.path:
            raise ValueError(
                f"inputs {other} and {item.path} would write the same output {item.name!r}; "
                "keep one of them or predict them into separate --output folders"
            )


def read_image_input(item: InputItem, channels: int) -> np.ndarray:
    """A 2D input as float32 ``H x W x channels`` in ``[0, 1]`` (the training reader).

    Raises:
        ValueError: If the file is unreadable, or its channels cannot become the model's (both named).
    """
    return read_image(item.path, channels)


def read_volume_input(item: InputItem, channels: int, reorient: bool = True) -> VolumeData:
    """A NIfTI file or DICOM series as RAS-canonical float32 voxels (``reorient`` False: as stored).

    Raises:
        ValueError: If the file is unreadable, not 3D (or 4D with ``channels`` channels).
    """
    if item.kind == "dicom":
        with tempfile.TemporaryDirectory() as tmp:
            converted = dicom_series_to_nifti(item.path, Path(tmp) / "series.nii.gz")
            return _load_nifti(converted, item.path, channels, True, reorient)
    return _load_nifti(item.path, item.path, channels, False, reorient)


def _load_nifti(path: Path, shown: Path, channels: int, in_memory: bool, reorient: bool) -> VolumeData:
    try:
        img = nib.load(str(path))
        if in_memory:  # the file goes away with its temporary folder
            img = nib.Nifti1Image(np.asarray(img.dataobj), img.affine, img.header)
        oriented = nib.as_closest_canonical(img) if reorient else img
        array = np.asarray(oriented.dataobj, dtype=np.float32)
    except Exception as err:  # re-raised with the file named, never swallowed
        raise ValueError(f"cannot read volume {shown}: {type(err).__name__}: {err}") from err
    have = 1 if array.ndim == 3 else (array.shape[3] if array.ndim == 4 else None)
    if have is None:
        raise ValueError(
            f"volume {shown} has shape {array.shape}; expected 3D [X, Y, Z] (or 4D [X, Y, Z, C])"
        )
    if array.ndim == 4 and have == 1:
        array = array[..., 0]
    elif array.ndim == 4 and have != channels:
        raise ValueError(f"volume {shown} has {have} channels but the model takes {channels}")
    return VolumeData(array, img, reorient)


def predict_each(
    items: list[InputItem], one: Callable[[InputItem], dict[str, Any]], bar: Any
) -> tuple[list[dict[str, Any]], list[str]]:
    """Run ``one`` on every input; a failing input is logged, listed and skipped, the rest go on.

    Args:
        items: The inputs.
        one: Predicts and writes one input; returns its ``predictions.csv`` row (``seconds`` is added).
        bar: A tqdm bar advanced once per input.

    Returns:
        The rows and the failure lines (``path: message``).
    """
    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    for item in items:
        start = time.perf_counter()
        try:
            row = one(item)
        except (ValueError, FileNotFoundError) as err:
            failures.append(f"{item.path}: {err}")
            log.error("skipped %s: %s", item.path, err)
        else:
            row["seconds"] = round(time.perf_counter() - start, 6)
            rows.append(row)
        bar.update(1)
    return rows, failures
