"""NIfTI read/write keeping spacing and orientation, DICOM series -> NIfTI, reading prepared scans."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from datasets.atomic_io import atomic_path
from datasets.volumes.geometry import check_same_geometry
from datasets.volumes.label_maps import integer_labels

IMAGE_NAME = "image.nii.gz"
LABEL_NAME = "label.nii.gz"

logger = logging.getLogger(__name__)


@dataclass
class Volume:
    """A 3D array in voxel order ``[X, Y, Z]`` (nibabel's) with its voxel-to-world affine.

    Attributes:
        array: The voxel data ``[X, Y, Z]``.
        affine: ``4x4`` voxel -> world (RAS+ mm) matrix.
    """

    array: np.ndarray
    affine: np.ndarray

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the three array axes."""
        return tuple(float(v) for v in np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0)))

    @property
    def orientation(self) -> str:
        """Axis codes such as ``"RAS"`` (where each array axis points in world space)."""
        return "".join(nib.aff2axcodes(self.affine))


def read_nifti(path: str | Path, canonical: bool = True, dtype: type | None = np.float32) -> Volume:
    """Read a NIfTI file, by default reoriented to the closest RAS+ axis order.

    Args:
        path: ``.nii`` or ``.nii.gz`` file.
        canonical: Reorient with ``nibabel.as_closest_canonical`` (no resampling, axis flips only).
        dtype: Cast the data (None keeps the stored type, e.g. for label volumes).

    Returns:
        The volume.

    Raises:
        FileNotFoundError: When ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"read_nifti: {path} does not exist")
    img = nib.load(str(path))
    if canonical:
        img = nib.as_closest_canonical(img)
    data = np.asarray(img.dataobj)
    if dtype is not None:
        data = data.astype(dtype)
    if data.ndim != 3:
        raise ValueError(f"read_nifti: {path} has shape {data.shape}; expected a 3D volume")
    return Volume(data, np.asarray(img.affine, dtype=np.float64))


def write_nifti(path: str | Path, array: np.ndarray, affine: np.ndarray) -> Path:
    """Write a volume atomically (temp file in the same folder, then ``os.replace``).

    Args:
        path: Destination ending in ``.nii`` or ``.nii.gz``.
        array: ``[X, Y, Z]`` data.
        affine: ``4x4`` voxel -> world matrix.

    Returns:
        ``path``.
    """
    path = Path(path)
    with atomic_path(path, keep_suffix=True) as tmp:
        nib.save(nib.Nifti1Image(np.asarray(array), np.asarray(affine, dtype=np.float64)), tmp)
    return path


def dicom_series_files(folder: str | Path, series: str | None = None) -> list[str]:
    """The slice files of one DICOM series of ``folder`` (GDCM's position-sorted order).

    Args:
        folder: Folder holding the series.
        series: SeriesInstanceUID to take when the folder holds several (None: the only one).

    Returns:
        The file paths.

    Raises:
        FileNotFoundError: When the folder is missing or holds no DICOM series.
        ValueError: When it holds several series and ``series`` is None, or ``series`` is not one of them.
    """
    import SimpleITK as sitk  # noqa: N813 - the library's usual name

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"dicom: {folder} is not a folder (expected a DICOM series folder)")
    uids = list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    if not uids:
        others = sorted(p.name for p in folder.iterdir() if p.is_file())
        shown = ", ".join(others[:5]) + (f", ... ({len(others)} files)" if len(others) > 5 else "")
        raise FileNotFoundError(
            f"dicom_series_to_nifti: no DICOM series found in {folder} "
            f"({len(others)} files, none part of a DICOM series{': ' + shown if others else ''})"
        )
    if series is None and len(uids) > 1:
        raise ValueError(
            f"dicom: {folder} holds {len(uids)} DICOM series ({', '.join(uids)}); "
            "choose one with --series UID (series=...)"
        )
    if series is not None and series not in uids:
        raise ValueError(f"dicom: series {series!r} is not in {folder}; its series are {', '.join(uids)}")
    files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series or uids[0]))
    skipped = sorted(p.name for p in folder.iterdir() if p.is_file() and str(p) not in set(files))
    if skipped:
        logger.warning("dicom: %s: %d files are not part of the series and were skipped: %s",
                       folder, len(skipped), ", ".join(skipped[:5]))  # fmt: skip
    return files


def dicom_modality(files: list[str]) -> str | None:
    """The Modality tag (0008,0060) of a series' first file, upper case (None when absent)."""
    import SimpleITK as sitk  # noqa: N813 - the library's usual name

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(files[0]))
    reader.ReadImageInformation()
    if not reader.HasMetaDataKey("0008|0060"):
        return None
    return reader.GetMetaData("0008|0060").strip().upper() or None


def dicom_series_to_nifti(
    folder: str | Path, out_path: str | Path, files: list[str] | None = None, series: str | None = None
) -> Path:
    """Convert one DICOM series to NIfTI with SimpleITK (LPS -> RAS handled by the NIfTI writer).

    Args:
        folder: Folder holding the series.
        out_path: Destination ``.nii.gz``.
        files: Explicit slice files in the wanted order (default: :func:`dicom_series_files`).
        series: SeriesInstanceUID when the folder holds several series.

    Returns:
        ``out_path``.

    Raises:
        FileNotFoundError: When the folder holds no DICOM series.
        ValueError: When it holds several and ``series`` does not pick one.
    """
    import SimpleITK as sitk  # noqa: N813 - the library's usual name

    if files is None:
        files = dicom_series_files(folder, series)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(f) for f in files])
    image = reader.Execute()
    out_path = Path(out_path)
    with atomic_path(out_path, keep_suffix=True) as tmp:
        sitk.WriteImage(image, str(tmp))
    return out_path


def find_scans(root: str | Path) -> list[str]:
    """Scan ids of a prepared folder: sub-folders holding ``image.nii.gz`` (sorted).

    Raises:
        FileNotFoundError: When ``root`` is missing or holds no scan.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"find_scans: {root} is not a folder")
    ids = sorted(p.parent.name for p in root.glob(f"*/{IMAGE_NAME}"))
    if not ids:
        raise FileNotFoundError(f"find_scans: no <scan_id>/{IMAGE_NAME} under {root}")
    return ids


def read_scan(root: str | Path, scan_id: str) -> tuple[Volume, Volume | None]:
    """Image and label (None when ``label.nii.gz`` is absent) of one prepared scan.

    Raises:
        ValueError: When the label's values are not integer ids or its grid is not the image's
            (:func:`datasets.volumes.geometry.check_same_geometry`).
    """
    folder = Path(root) / scan_id
    image = read_nifti(folder / IMAGE_NAME)
    label = None
    if (folder / LABEL_NAME).is_file():
        label = read_nifti(folder / LABEL_NAME, dtype=None)
        label.array = integer_labels(label.array, str(folder / LABEL_NAME))
        check_same_geometry(image, label, folder / IMAGE_NAME, folder / LABEL_NAME)
    return image, label
