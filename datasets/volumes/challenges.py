"""Preparation of the public datasets' documented layouts: CHAOS-T2, SABS (Synapse) and ACDC.

Each writes the prepared layout (:mod:`datasets.volumes.prepare`) with its own label map (registered in
:mod:`datasets.volumes.label_maps`) and records its modality and window in the manifest; label ids
outside the dataset's map are an error.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np

from datasets.progress import progress
from datasets.volumes.geometry import (
    body_bbox,
    check_same_geometry,
    crop_or_pad,
    crop_or_pad_affine,
    resample,
    resize_inplane,
)
from datasets.volumes.intensity import clip_top_percent, window
from datasets.volumes.io import Volume, read_nifti
from datasets.volumes.label_maps import LABEL_MAPS, integer_labels
from datasets.volumes.prepare import write_prepared

# CHAOS ground-truth PNGs encode organs as grey ranges (challenge documentation).
CHAOS_PNG_RANGES = {1: (55, 70), 2: (110, 135), 3: (175, 200), 4: (240, 255)}
CHAOS_SPACING = (1.25, 1.25, 7.70)


def read_label(path: Path) -> Volume:
    """A label volume with integer ids (fractional or negative values refused)."""
    label = read_nifti(path, dtype=None)
    label.array = integer_labels(label.array, str(path))
    return label


def prepare_acdc(src: str | Path, out: str | Path) -> Path:
    """ACDC: ``src/patientXXX/patientXXX_frameYY.nii.gz`` + ``..._gt.nii.gz`` -> one scan per frame (MR)."""
    pattern = re.compile(r"^(patient\d{3}_frame\d{2})\.nii(\.gz)?$")
    scans = {}
    for path in progress(sorted(Path(src).glob("patient*/patient*_frame*.nii*")), "read"):
        match = pattern.match(path.name)
        if not match:
            continue
        gt = path.with_name(path.name.replace(match.group(1), f"{match.group(1)}_gt"))
        if not gt.is_file():
            raise FileNotFoundError(f"prepare_acdc: frame {path} has no ground truth {gt}")
        image, label = read_nifti(path), read_label(gt)
        check_same_geometry(image, label, path, gt)
        scans[match.group(1)] = (image, label)
    if not scans:
        raise FileNotFoundError(f"prepare_acdc: no patientXXX/patientXXX_frameYY.nii.gz under {src}")
    return write_prepared(out, scans, LABEL_MAPS.get("acdc"), "MR", {"MR": None})


def prepare_sabs(
    src: str | Path, out: str | Path, size: int = 256, hu_window: tuple[float, float] = (-125.0, 275.0)
) -> Path:
    """SABS (Synapse): ``src/img/img<id>.nii.gz`` + ``src/label/label<id>.nii.gz`` (CT).

    Window to ``hu_window`` (recorded as the CT window), crop the in-plane border where nothing is
    above the window's low end, resize in-plane to ``size`` (z spacing kept).
    """
    src = Path(src)
    images = sorted((src / "img").glob("img*.nii*"))
    if not images:
        raise FileNotFoundError(f"prepare_sabs: no img/img*.nii.gz under {src}")
    scans = {}
    for path in progress(images, "read"):
        sid = path.name.split(".nii")[0][3:]
        lab_path = src / "label" / path.name.replace("img", "label", 1)
        image, label = read_nifti(path), read_label(lab_path)
        check_same_geometry(image, label, path, lab_path)
        arr = window(image.array, *hu_window)
        bx, by = body_bbox(arr, hu_window[0])
        arr, lab = arr[bx, by], label.array[bx, by]
        affine = image.affine.copy()
        affine[:3, 3] = image.affine[:3, :3] @ np.array([bx.start, by.start, 0]) + image.affine[:3, 3]
        affine[:3, :2] = affine[:3, :2] * np.array([arr.shape[0] / size, arr.shape[1] / size])[None, :]
        scans[sid] = (
            Volume(resize_inplane(arr, size, 1), affine),
            Volume(resize_inplane(lab, size, 0), affine),
        )
    return write_prepared(out, scans, LABEL_MAPS.get("sabs"), "CT", {"CT": list(hu_window)})


def chaos_png_to_ids(png: np.ndarray) -> np.ndarray:
    """Map CHAOS grey-range ground truth to label ids (``CHAOS_PNG_RANGES``)."""
    out = np.zeros(png.shape, dtype=np.int16)
    for cid, (lo, hi) in CHAOS_PNG_RANGES.items():
        out[(png >= lo) & (png <= hi)] = cid
    return out


def _read_chaos_patient(t2: Path) -> tuple[Volume, Volume]:
    import SimpleITK as sitk  # noqa: N813 - the library's usual name
    from PIL import Image

    dcms, pngs = sorted((t2 / "DICOM_anon").glob("*.dcm")), sorted((t2 / "Ground").glob("*.png"))
    if len(dcms) != len(pngs) or not dcms:
        raise ValueError(
            f"prepare_chaos: {t2} has {len(dcms)} DICOM slices but {len(pngs)} ground-truth PNGs"
        )
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(f) for f in dcms])
    image = reader.Execute()
    gt = np.stack([chaos_png_to_ids(np.asarray(Image.open(p).convert("L"))) for p in pngs])
    if sitk.GetArrayFromImage(image).shape != gt.shape:
        raise ValueError(
            f"prepare_chaos: {t2}/Ground PNGs stack to {gt.shape} but {t2}/DICOM_anon to "
            f"{sitk.GetArrayFromImage(image).shape}; expected the same grid"
        )
    label = sitk.GetImageFromArray(gt)
    label.CopyInformation(image)
    with tempfile.TemporaryDirectory() as tmp:
        sitk.WriteImage(sitk.Cast(image, sitk.sitkFloat32), f"{tmp}/i.nii.gz")
        sitk.WriteImage(label, f"{tmp}/l.nii.gz")
        return read_nifti(f"{tmp}/i.nii.gz"), read_nifti(f"{tmp}/l.nii.gz", dtype=np.int64)


def prepare_chaos(
    src: str | Path, out: str | Path, size: int = 256, spacing: tuple[float, float, float] = CHAOS_SPACING
) -> Path:
    """CHAOS-T2 SPIR: ``src/<pid>/T2SPIR/DICOM_anon/*.dcm`` + ``src/<pid>/T2SPIR/Ground/*.png`` (MR).

    DICOM and PNG slices are paired by sorted file name; clip the top 0.5%, resample to
    ``spacing`` mm, centre crop/pad in-plane to ``size``.
    """
    patients = sorted(p for p in Path(src).glob("*/T2SPIR") if p.is_dir())
    if not patients:
        raise FileNotFoundError(f"prepare_chaos: no <pid>/T2SPIR under {src}")
    scans = {}
    for t2 in progress(patients, "read"):
        img_v, lab_v = _read_chaos_patient(t2)
        img_v = resample(Volume(clip_top_percent(img_v.array), img_v.affine), spacing, order=1)
        lab_v = resample(lab_v, spacing, order=0)
        affine = crop_or_pad_affine(img_v.affine, img_v.array.shape, size)
        scans[t2.parent.name] = (
            Volume(crop_or_pad(img_v.array, size, float(img_v.array.min())), affine),
            Volume(crop_or_pad(lab_v.array, size, 0), affine),
        )
    return write_prepared(out, scans, LABEL_MAPS.get("chaos"), "MR", {"MR": None})
