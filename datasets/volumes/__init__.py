"""3D volumes: NIfTI/DICOM I/O, dataset preparation (CHAOS-T2, SABS, ACDC, generic NIfTI) and pseudolabels.

Prepared layout (also the layout of the embedded sample ``datasets/sample/volumes``)::

    <root>/<scan_id>/image.nii.gz        intensity-processed volume
    <root>/<scan_id>/label.nii.gz        integer label volume, same grid
    <root>/label_map.json                {"liver": 1, ...}        (optional)
    <root>/class_slice_index.json        {scan_id: {class: [z, ...]}}

CLI: ``python -m datasets.volumes chaos|sabs|acdc|nifti|dicom --src ... --out ...``.
"""

from __future__ import annotations

from datasets.volumes.io import (
    Volume,
    dicom_series_to_nifti,
    find_scans,
    read_nifti,
    read_scan,
    write_nifti,
)

__all__ = ["Volume", "dicom_series_to_nifti", "find_scans", "read_nifti", "read_scan", "write_nifti"]
