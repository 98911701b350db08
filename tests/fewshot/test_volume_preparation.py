"""Volume preparation on tiny fixtures: DICOM series choice, label grids, remapping, spacing, bad inputs."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from datasets.volumes.__main__ import main as cli_main
from datasets.volumes.challenges import prepare_sabs
from datasets.volumes.io import read_scan, write_nifti
from datasets.volumes.label_maps import label_map, remap_labels
from datasets.volumes.manifest import read_manifest

from .test_volumes import _write_dicom_series

UID_A, UID_B = "1.2.826.0.1.3680043.2.1125.1.111", "1.2.826.0.1.3680043.2.1125.1.222"


def _nifti(tmp_path, name, array, affine=None):
    return write_nifti(tmp_path / name, array, np.eye(4) if affine is None else affine)


def _prepare(*args):
    return cli_main([*map(str, args)])


def test_each_subcommand_has_its_own_help(capsys):
    helps = {}
    for command in ("acdc", "chaos", "sabs", "nifti", "dicom"):
        with pytest.raises(SystemExit):
            cli_main([command, "--help"])
        helps[command] = capsys.readouterr().out
    assert "--label_map" not in helps["acdc"] and "--size" not in helps["acdc"]
    assert "--size" in helps["chaos"] and "--label" not in helps["chaos"]
    for command in ("nifti", "dicom"):
        for option in ("--label ", "--label_map", "--target_map", "--target_spacing_mm", "--window"):
            assert option in helps[command], (command, option)
    assert "--series" in helps["dicom"] and "--series" not in helps["nifti"]


def test_dicom_folder_with_two_series_names_both_and_series_picks_one(tmp_path):
    folder = tmp_path / "dcm"
    folder.mkdir()
    _write_dicom_series(folder, np.zeros((3, 4, 5)), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), UID_A, "a", "CT")
    _write_dicom_series(folder, np.ones((2, 4, 5)), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), UID_B, "b", "CT")
    both = rf"({UID_A}, {UID_B}|{UID_B}, {UID_A})"
    with pytest.raises(ValueError, match=rf"holds 2 DICOM series \({both}\).*--series"):
        _prepare("dicom", "--src", folder, "--out", tmp_path / "prep", "--no_window")
    _prepare("dicom", "--src", folder, "--out", tmp_path / "prep", "--series", UID_B, "--no_window")
    image, label = read_scan(tmp_path / "prep", "dcm")
    assert image.array.shape == (5, 4, 2) and label is None  # series B has 2 slices
    manifest = read_manifest(tmp_path / "prep")
    assert manifest["scans"]["dcm"]["modality"] == "CT" and manifest["windows"] == {"CT": None}
    with pytest.raises(ValueError, match="series '9.9' is not in"):
        _prepare("dicom", "--src", folder, "--out", tmp_path / "p2", "--series", "9.9")


def test_dicom_with_a_totalsegmentator_label_is_remapped_and_counted(tmp_path, caplog):
    folder = tmp_path / "patient7"
    folder.mkdir()
    _write_dicom_series(folder, np.zeros((3, 4, 5)), (0.8, 0.9, 2.5), (10.0, -20.0, 30.0), modality="CT")
    _prepare("dicom", "--src", folder, "--out", tmp_path / "plain")
    grid = nib.load(str(tmp_path / "plain" / "patient7" / "image.nii.gz"))  # the converted series, RAS
    ts = np.zeros(grid.shape, np.int16)  # TotalSegmentator v2 ids
    ts[0, 0, :] = 5  # liver -> 1
    ts[1, 0, :] = 1  # spleen -> 2
    ts[2, 0, 0] = 2  # kidney_right -> 3
    ts[3, 0, 0] = 3  # kidney_left -> 4
    ts[4, 1, :2] = 7  # pancreas: registered, not a framework class -> 0
    ts[4, 2, 0] = 99  # not in the registered map -> 0
    lab = _nifti(tmp_path, "seg.nii.gz", ts, grid.affine)
    with caplog.at_level("WARNING", logger="datasets.volumes.label_maps"):
        _prepare("dicom", "--src", folder, "--out", tmp_path / "prep", "--label", lab,
                 "--label_map", "totalsegmentator", "--window", "-125", "275")  # fmt: skip
    _, label = read_scan(tmp_path / "prep", "patient7")
    expected = np.zeros_like(ts)
    expected[0, 0, :], expected[1, 0, :], expected[2, 0, 0], expected[3, 0, 0] = 1, 2, 3, 4
    np.testing.assert_array_equal(label.array, expected)
    manifest = read_manifest(tmp_path / "prep")
    record = manifest["scans"]["patient7"]
    assert record["label_voxels_set_to_background"] == {"7": 2, "99": 1}
    assert manifest["label_map"] == {"spleen": 2, "kidney_right": 3, "kidney_left": 4, "liver": 1}
    assert manifest["windows"] == {"CT": (-125.0, 275.0)}
    assert "7 (pancreas): 2" in caplog.text and "99 (not in the source map): 1" in caplog.text


def test_registered_and_json_label_maps():
    ts = label_map("totalsegmentator")
    organs = ("spleen", "kidney_right", "kidney_left", "liver", "pancreas")
    assert [ts[o] for o in organs] == [1, 2, 3, 5, 7]
    assert label_map("totalsegmentator_mr")["aorta"] == 23 and label_map("sample")["liver"] == 1
    assert label_map('{"liver": 5}') == {"liver": 5}
    with pytest.raises(ValueError, match="class 'liver' has id 0"):
        label_map('{"liver": 0}')
    with pytest.raises(ValueError, match=r"ids \[2\] are used by more than one class"):
        label_map({"a": 2, "b": 2})
    with pytest.raises(ValueError, match="no class of the source label map"):
        remap_labels(np.zeros((2, 2), int), {"tumour": 1}, label_map("sample"), "x.nii.gz")


@pytest.mark.parametrize("bad", ["shape", "flipped", "spacing"])
def test_a_label_off_its_image_grid_names_both_files_shapes_and_affines(tmp_path, bad):
    img = _nifti(tmp_path, "img.nii.gz", np.zeros((4, 5, 3), np.float32), np.diag([2.0, 2.0, 3.0, 1.0]))
    affine, shape = np.diag([2.0, 2.0, 3.0, 1.0]), (4, 5, 3)
    if bad == "shape":
        shape = (4, 5, 2)
    elif bad == "flipped":
        affine = np.diag([-2.0, 2.0, 3.0, 1.0])
    else:
        affine = np.diag([2.5, 2.0, 3.0, 1.0])
    lab = _nifti(tmp_path, "lab.nii.gz", np.zeros(shape, np.int16), affine)
    reason = {"shape": "shapes differ", "flipped": "origins differ by 6 mm", "spacing": r"spacing \(2.5"}[bad]
    label_part = rf"label .*lab.nii.gz \(shape \({shape[0]}, 5, {shape[2]}\), affine \[\[.*\) does not match "
    image_part = rf"image .*img.nii.gz \(shape \(4, 5, 3\), affine \[\[2, 0, 0, 0\].*{reason}"
    with pytest.raises(ValueError, match=label_part + image_part):
        _prepare("nifti", "--src", img, "--label", lab, "--out", tmp_path / "prep", "--modality", "CT")
    assert not (tmp_path / "prep").exists()


def test_an_image_without_labels(tmp_path):
    img = _nifti(tmp_path, "case9.nii.gz", np.ones((4, 4, 3), np.float32))
    _prepare("nifti", "--src", img, "--out", tmp_path / "prep", "--modality", "mr", "--no_window")
    image, label = read_scan(tmp_path / "prep", "case9")
    assert label is None and image.array.shape == (4, 4, 3)
    assert read_manifest(tmp_path / "prep")["scans"]["case9"]["label"] is False
    (tmp_path / "src" / "images").mkdir(parents=True)
    (tmp_path / "src" / "labels").mkdir()
    _nifti(tmp_path / "src" / "images", "a.nii.gz", np.ones((4, 4, 3), np.float32))
    with pytest.raises(FileNotFoundError, match=r"image .*images/a.nii.gz has no label .*labels/a.nii.gz"):
        _prepare("nifti", "--src", tmp_path / "src", "--out", tmp_path / "p2", "--modality", "CT")


def test_labels_outside_the_class_range_or_not_integers_are_errors(tmp_path):
    img = np.full((20, 16, 3), -1000.0, np.float32)
    img[4:14, 2:12] = 100.0
    lab = np.zeros((20, 16, 3), np.int16)
    lab[5:8, 3:6, 1] = 20  # SABS has ids 1..13
    _nifti(tmp_path / "img", "img0001.nii.gz", img)
    _nifti(tmp_path / "label", "label0001.nii.gz", lab)
    with pytest.raises(ValueError, match=r"scan 0001 label: label ids \[20\] are outside the label map"):
        prepare_sabs(tmp_path, tmp_path / "prep", size=8)
    fractional = _nifti(tmp_path, "frac.nii.gz", np.full((4, 4, 3), 0.5, np.float32))
    image = _nifti(tmp_path, "i.nii.gz", np.ones((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"frac.nii.gz: label values \[0.5\] are not integers"):
        _prepare("nifti", "--src", image, "--label", fractional, "--out", tmp_path / "p", "--modality", "CT")


def test_a_4d_volume_where_3d_is_expected(tmp_path):
    img = _nifti(tmp_path, "dyn.nii.gz", np.zeros((4, 4, 3, 2), np.float32))
    with pytest.raises(ValueError, match=r"dyn.nii.gz has shape \(4, 4, 3, 2\); expected a 3D volume"):
        _prepare("nifti", "--src", img, "--out", tmp_path / "prep", "--modality", "CT")


def test_target_spacing_resamples_in_plane_by_the_spacing_ratio(tmp_path):
    affine = np.diag([2.0, 2.0, 5.0, 1.0])
    affine[:3, 3] = [10.0, 20.0, 30.0]
    lab = np.zeros((10, 8, 3), np.int16)
    lab[2:4, 2:6, 1] = 1
    img = _nifti(tmp_path, "s.nii.gz", np.arange(240, dtype=np.float32).reshape(10, 8, 3), affine)
    seg = _nifti(tmp_path, "l.nii.gz", lab, affine)
    _prepare("nifti", "--src", img, "--label", seg, "--out", tmp_path / "p", "--modality", "CT",
             "--target_spacing_mm", "1.0")  # fmt: skip
    image, label = read_scan(tmp_path / "p", "s")
    assert image.array.shape == label.array.shape == (20, 16, 3)  # 2 mm -> 1 mm: x2 in-plane, z kept
    assert image.spacing == pytest.approx((1.0, 1.0, 5.0))
    # voxel edges are kept: the first centre moves back by a quarter of an old voxel (0.5 mm)
    np.testing.assert_allclose(image.affine[:3, 3], [9.5, 19.5, 30.0])
    assert int((label.array == 1).sum()) == 4 * lab.sum()  # 2x2 new voxels per old one
    _prepare("nifti", "--src", img, "--label", seg, "--out", tmp_path / "p3", "--modality", "CT",
             "--target_spacing_mm", "3", "--size", "8")  # fmt: skip
    image, _ = read_scan(tmp_path / "p3", "s")
    assert image.array.shape == (8, 8, 3)  # round(10 * 2/3) = 7, round(8 * 2/3) = 5, then padded to 8
    assert image.spacing == pytest.approx((2.0 * 10 / 7, 2.0 * 8 / 5, 5.0))


def test_preparing_into_a_folder_with_another_label_map_is_an_error(tmp_path):
    img = _nifti(tmp_path, "a.nii.gz", np.ones((4, 4, 3), np.float32))
    lab = _nifti(tmp_path, "la.nii.gz", np.ones((4, 4, 3), np.int16))
    _prepare("nifti", "--src", img, "--label", lab, "--out", tmp_path / "p", "--modality", "CT")
    with pytest.raises(ValueError, match=r"manifest.json has label map .*these scans .*into another --out"):
        _prepare("nifti", "--src", img, "--label", lab, "--out", tmp_path / "p", "--modality", "CT",
                 "--label_map", "chaos", "--target_map", "source")  # fmt: skip
    b_with_window = ["--scan_id", "b", "--window", "0", "1"]
    _prepare("nifti", "--src", img, "--out", tmp_path / "p", "--modality", "CT", *b_with_window)
    with pytest.raises(ValueError, match=r"has window \(0.0, 1.0\) for CT, these scans \(0.0, 2.0\)"):
        _prepare("nifti", "--src", img, "--out", tmp_path / "p", "--modality", "CT", "--window", "0", "2")
    assert sorted(json.loads((tmp_path / "p" / "manifest.json").read_text())["scans"]) == ["a", "b"]
