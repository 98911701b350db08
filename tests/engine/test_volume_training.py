"""Volume datasets end to end: train slice-wise, evaluate a DICOM series prepared by the framework's tool."""

from __future__ import annotations

import csv
import locale
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from datasets.volumes.__main__ import main as prepare
from engine.predict import parse_predict_args, run_prediction
from run import main
from tests.engine.conftest import REPO

VOLUMES = REPO / "datasets" / "sample" / "volumes"
CONFIG = str(REPO / "configs" / "demo_volume.yaml")
TINY = ["--data.image_size", "32", "--model.model_kwargs", '{"base_channel": 4}', "--trainer.max_epochs", "2",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]  # fmt: skip
EVALUATE_ALL = ["--data.test_split", "all", "--data.split_file", "null", "--data.volumes.slabs", "1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("volume_train")
    result = main(["--cfg", CONFIG, "--runs_dir", str(tmp), *TINY])
    return result


def _rows(run_dir: str) -> dict[str, dict[str, str]]:
    with (Path(run_dir) / "test_per_image.csv").open() as handle:
        return {row["id"]: row for row in csv.DictReader(handle)}


def test_demo_volume_tests_each_held_out_slab_in_3d(trained):
    rows = _rows(trained["run_dir"])
    assert set(rows) == {"ct_s3", "ct_s5"}  # the split file's test slabs, one row per case
    assert {(r["size_x"], r["size_y"], r["size_z"], r["spacing_mm"]) for r in rows.values()} == {
        ("118", "97", "5", "3x3x3")}  # fmt: skip
    assert 0.0 <= trained["test"]["dice"] <= 1.0 and "hd95_empty" in next(iter(rows.values()))


def _write_dicom(nifti: Path, folder: Path) -> None:
    import SimpleITK as sitk  # noqa: N813

    saved = locale.setlocale(locale.LC_ALL)  # GDCM's writer resets the locale to C
    try:
        image = sitk.Cast(sitk.ReadImage(str(nifti)), sitk.sitkInt16)
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        folder.mkdir(parents=True)
        d = image.GetDirection()  # row-major 3x3: the columns are the axes' directions
        orientation = "\\".join(str(v) for v in (d[0], d[3], d[6], d[1], d[4], d[7]))
        for z in range(image.GetDepth()):
            plane = image[:, :, z]
            tags = {"0008|0060": "CT", "0020|000e": "1.2.826.0.1.3680043.8.498.1",
                    "0020|000d": "1.2.826.0.1.3680043.8.498.2", "0020|0013": str(z + 1),
                    "0020|0032": "\\".join(str(v) for v in image.TransformIndexToPhysicalPoint((0, 0, z))),
                    "0020|0037": orientation,
                    "0018|0050": str(image.GetSpacing()[2])}  # fmt: skip
            for tag, value in tags.items():
                plane.SetMetaData(tag, value)
            writer.SetFileName(str(folder / f"slice{z:03d}.dcm"))
            writer.Execute(plane)
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def test_a_dicom_series_prepared_by_the_tool_evaluates_without_hand_conversion(trained, tmp_path):
    ckpt = trained["best_ckpt"]
    _write_dicom(VOLUMES / "ct" / "image.nii.gz", tmp_path / "dicom")
    prepared = tmp_path / "prepared"
    prepare(["dicom", "--src", str(tmp_path / "dicom"), "--out", str(prepared), "--scan_id", "newct",
             "--label", str(VOLUMES / "ct" / "label.nii.gz"), "--window", "-125", "275"])  # fmt: skip
    new = main(["--cfg", CONFIG, "--evaluate", "--ckpt", ckpt, "--runs_dir", str(tmp_path / "runs"),
                "--data.root", str(prepared), *EVALUATE_ALL, *TINY])  # fmt: skip
    sample = main(["--cfg", CONFIG, "--evaluate", "--ckpt", ckpt, "--runs_dir", str(tmp_path / "runs"),
                   "--data.root", str(VOLUMES), *EVALUATE_ALL, *TINY])  # fmt: skip
    converted, original = _rows(new["run_dir"])["newct"], _rows(sample["run_dir"])["ct"]
    # The DICOM round trip keeps every voxel and the geometry: the same per-case 3D metrics.
    for key in ("dice", "dice_1", "iou", "hd95_1"):
        assert float(converted[key]) == pytest.approx(float(original[key]), abs=1e-6), key
    assert converted["size_z"] == "30"


def test_a_2_5d_model_predicts_a_volume_on_its_own_grid(tmp_path):
    extra = ["--data.in_channels", "3", "--data.inference", '{"window": [-125, 275], "context": 1}']
    result = main(["--cfg", CONFIG, "--runs_dir", str(tmp_path / "runs"), *TINY, *extra])
    out = tmp_path / "pred"
    source_path = VOLUMES / "ct" / "image.nii.gz"
    args = ["--predict", "--no_progress", "--ckpt", result["best_ckpt"], "--input", str(source_path)]
    run_prediction(parse_predict_args([*args, "--output", str(out)]))
    source, mask = nib.load(str(VOLUMES / "ct" / "image.nii.gz")), nib.load(str(out / "image.nii.gz"))
    assert mask.shape == source.shape and np.allclose(mask.affine, source.affine)
    assert set(np.unique(np.asarray(mask.dataobj))) <= set(range(5))
