"""Volume I/O (NIfTI, DICOM series), preparation functions and layouts, clear errors."""

from __future__ import annotations

import json
import locale

import nibabel as nib
import numpy as np
import pytest

from datasets.volumes.__main__ import main as cli_main
from datasets.volumes.challenges import prepare_acdc, prepare_sabs
from datasets.volumes.geometry import crop_or_pad, resample
from datasets.volumes.intensity import clip_top_percent, window, zscore_global, zscore_volume
from datasets.volumes.io import Volume, dicom_series_to_nifti, find_scans, read_nifti, read_scan, write_nifti
from datasets.volumes.label_maps import label_map
from datasets.volumes.prepare import class_slice_index


def test_nifti_roundtrip_and_canonical_orientation(tmp_path):
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    lps = np.diag([-0.5, -0.7, 2.0, 1.0])
    write_nifti(tmp_path / "v.nii.gz", data, lps)
    raw = read_nifti(tmp_path / "v.nii.gz", canonical=False)
    assert raw.orientation == "LPS" and raw.spacing == pytest.approx((0.5, 0.7, 2.0))
    ras = read_nifti(tmp_path / "v.nii.gz")
    assert ras.orientation == "RAS"
    np.testing.assert_array_equal(ras.array, data[::-1, ::-1, :])
    assert not list(tmp_path.glob(".*"))  # no temp file left


SERIES_UID = "1.2.826.0.1.3680043.2.1125.1.12345"


def _write_dicom_series(folder, array_zyx, spacing, origin, series=SERIES_UID, prefix="slice", modality="MR"):
    """Write a DICOM series with SimpleITK, restoring the process locale its GDCM writer resets to C.

    Without the restore, every later ``subprocess.run(text=True)`` in the test session decoded output
    as ASCII and failed on Lightning's box-drawing test table.
    """
    saved = locale.setlocale(locale.LC_ALL)
    try:
        _write_dicom_slices(folder, array_zyx, spacing, origin, series, prefix, modality)
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def test_dicom_writer_helper_keeps_the_locale(tmp_path):
    before = locale.setlocale(locale.LC_ALL)
    _write_dicom_series(tmp_path, np.zeros((2, 4, 4)), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    assert locale.setlocale(locale.LC_ALL) == before


def _write_dicom_slices(folder, array_zyx, spacing, origin, series, prefix, modality):
    import SimpleITK as sitk  # noqa: N813

    image = sitk.GetImageFromArray(array_zyx.astype(np.int16))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for z in range(image.GetDepth()):
        sl = image[:, :, z]
        tags = {
            "0008|0060": modality, "0020|000e": series, "0020|000d": series + ".0",
            "0008|0016": "1.2.840.10008.5.1.4.1.1.4",
            "0008|0018": f"{series}.{z + 1}", "0020|0013": str(z + 1), "0020|0037": "1\\0\\0\\0\\1\\0",
            "0020|0032": "\\".join(map(str, image.TransformIndexToPhysicalPoint((0, 0, z)))),
            "0018|0050": str(spacing[2]), "0028|0030": f"{spacing[1]}\\{spacing[0]}",
        }  # fmt: skip
        for key, value in tags.items():
            sl.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"{prefix}{z:03d}.dcm"))
        writer.Execute(sl)


def test_dicom_series_to_nifti_keeps_spacing_and_orientation(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 1000, size=(5, 6, 7))  # [z, y, x]
    (tmp_path / "dcm").mkdir()
    _write_dicom_series(tmp_path / "dcm", arr, (0.8, 0.9, 2.5), (10.0, -20.0, 30.0))
    out = dicom_series_to_nifti(tmp_path / "dcm", tmp_path / "out.nii.gz")
    img = nib.load(str(out))
    # DICOM is LPS; identity direction -> NIfTI RAS affine with x, y negated.
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
    assert img.header.get_zooms()[:3] == pytest.approx((0.8, 0.9, 2.5), abs=1e-4)
    np.testing.assert_allclose(img.affine[:3, 3], [-10.0, 20.0, 30.0], atol=1e-4)
    np.testing.assert_array_equal(np.asarray(img.dataobj), arr.transpose(2, 1, 0))
    vol = read_nifti(out)
    assert vol.orientation == "RAS" and vol.spacing == pytest.approx((0.8, 0.9, 2.5), abs=1e-4)
    (tmp_path / "dcm_empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no DICOM series"):
        dicom_series_to_nifti(tmp_path / "dcm_empty", tmp_path / "x.nii.gz")


def test_label_shape_mismatch_is_a_clear_error(tmp_path):
    write_nifti(tmp_path / "s1" / "image.nii.gz", np.zeros((4, 4, 3), np.float32), np.eye(4))
    write_nifti(tmp_path / "s1" / "label.nii.gz", np.zeros((4, 4, 2), np.int16), np.eye(4))
    assert find_scans(tmp_path) == ["s1"]
    with pytest.raises(ValueError, match=r"label .*s1/label.nii.gz \(shape \(4, 4, 2\), .*image .*s1/image"):
        read_scan(tmp_path, "s1")


def test_intensity_functions_hand_values():
    x = np.arange(1000, dtype=np.float32)
    assert clip_top_percent(x, 0.5).max() == pytest.approx(np.percentile(x, 99.5))
    assert window(np.array([-500.0, 0.0, 900.0])).tolist() == [-125.0, 0.0, 275.0]
    z = zscore_volume(np.array([1.0, 3.0]))
    assert z.tolist() == [-1.0, 1.0]
    a, b = zscore_global([np.array([0.0, 2.0]), np.array([4.0, 6.0])])  # mean 3, std sqrt(5)
    np.testing.assert_allclose(np.concatenate([a, b]), (np.array([0, 2, 4, 6]) - 3) / np.sqrt(5), rtol=1e-6)
    assert zscore_volume(np.ones(3)).tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="no voxels to normalise"):
        zscore_global([])


def test_geometry_functions():
    assert crop_or_pad(np.ones((10, 3, 2)), 6).shape == (6, 6, 2)
    padded = crop_or_pad(np.ones((2, 2, 1)), 4)
    assert padded[:, :, 0].tolist() == [[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]]
    vol = resample(
        Volume(np.zeros((10, 10, 4), np.float32), np.diag([1.0, 1.0, 2.0, 1.0])), (2.0, 2.0, 1.0), 1
    )
    assert vol.array.shape == (5, 5, 8) and vol.spacing == pytest.approx((2.0, 2.0, 1.0))


def test_class_slice_index_and_label_maps():
    lab = np.zeros((3, 3, 4), int)
    lab[0, 0, 1] = lab[1, 1, 3] = 6
    assert class_slice_index({"a": lab}, {"liver": 6, "spleen": 1}) == {"a": {"liver": [1, 3], "spleen": []}}
    assert label_map("sabs")["liver"] == 6 and label_map("chaos")["spleen"] == 4
    with pytest.raises(KeyError, match="unknown label map 'nope'"):
        label_map("nope")


def test_prepare_nifti_folder_cli_and_acdc(tmp_path):
    src = tmp_path / "src"
    lab = np.zeros((6, 6, 3), np.int16)
    lab[1:3, 1:3, 1] = 2
    write_nifti(src / "images" / "case1.nii.gz", np.ones((6, 6, 3), np.float32), np.eye(4))
    write_nifti(src / "labels" / "case1.nii.gz", lab, np.eye(4))
    out = cli_main(["nifti", "--src", str(src), "--out", str(tmp_path / "prep"), "--modality", "ct"])
    assert find_scans(out) == ["case1"]
    assert json.loads((tmp_path / "prep" / "class_slice_index.json").read_text())["case1"]["spleen"] == [1]
    acdc = tmp_path / "acdc" / "patient001"
    write_nifti(acdc / "patient001_frame01.nii.gz", np.ones((6, 6, 3), np.float32), np.eye(4))
    write_nifti(acdc / "patient001_frame01_gt.nii.gz", lab, np.eye(4))
    prepare_acdc(tmp_path / "acdc", tmp_path / "acdc_prep")
    assert find_scans(tmp_path / "acdc_prep") == ["patient001_frame01"]
    write_nifti(acdc / "patient001_frame12.nii.gz", np.ones((6, 6, 3), np.float32), np.eye(4))
    with pytest.raises(FileNotFoundError, match="patient001_frame12_gt.nii.gz"):
        prepare_acdc(tmp_path / "acdc", tmp_path / "acdc_prep2")


def test_prepare_sabs_windows_crops_and_resizes(tmp_path):
    img = np.full((20, 16, 3), -1000.0, np.float32)
    img[4:14, 2:12] = 100.0
    lab = np.zeros((20, 16, 3), np.int16)
    lab[5:8, 3:6, 1] = 6
    write_nifti(tmp_path / "img" / "img0001.nii.gz", img, np.eye(4))
    write_nifti(tmp_path / "label" / "label0001.nii.gz", lab, np.eye(4))
    prepare_sabs(tmp_path, tmp_path / "prep", size=8)
    image, label = read_scan(tmp_path / "prep", "0001")
    assert image.array.shape == (8, 8, 3) and image.array.min() >= -125 and image.array.max() <= 275
    assert set(np.unique(label.array)) == {0, 6}
    write_nifti(tmp_path / "label" / "label0001.nii.gz", lab[:, :, :2], np.eye(4))
    with pytest.raises(
        ValueError, match=r"label .*label0001.nii.gz \(shape \(20, 16, 2\).*img0001.nii.gz.*shapes differ"
    ):
        prepare_sabs(tmp_path, tmp_path / "prep2", size=8)


def test_dicom_conversion_names_missing_folders_and_skipped_files(tmp_path, caplog):
    """Regression: a missing folder was reported as 'no DICOM series found'; skipped files went unsaid."""
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        dicom_series_to_nifti(tmp_path / "missing", tmp_path / "o.nii.gz")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("not dicom")
    with pytest.raises(
        FileNotFoundError, match=r"no DICOM series found .*1 files, none part of a DICOM series: readme\.txt"
    ):
        dicom_series_to_nifti(tmp_path / "notes", tmp_path / "o.nii.gz")
    series = tmp_path / "series"
    series.mkdir()
    _write_dicom_series(series, np.zeros((3, 4, 5)), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0))
    (series / "DICOMDIR.txt").write_text("an index file")
    with caplog.at_level("WARNING", logger="datasets.volumes.io"):
        out = dicom_series_to_nifti(series, tmp_path / "o.nii.gz")
    assert nib.load(str(out)).shape == (5, 4, 3)
    assert "1 files are not part of the series" in caplog.text and "DICOMDIR.txt" in caplog.text
