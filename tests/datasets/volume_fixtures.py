"""Tiny NIfTI volumes written in each volume layout (MSD / nnU-Net raw, ACDC pairs, prepared folders)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

SHAPE = (12, 10, 6)
SPACING = (1.5, 1.5, 3.0)


def volume_pair(seed: int, shape: tuple[int, int, int] = SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """A float image and a label with classes 1 (a box) and 2 (a smaller box), slice 0 empty."""
    rng = np.random.default_rng(seed)
    image = rng.normal(100.0, 20.0, shape).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    label[2:8, 2:7, 1:5] = 1
    label[3:5, 3:5, 2:4] = 2
    image[label == 1] += 200.0
    image[label == 2] += 400.0
    return image, label


def write_nifti(path: Path, array: np.ndarray, spacing=SPACING, affine: np.ndarray | None = None) -> Path:
    """Write ``array`` with a diagonal RAS affine of ``spacing`` (or the given affine)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if affine is None:
        affine = np.diag([*spacing, 1.0])
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


def make_msd(root: Path, cases: int = 3, nnunet: bool = False) -> Path:
    """``imagesTr/<case>[_0000].nii.gz`` + ``labelsTr/<case>.nii.gz`` (and one unlabelled ``imagesTs``)."""
    for i in range(cases):
        image, label = volume_pair(i)
        name = f"organ_{i:03d}"
        write_nifti(root / "imagesTr" / (f"{name}_0000.nii.gz" if nnunet else f"{name}.nii.gz"), image)
        write_nifti(root / "labelsTr" / f"{name}.nii.gz", label)
    write_nifti(root / "imagesTs" / "organ_100.nii.gz", volume_pair(99)[0])
    return root


def make_acdc(root: Path, patients: int = 3) -> Path:
    """ACDC's ``patientXXX/patientXXX_frameYY[_gt].nii.gz`` (two frames each) and a skipped ``_4d`` file."""
    for p in range(1, patients + 1):
        folder = root / f"patient{p:03d}"
        for frame in (1, 12):
            image, label = volume_pair(p * 100 + frame)
            write_nifti(folder / f"patient{p:03d}_frame{frame:02d}.nii.gz", image)
            write_nifti(folder / f"patient{p:03d}_frame{frame:02d}_gt.nii.gz", label)
        write_nifti(folder / f"patient{p:03d}_4d.nii.gz", np.zeros((*SHAPE, 2), np.float32))
    return root


def make_prepared(root: Path, cases: int = 2) -> Path:
    """``<case>/image.nii.gz`` + ``<case>/label.nii.gz``, as ``python -m datasets.volumes`` writes."""
    for i in range(cases):
        image, label = volume_pair(10 + i)
        write_nifti(root / f"scan{i}" / "image.nii.gz", image)
        write_nifti(root / f"scan{i}" / "label.nii.gz", label)
    return root


VOLUME_LAYOUT_WRITERS = {"msd": make_msd, "nifti_pairs": make_acdc, "volumes": make_prepared}
