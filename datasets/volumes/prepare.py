"""Dataset preparation as plain functions: CHAOS-T2, SABS, ACDC and a generic NIfTI folder.

Every ``prepare_*`` writes the prepared layout (see :mod:`datasets.volumes`): one folder per scan
with ``image.nii.gz`` + ``label.nii.gz``, then ``label_map.json`` and ``class_slice_index.json``.
Z-scoring is not baked into the files; :func:`zscore_volume` / :func:`zscore_global` are applied
when a DataModule loads the scans (per volume for MR, one mean/std over all scans for CT).
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from scipy import ndimage

from datasets.atomic_io import atomic_write_json
from datasets.progress import progress
from datasets.volumes.io import IMAGE_NAME, LABEL_NAME, Volume, read_nifti, write_nifti

# Names -> ids of each dataset's label volumes (data, not code).
LABEL_MAPS: dict[str, dict[str, int]] = {
    "chaos": {"liver": 1, "kidney_right": 2, "kidney_left": 3, "spleen": 4},
    "sabs": {
        "spleen": 1,
        "kidney_right": 2,
        "kidney_left": 3,
        "gallbladder": 4,
        "esophagus": 5,
        "liver": 6,
        "stomach": 7,
        "aorta": 8,
        "ivc": 9,
        "portal_splenic_vein": 10,
        "pancreas": 11,
        "adrenal_right": 12,
        "adrenal_left": 13,
    },  # fmt: skip
    "acdc": {"rv": 1, "myo": 2, "lv": 3},
    "sample": {"liver": 1, "spleen": 2, "kidney_right": 3, "kidney_left": 4},
}
# CHAOS ground-truth PNGs encode organs as grey ranges (challenge documentation).
CHAOS_PNG_RANGES = {1: (55, 70), 2: (110, 135), 3: (175, 200), 4: (240, 255)}
CHAOS_SPACING = (1.25, 1.25, 7.70)


def label_map(name_or_path: str | Mapping[str, int]) -> dict[str, int]:
    """A label map from a registered name (``LABEL_MAPS``), a JSON file or a dict.

    Raises:
        KeyError: For an unknown name that is not a file either.
    """
    if isinstance(name_or_path, Mapping):
        return {str(k): int(v) for k, v in name_or_path.items()}
    if name_or_path in LABEL_MAPS:
        return dict(LABEL_MAPS[name_or_path])
    path = Path(name_or_path)
    if path.is_file():
        return {str(k): int(v) for k, v in json.loads(path.read_text()).items()}
    raise KeyError(f"label_map: {name_or_path!r} is neither a known map {sorted(LABEL_MAPS)} nor a JSON file")


def clip_top_percent(image: np.ndarray, percent: float = 0.5) -> np.ndarray:
    """Clip intensities above the ``100 - percent`` percentile (CHAOS-T2: top 0.5%)."""
    return np.minimum(image, np.percentile(image, 100.0 - percent)).astype(np.float32)


def window(image: np.ndarray, low: float = -125.0, high: float = 275.0) -> np.ndarray:
    """Clip CT intensities to an HU window (SABS: abdominal window [-125, 275])."""
    return np.clip(image, low, high).astype(np.float32)


def zscore_volume(image: np.ndarray) -> np.ndarray:
    """Per-volume z-score (MR). A constant volume maps to zeros rather than dividing by 0."""
    std = float(image.std())
    return ((image - image.mean()) / (std if std > 0 else 1.0)).astype(np.float32)


def zscore_global(images: list[np.ndarray]) -> list[np.ndarray]:
    """One mean/std over all voxels of all volumes (CT), applied to each.

    Raises:
        ValueError: If ``images`` is empty or holds no voxels.
    """
    total = sum(float(v.size) for v in images)
    if total == 0:
        raise ValueError("zscore_global: no voxels to normalise (expected at least one non-empty volume)")
    mean = sum(float(v.sum()) for v in images) / total
    var = sum(float(((v - mean) ** 2).sum()) for v in images) / total
    std = np.sqrt(var) if var > 0 else 1.0
    return [((v - mean) / std).astype(np.float32) for v in images]


def resample(volume: Volume, spacing: tuple[float, float, float], order: int) -> Volume:
    """Resample to a new voxel size (scipy zoom; order 1 for images, 0 for labels), affine updated."""
    factors = np.asarray(volume.spacing) / np.asarray(spacing, dtype=np.float64)
    array = ndimage.zoom(volume.array, factors, order=order, mode="nearest", grid_mode=True)
    affine = volume.affine.copy()
    affine[:3, :3] = volume.affine[:3, :3] / factors[None, :]
    return Volume(array, affine)


def crop_or_pad(array: np.ndarray, size: int, fill: float = 0.0) -> np.ndarray:
    """Centre crop or pad the two in-plane axes of ``[X, Y, Z]`` to ``size x size``."""
    out = array
    for axis in (0, 1):
        n = out.shape[axis]
        if n > size:
            start = (n - size) // 2
            out = np.take(out, np.arange(start, start + size), axis=axis)
        elif n < size:
            pad = [(0, 0)] * out.ndim
            pad[axis] = ((size - n) // 2, size - n - (size - n) // 2)
            out = np.pad(out, pad, constant_values=fill)
    return out


def crop_or_pad_affine(affine: np.ndarray, shape: tuple[int, ...], size: int) -> np.ndarray:
    """The affine matching :func:`crop_or_pad` of an array of ``shape`` (origin moved by the offset)."""
    offset = np.zeros(3)
    for axis in (0, 1):
        n = shape[axis]
        offset[axis] = (n - size) // 2 if n > size else -((size - n) // 2)
    out = affine.copy()
    out[:3, 3] = affine[:3, :3] @ offset + affine[:3, 3]
    return out


def resize_inplane(array: np.ndarray, size: int, order: int) -> np.ndarray:
    """Resize the in-plane axes of ``[X, Y, Z]`` to ``size x size`` (z untouched)."""
    factors = (size / array.shape[0], size / array.shape[1], 1.0)
    return ndimage.zoom(array, factors, order=order, mode="nearest", grid_mode=True)


def body_bbox(image: np.ndarray, threshold: float) -> tuple[slice, slice]:
    """In-plane bounding box of voxels above ``threshold`` over all slices (SABS border crop)."""
    fg = (image > threshold).any(axis=2)
    if not fg.any():
        raise ValueError(f"body_bbox: no voxel above {threshold}; cannot crop")
    xs, ys = np.where(fg.any(axis=1))[0], np.where(fg.any(axis=0))[0]
    return slice(xs[0], xs[-1] + 1), slice(ys[0], ys[-1] + 1)


def check_same_grid(image: np.ndarray, label: np.ndarray, where: str) -> None:
    """Raise ValueError naming ``where`` when image and label shapes differ."""
    if image.shape != label.shape:
        raise ValueError(
            f"{where}: label shape {label.shape} differs from image shape {image.shape}; "
            "expected the same grid"
        )


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
    out: str | Path, scans: Mapping[str, tuple[Volume, Volume]], names: Mapping[str, int]
) -> Path:
    """Write scans (image, label) plus ``label_map.json`` and ``class_slice_index.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for sid, (image, label) in progress(scans.items(), "write"):
        check_same_grid(image.array, label.array, f"scan {sid}")
        write_nifti(out / sid / IMAGE_NAME, image.array.astype(np.float32), image.affine)
        write_nifti(out / sid / LABEL_NAME, label.array.astype(np.int16), label.affine)
    atomic_write_json(out / "label_map.json", dict(names))
    atomic_write_json(
        out / "class_slice_index.json", class_slice_index({k: v[1].array for k, v in scans.items()}, names)
    )
    return out


def prepare_nifti_folder(
    src: str | Path,
    out: str | Path,
    names: Mapping[str, int],
    image_dir: str = "images",
    label_dir: str = "labels",
) -> Path:
    """Generic: ``src/images/<id>.nii.gz`` + ``src/labels/<id>.nii.gz`` -> prepared layout (as is).

    Raises:
        FileNotFoundError: No image, or an image without its label.
    """
    src = Path(src)
    images = sorted((src / image_dir).glob("*.nii*"))
    if not images:
        raise FileNotFoundError(f"prepare_nifti_folder: no .nii/.nii.gz under {src / image_dir}")
    scans = {}
    for path in progress(images, "read"):
        sid = path.name.split(".nii")[0]
        lab = src / label_dir / path.name
        if not lab.is_file():
            raise FileNotFoundError(f"prepare_nifti_folder: image {path} has no label {lab}")
        scans[sid] = (read_nifti(path), read_nifti(lab, dtype=np.int64))
    return write_prepared(out, scans, names)


def prepare_acdc(src: str | Path, out: str | Path) -> Path:
    """ACDC: ``src/patientXXX/patientXXX_frameYY.nii.gz`` + ``..._gt.nii.gz`` -> one scan per frame."""
    pattern = re.compile(r"^(patient\d{3}_frame\d{2})\.nii(\.gz)?$")
    scans = {}
    for path in progress(sorted(Path(src).glob("patient*/patient*_frame*.nii*")), "read"):
        match = pattern.match(path.name)
        if not match:
            continue
        gt = path.with_name(path.name.replace(match.group(1), f"{match.group(1)}_gt"))
        if not gt.is_file():
            raise FileNotFoundError(f"prepare_acdc: frame {path} has no ground truth {gt}")
        scans[match.group(1)] = (read_nifti(path), read_nifti(gt, dtype=np.int64))
    if not scans:
        raise FileNotFoundError(f"prepare_acdc: no patientXXX/patientXXX_frameYY.nii.gz under {src}")
    return write_prepared(out, scans, LABEL_MAPS["acdc"])


def prepare_sabs(
    src: str | Path, out: str | Path, size: int = 256, hu_window: tuple[float, float] = (-125.0, 275.0)
) -> Path:
    """SABS (Synapse): ``src/img/img<id>.nii.gz`` + ``src/label/label<id>.nii.gz``.

    Window to ``hu_window``, crop the in-plane border where nothing is above the window's low end,
    resize in-plane to ``size`` (z spacing kept).
    """
    src = Path(src)
    images = sorted((src / "img").glob("img*.nii*"))
    if not images:
        raise FileNotFoundError(f"prepare_sabs: no img/img*.nii.gz under {src}")
    scans = {}
    for path in progress(images, "read"):
        sid = path.name.split(".nii")[0][3:]
        lab_path = src / "label" / path.name.replace("img", "label", 1)
        image, label = read_nifti(path), read_nifti(lab_path, dtype=np.int64)
        check_same_grid(image.array, label.array, f"prepare_sabs {lab_path}")
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
    return write_prepared(out, scans, LABEL_MAPS["sabs"])


def chaos_png_to_ids(png: np.ndarray) -> np.ndarray:
    """Map CHAOS grey-range ground truth to label ids (``CHAOS_PNG_RANGES``)."""
    out = np.zeros(png.shape, dtype=np.int16)
    for cid, (lo, hi) in CHAOS_PNG_RANGES.items():
        out[(png >= lo) & (png <= hi)] = cid
    return out


def prepare_chaos(
    src: str | Path, out: str | Path, size: int = 256, spacing: tuple[float, float, float] = CHAOS_SPACING
) -> Path:
    """CHAOS-T2 SPIR: ``src/<pid>/T2SPIR/DICOM_anon/*.dcm`` + ``src/<pid>/T2SPIR/Ground/*.png``.

    DICOM and PNG slices are paired by sorted file name; clip the top 0.5%, resample to
    ``spacing`` mm, centre crop/pad in-plane to ``size``.
    """
    import SimpleITK as sitk  # noqa: N813 - the library's usual name
    from PIL import Image

    patients = sorted(p for p in Path(src).glob("*/T2SPIR") if p.is_dir())
    if not patients:
        raise FileNotFoundError(f"prepare_chaos: no <pid>/T2SPIR under {src}")
    scans = {}
    for t2 in progress(patients, "read"):
        dcms, pngs = sorted((t2 / "DICOM_anon").glob("*.dcm")), sorted((t2 / "Ground").glob("*.png"))
        if len(dcms) != len(pngs) or not dcms:
            raise ValueError(
                f"prepare_chaos: {t2} has {len(dcms)} DICOM slices but {len(pngs)} ground-truth PNGs"
            )
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames([str(f) for f in dcms])
        image = reader.Execute()
        gt = np.stack([chaos_png_to_ids(np.asarray(Image.open(p).convert("L"))) for p in pngs])
        check_same_grid(sitk.GetArrayFromImage(image), gt, f"prepare_chaos {t2}")
        label = sitk.GetImageFromArray(gt)
        label.CopyInformation(image)
        with tempfile.TemporaryDirectory() as tmp:
            sitk.WriteImage(sitk.Cast(image, sitk.sitkFloat32), f"{tmp}/i.nii.gz")
            sitk.WriteImage(label, f"{tmp}/l.nii.gz")
            img_v, lab_v = read_nifti(f"{tmp}/i.nii.gz"), read_nifti(f"{tmp}/l.nii.gz", dtype=np.int64)
        img_v = resample(Volume(clip_top_percent(img_v.array), img_v.affine), spacing, order=1)
        lab_v = resample(lab_v, spacing, order=0)
        affine = crop_or_pad_affine(img_v.affine, img_v.array.shape, size)
        scans[t2.parent.name] = (
            Volume(crop_or_pad(img_v.array, size, float(img_v.array.min())), affine),
            Volume(crop_or_pad(lab_v.array, size, 0), affine),
        )
    return write_prepared(out, scans, LABEL_MAPS["chaos"])
