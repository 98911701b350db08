"""``run.py --predict`` end to end on the embedded sample with a tiny model trained in the test."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from datasets.image_io import read_mask
from engine.predict import parse_predict_args, run_prediction
from models.metrics import per_image_metrics
from run import main
from tests.engine.conftest import REPO, tiny_args

SAMPLE = REPO / "datasets" / "sample"
TEST_IMAGES = SAMPLE / "nuclei" / "test" / "images"
CT_VOLUME = SAMPLE / "volumes" / "ct" / "image.nii.gz"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny nuclei U-Net (48 px, 6 epochs, ~10 s) that predicts some foreground."""
    tmp = tmp_path_factory.mktemp("predict_train")
    extra = ["--data.image_size", "48", "--model.model_kwargs", '{"base_channel": 8}']
    result = main([*tiny_args(tmp, epochs=6), *extra, "--model.hd95_in_test", "false"])
    run_dir = Path(result["run_dir"])
    return {"best": result["best_ckpt"], "last": str(run_dir / "checkpoints" / "last.ckpt"), "run": run_dir}


def predict(*args: str) -> dict:
    return run_prediction(parse_predict_args(["--predict", "--no_progress", *args]))


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_test_split_predictions_are_the_masks_the_test_stage_scored(trained, tmp_path):
    out = tmp_path / "out"
    predict("--ckpt", trained["best"], "--input", str(TEST_IMAGES), "--output", str(out))
    tested = {row["id"]: row for row in read_rows(trained["run"] / "test_per_image.csv")}
    assert len(tested) == 3
    dices = []
    for image in sorted(TEST_IMAGES.iterdir()):
        pred = np.asarray(Image.open(out / f"{image.stem}.png"))
        assert pred.shape == np.asarray(Image.open(image)).shape  # the input's own size
        target = read_mask(SAMPLE / "nuclei" / "test" / "masks" / image.name, 2)
        metrics = per_image_metrics(torch.from_numpy(pred.astype(np.int64)), torch.from_numpy(target), 2)
        assert metrics["dice"] == pytest.approx(float(tested[image.stem]["dice"]), abs=1e-6)
        dices.append(metrics["dice"])
    assert max(dices) > 0  # the masks are not trivially empty
    rows = read_rows(out / "predictions.csv")
    assert [Path(r["input"]).name for r in rows] == sorted(p.name for p in TEST_IMAGES.iterdir())
    assert all(r["height"] == "128" and r["width"] == "128" and float(r["seconds"]) > 0 for r in rows)
    assert all(0 <= float(r["foreground_fraction"]) <= 1 for r in rows)


def test_volume_prediction_keeps_the_input_geometry_in_any_orientation(trained, tmp_path):
    src = nib.load(str(CT_VOLUME))
    # The same voxels stored LPS with another origin: the output must follow the stored grid.
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    shape = np.array(src.shape[:3])
    shift = np.eye(4)
    shift[:2, 3] = shape[:2] - 1
    lps = nib.Nifti1Image(np.asarray(src.dataobj)[::-1, ::-1], src.affine @ shift @ flip, src.header)
    folder = tmp_path / "vols"
    folder.mkdir()
    nib.save(src, str(folder / "ras.nii.gz"))
    nib.save(lps, str(folder / "lps.nii.gz"))
    out = tmp_path / "out"
    args = ["--ckpt", trained["best"], "--input", str(folder), "--output", str(out)]
    predict(*args, "--window", "-125", "275", "--save_probs", "--overlay", "--overlay_every", "10")
    ras, lps_out = nib.load(str(out / "ras.nii.gz")), nib.load(str(out / "lps.nii.gz"))
    np.testing.assert_allclose(ras.affine, src.affine)
    np.testing.assert_allclose(lps_out.affine, lps.affine)
    assert nib.aff2axcodes(lps_out.affine) == ("L", "P", "S") and ras.shape == src.shape
    np.testing.assert_array_equal(np.asarray(lps_out.dataobj), np.asarray(ras.dataobj)[::-1, ::-1])
    assert set(np.unique(np.asarray(ras.dataobj))) <= {0, 1}
    probs = nib.load(str(out / "ras_probs.nii.gz"))
    assert probs.shape == (*src.shape, 2)
    np.testing.assert_allclose(np.asarray(probs.dataobj).sum(-1), 1.0, atol=1e-4)
    overlays = sorted(p.name for p in out.glob("ras_overlay_z*.png"))
    assert overlays == [f"ras_overlay_z{z:03d}.png" for z in (0, 10, 20)]
    assert {r["depth"] for r in read_rows(out / "predictions.csv")} == {str(src.shape[2])}


def test_tta_and_ensemble_on_the_sample(trained, tmp_path):
    base = ["--input", str(TEST_IMAGES)]
    predict("--ckpt", trained["best"], *base, "--output", str(tmp_path / "single"), "--save_probs")
    predict("--ckpt", trained["best"], "--ckpt", trained["best"], *base, "--output", str(tmp_path / "same"))
    predict("--ckpt", trained["best"], "--ckpt", trained["last"], *base, "--output", str(tmp_path / "ens"))
    predict("--ckpt", trained["best"], *base, "--output", str(tmp_path / "tta"), "--tta=flip", "--save_probs")
    for image in TEST_IMAGES.iterdir():
        single = np.asarray(Image.open(tmp_path / "single" / f"{image.stem}.png"))
        # Averaging a checkpoint with itself changes nothing.
        np.testing.assert_array_equal(single, np.asarray(Image.open(tmp_path / "same" / f"{image.stem}.png")))
        assert np.asarray(Image.open(tmp_path / "ens" / f"{image.stem}.png")).shape == single.shape
        probs = np.load(tmp_path / "tta" / f"{image.stem}_probs.npz")["probs"]
        assert probs.dtype == np.float16 and probs.shape == (2, *single.shape)
        np.testing.assert_allclose(probs.astype(np.float32).sum(0), 1.0, atol=2e-3)


def test_sliding_window_mode_and_mixed_inputs_keep_each_size(trained, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (150, 90, 3), dtype=np.uint8)).save(folder / "rgb.jpg")
    Image.fromarray(rng.integers(0, 65535, (30, 70), dtype=np.uint16)).save(folder / "grey16.png")
    Image.fromarray(np.asarray(Image.open(next(TEST_IMAGES.iterdir())))).save(folder / "nuclei.tif")
    for mode in ("resize", "sliding"):
        out = tmp_path / mode
        predict("--ckpt", trained["best"], "--input", str(folder), "--output", str(out), "--mode", mode)
        sizes = {p.stem: np.asarray(Image.open(p)).shape for p in out.glob("*.png")}
        assert sizes == {"rgb": (150, 90), "grey16": (30, 70), "nuclei": (128, 128)}


def test_bad_inputs_are_skipped_and_listed_and_outputs_never_overwritten(trained, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.open(next(TEST_IMAGES.iterdir())).save(folder / "good.png")
    (folder / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"1 of 2 inputs failed.*broken\.png"):
        predict("--ckpt", trained["best"], "--input", str(folder), "--output", str(out), "--palette=binary")
    assert set(np.unique(np.asarray(Image.open(out / "good.png")))) <= {0, 255}
    assert [Path(r["input"]).name for r in read_rows(out / "predictions.csv")] == ["good.png"]
    (folder / "broken.png").unlink()
    with pytest.raises(ValueError, match="predictions.csv exists"):
        predict("--ckpt", trained["best"], "--input", str(folder), "--output", str(out))
    (out / "predictions.csv").unlink()
    before = (out / "good.png").read_bytes()
    with pytest.raises(ValueError, match=r"good\.png exists; pass --overwrite"):
        predict("--ckpt", trained["best"], "--input", str(folder), "--output", str(out))
    assert (out / "good.png").read_bytes() == before
    predict("--ckpt", trained["best"], "--input", str(folder), "--output", str(out), "--overwrite")


def test_run_py_predict_through_the_cli_with_a_config(trained, tmp_path, capsys):
    from run import cli_main

    out = tmp_path / "cli"
    cfg = str(REPO / "configs" / "demo.yaml")
    args = ["--predict", "--cfg", cfg, "--ckpt", trained["best"], "--input", str(TEST_IMAGES)]
    assert cli_main([*args, "--output", str(out), "--no_progress"]) == 0
    assert len(list(out.glob("*.png"))) == 3
    missing = ["--predict", "--ckpt", trained["best"], "--input", str(tmp_path / "none"), "--output", "x"]
    assert cli_main(missing) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "none does not exist" in err and "Traceback" not in err
