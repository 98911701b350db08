"""Volume dataset layouts: NIfTI cases (image + label volume) that every 2D family reads as slices.

A volume layout lists one record per CASE (``slice_index`` None; ``group`` = the patient), so that
k-fold, split files and labelled fractions act on patients, never on slices; the DataModule then
expands the training and validation cases into slices (:mod:`datasets.volume_slices`) and tests whole
cases in 3D. Layouts:

* ``volumes``: the prepared folder ``python -m datasets.volumes`` writes,
  ``<root>/<case>/image.nii.gz`` (+ ``label.nii.gz``).
* ``msd``: the Medical Segmentation Decathlon / nnU-Net raw format, ``imagesTr/<case>.nii.gz`` (or
  nnU-Net's ``<case>_0000.nii.gz``) with ``labelsTr/<case>.nii.gz``. ``imagesTs`` has no labels:
  it is for ``run.py --predict``, and the test split is derived.
* ``nifti_pairs``: ``<case>.nii.gz`` next to ``<case>_gt.nii.gz`` anywhere below the root, as ACDC's
  ``patientXXX/patientXXX_frameYY[_gt].nii.gz`` (``*_4d.nii.gz`` cine files are skipped). The patient of
  ``patient001_frame01`` is ``patient001``: both frames of a patient stay on one side of a split.

Every case goes to ``train``; val and test are derived by patient (k-fold) or given by a split file of
case ids or patient ids.
"""

from __future__ import annotations

import re
from pathlib import Path

from datasets.layouts import register_layout
from datasets.records import SampleRecord

VOLUME_SUFFIXES = (".nii.gz", ".nii")
_FRAME = re.compile(r"^(?P<patient>.+?)_frame\d+$")
_NNUNET_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def volume_stem(path: Path) -> str | None:
    """The name without ``.nii.gz``/``.nii``, or None for another file."""
    for suffix in VOLUME_SUFFIXES:
        if path.name.lower().endswith(suffix):
            return path.name[: -len(suffix)]
    return None


def patient_of(case_id: str) -> str:
    """The patient of a case id: ``patient001_frame01`` -> ``patient001``; other ids are their own."""
    match = _FRAME.match(case_id)
    return match.group("patient") if match else case_id


def is_volume_layout(name: str) -> bool:
    """Whether a registered layout lists volume cases."""
    from datasets.layouts import LAYOUTS

    return bool(LAYOUTS.meta(name).get("volume", False))


def _volumes_in(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        stem = volume_stem(path)
        if stem is not None and path.is_file() and not path.name.startswith("."):
            found[stem] = path
    return found


@register_layout(
    "volumes",
    structure="<root>/<case>/image.nii.gz and <root>/<case>/label.nii.gz (python -m datasets.volumes)",
    volume=True,
)
def prepared_volumes(root: Path, split: str) -> list[SampleRecord]:
    """Cases of a prepared-volumes folder (all in ``train``; labels optional per case)."""
    if split != "train":
        return []
    records = []
    for case in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        image = case / "image.nii.gz"
        if not image.is_file():
            continue
        label = case / "label.nii.gz"
        records.append(
            SampleRecord(case.name, image, label if label.is_file() else None, patient_of(case.name))
        )
    if not records:
        raise FileNotFoundError(f"no <case>/image.nii.gz under {root}")
    return records


@register_layout(
    "msd",
    structure="<root>/imagesTr/<case>[_0000].nii.gz with <root>/labelsTr/<case>.nii.gz (MSD / nnU-Net raw)",
    volume=True,
)
def msd_volumes(root: Path, split: str) -> list[SampleRecord]:
    """Labelled training cases of an MSD / nnU-Net raw dataset.

    Raises:
        FileNotFoundError: If ``imagesTr`` is missing or empty, or a case has no label.
        ValueError: For a multi-channel nnU-Net case (``_0000`` and ``_0001``): one volume per case.
    """
    if split != "train":
        return []
    images = root / "imagesTr"
    if not images.is_dir():
        raise FileNotFoundError(f"{images} not found (layout 'msd' expects imagesTr/ and labelsTr/)")
    cases: dict[str, list[Path]] = {}
    for stem, path in _volumes_in(images).items():
        match = _NNUNET_CHANNEL.match(stem)
        cases.setdefault(match.group("case") if match else stem, []).append(path)
    records = []
    for case, paths in sorted(cases.items()):
        if len(paths) > 1:
            names = ", ".join(p.name for p in paths)
            raise ValueError(
                f"case {case!r} in {images} has {len(paths)} channel files ({names}); expected one"
            )
        label = _label_file(root / "labelsTr", case)
        if label is None:
            raise FileNotFoundError(
                f"image {paths[0]} has no label: expected {root / 'labelsTr' / case}.nii.gz"
            )
        records.append(SampleRecord(case, paths[0], label, case))
    if not records:
        raise FileNotFoundError(f"no .nii.gz images in {images}")
    return records


def _label_file(folder: Path, case: str) -> Path | None:
    for suffix in VOLUME_SUFFIXES:
        path = folder / f"{case}{suffix}"
        if path.is_file():
            return path
    return None


@register_layout(
    "nifti_pairs",
    structure="<case>.nii.gz next to <case>_gt.nii.gz below <root> (ACDC: patientXXX/patientXXX_frameYY)",
    volume=True,
)
def nifti_pairs(root: Path, split: str) -> list[SampleRecord]:
    """Cases ``<case>.nii.gz`` + ``<case>_gt.nii.gz`` below ``root`` (recursively; ``*_4d`` skipped).

    Raises:
        FileNotFoundError: If nothing is found, or an image has no ``_gt`` label next to it.
    """
    if split != "train":
        return []
    records = []
    for path in sorted(root.rglob("*")):
        stem = volume_stem(path)
        if stem is None or stem.endswith(("_gt", "_4d")) or not path.is_file() or path.name.startswith("."):
            continue
        label = _label_file(path.parent, f"{stem}_gt")
        if label is None:
            raise FileNotFoundError(f"image {path} has no label: expected {path.parent / stem}_gt.nii.gz")
        records.append(SampleRecord(stem, path, label, patient_of(stem)))
    if not records:
        raise FileNotFoundError(f"no <case>.nii.gz with <case>_gt.nii.gz below {root}")
    return records
