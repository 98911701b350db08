"""3D volumes: NIfTI/DICOM I/O, preparation into the prepared layout, label maps, pseudolabels.

Prepared layout (also the layout of the embedded sample ``datasets/sample/volumes``)::

    <root>/<scan_id>/image.nii.gz        image (RAS+, float32; CT in HU, windows are applied on loading)
    <root>/<scan_id>/label.nii.gz        integer label volume on the image's grid (optional)
    <root>/manifest.json                 label map, modality per scan, windows per modality
    <root>/class_slice_index.json        {scan_id: {class: [z, ...]}}

Modules: ``io`` (NIfTI, DICOM series, reading scans), ``prepare`` (writing the layout; NIfTI files and
folders, DICOM series), ``challenges`` (CHAOS-T2, SABS, ACDC), ``manifest``, ``label_maps`` (registered
maps, remapping), ``geometry`` (resampling, grid checks), ``intensity``, ``pseudolabels``.
CLI: ``python -m datasets.volumes acdc|sabs|chaos|nifti|dicom --src ... --out ...`` (``--help`` for each).
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
