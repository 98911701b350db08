"""``run.py --predict`` with a few-shot (ALPNet) checkpoint: a support and its label segment new data."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from datasets.fewshot.datamodule import FewShotDataModule
from datasets.fewshot.slices import image_slices, normalise_volumes, square_resize, square_unresize
from datasets.volumes.io import read_scan
from engine.predict import parse_predict_args, run_prediction
from engine.predict.checkpoints import read_task_checkpoint
from engine.predict.fewshot import FewShotRun, best_class_labels, relative_range, slice_probabilities
from engine.predict.fewshot_model import load_fewshot_model
from engine.predict.options import parse_query_ranges
from run import main
from tests.engine.conftest import REPO, tiny_args

VOLUMES = REPO / "datasets" / "sample" / "volumes"
CT, CT_LABEL = VOLUMES / "ct" / "image.nii.gz", VOLUMES / "ct" / "label.nii.gz"
MR = VOLUMES / "mr" / "image.nii.gz"
WINDOW = ("-125", "275")  # configs/fewshot_sample.yaml's CT window


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny ALPNet trained a few steps on the sample MR pseudolabels, tested within the CT (64 px)."""
    tmp = tmp_path_factory.mktemp("fewshot_predict")
    args = ["--cfg", str(REPO / "configs" / "fewshot_sample.yaml"), "--runs_dir", str(tmp),
            "--model.init_args.backbone", "tiny", "--trainer.max_steps", "4",
            "--data.init_args.episodes_per_epoch", "4", "--data.init_args.image_size", "64",
            "--data.init_args.root", str(VOLUMES), "--trainer.enable_progress_bar", "false"]  # fmt: skip
    result = main(args)
    run_dir = Path(result["run_dir"])
    return {"ckpt": str(run_dir / "checkpoints" / "last.ckpt"), "run": run_dir, "test": result["test"]}


def predict(*args: str) -> dict:
    return run_prediction(parse_predict_args(["--predict", "--no_progress", *args]))


def test_support_and_query_slices_are_the_test_stage_s_and_reproduce_its_dice(trained):
    ckpt, _, cls = read_task_checkpoint(trained["ckpt"], {})
    model = load_fewshot_model(trained["ckpt"], ckpt, cls, {})
    dm = FewShotDataModule(**{k: v for k, v in ckpt["datamodule_hyper_parameters"].items() if k[0] != "_"})
    dm.setup("test")
    image, label = read_scan(VOLUMES, "ct")
    normed = normalise_volumes([image.array], [(-125.0, 275.0)], model.normalize)[0]
    np.testing.assert_array_equal(image_slices(normed, model.image_size), dm.images["ct"])  # the same code
    run = FewShotRun([model])
    with (trained["run"] / "test_per_image.csv").open() as handle:
        rows = {r["id"]: r for r in csv.DictReader(handle)}
    per_organ: dict[str, list[int]] = {}
    for organ in ("liver", "spleen", "kidney_left", "kidney_right"):
        items = [it for it in dm.protocol_items() if it["organ"] == organ]
        plan = [(it["query_z"], it["support_z"]) for it in items]
        cid = items[0]["class_id"]
        probs = slice_probabilities(run, dm.images["ct"], dm.labels["ct"] == cid, dm.images["ct"], plan)
        inter = pred = 0
        for (qz, _), prob in zip(plan, probs, strict=True):
            mask = prob > 0.5
            row = rows[f"ct/{organ}/{qz:04d}"]
            assert int(mask.sum()) == int(row["pred"])  # the test stage's mask, slice by slice
            inter += int((mask & (dm.labels["ct"][qz] == cid)).sum())
            pred += int(mask.sum())
        per_organ[organ] = [inter, pred, items[0]["gt_total"]]
    for organ, (inter, pred, gt) in per_organ.items():
        assert 2 * inter / (pred + gt) == pytest.approx(trained["test"][f"dice_{organ}"], abs=1e-6)


def test_volume_query_keeps_its_geometry_in_any_orientation(trained, tmp_path):
    src = nib.load(str(MR))
    flip, shift = np.diag([-1.0, -1.0, 1.0, 1.0]), np.eye(4)
    shift[:2, 3] = np.array(src.shape[:2]) - 1
    lps = nib.Nifti1Image(np.asarray(src.dataobj)[::-1, ::-1], src.affine @ shift @ flip, src.header)
    folder = tmp_path / "queries"
    folder.mkdir()
    nib.save(src, str(folder / "ras.nii.gz"))
    nib.save(lps, str(folder / "lps.nii.gz"))
    out = tmp_path / "out"
    predict("--ckpt", trained["ckpt"], "--support", str(CT), "--support_label", str(CT_LABEL),
            "--support_window", *WINDOW, "--no_clip", "--input", str(folder), "--output", str(out),
            "--organs", "liver", "spleen", "--save_probs", "--overlay", "--overlay_every", "10")  # fmt: skip
    ras, lps_out = nib.load(str(out / "ras.nii.gz")), nib.load(str(out / "lps.nii.gz"))
    np.testing.assert_allclose(ras.affine, src.affine)
    np.testing.assert_allclose(lps_out.affine, lps.affine)
    assert ras.shape == src.shape and nib.aff2axcodes(lps_out.affine) == ("L", "P", "S")
    np.testing.assert_array_equal(np.asarray(lps_out.dataobj), np.asarray(ras.dataobj)[::-1, ::-1])
    assert set(np.unique(np.asarray(ras.dataobj))) <= {0, 1, 2}  # the sample's liver and spleen ids
    probs = np.asarray(nib.load(str(out / "ras_probs.nii.gz")).dataobj)
    assert probs.shape == (*src.shape, 2) and probs.min() >= 0 and probs.max() <= 1
    labels = np.asarray(ras.dataobj)
    np.testing.assert_array_equal(labels == 1, (probs[..., 0] > 0.5) & (probs[..., 0] >= probs[..., 1]))
    overlays = sorted(p.name for p in out.glob("ras_overlay_z*.png"))
    assert overlays == ["ras_overlay_z000.png", "ras_overlay_z010.png"]


def test_query_range_limits_the_segmented_slices(trained, tmp_path):
    out = tmp_path / "out"
    predict("--ckpt", trained["ckpt"], "--support", str(CT), "--support_label", str(CT_LABEL), "--no_clip",
            "--input", str(MR), "--output", str(out), "--organs", "liver", "--query_range", "liver=5:7",
            "--save_probs")  # fmt: skip
    probs = np.asarray(nib.load(str(out / "image_probs.nii.gz")).dataobj)[..., 0]
    touched = np.where(probs.max(axis=(0, 1)) > 0)[0]  # RAS z = axial slices
    assert set(touched) <= {5, 6, 7} and len(touched) > 0


def test_2d_support_segments_2d_queries_at_their_own_size(trained, tmp_path):
    image, label = read_scan(VOLUMES, "ct")
    z = int(np.argmax((label.array == 1).sum(axis=(0, 1))))
    grey = (np.clip(image.array[:, :, z], -125, 275) + 125) / 400 * 255
    Image.fromarray(grey.T[::-1].round().astype(np.uint8)).save(tmp_path / "support.png")
    Image.fromarray((label.array[:, :, z].T[::-1] == 1).astype(np.uint8) * 255).save(tmp_path / "mask.png")
    queries = tmp_path / "queries"
    queries.mkdir()
    Image.fromarray(grey.T[::-1].round().astype(np.uint8)).save(queries / "same.png")
    Image.fromarray(np.full((40, 70), 90, np.uint8)).save(queries / "flat.png")
    out = tmp_path / "out"
    predict("--ckpt", trained["ckpt"], "--support", str(tmp_path / "support.png"), "--support_label",
            str(tmp_path / "mask.png"), "--input", str(queries), "--output", str(out), "--palette", "binary",
            "--tta", "flip", "--overlay")  # fmt: skip
    same, flat = np.asarray(Image.open(out / "same.png")), np.asarray(Image.open(out / "flat.png"))
    assert same.shape == grey.T.shape and flat.shape == (40, 70)
    assert set(np.unique(same)) <= {0, 255} and (out / "same_overlay.png").is_file()
    with (out / "predictions.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 2


def test_ensemble_of_a_checkpoint_with_itself_changes_nothing(trained, tmp_path):
    base = ["--support", str(CT), "--support_label", str(CT_LABEL), "--no_clip", "--input", str(MR)]
    predict("--ckpt", trained["ckpt"], *base, "--output", str(tmp_path / "one"))
    predict("--ckpt", trained["ckpt"], "--ckpt", trained["ckpt"], *base, "--output", str(tmp_path / "two"))
    one, two = (np.asarray(nib.load(str(tmp_path / d / "image.nii.gz")).dataobj) for d in ("one", "two"))
    np.testing.assert_array_equal(one, two)
    assert set(np.unique(one)) <= {0, 1, 2, 3, 4}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "is a few-shot checkpoint: pass --support"),
        (["--support", str(CT), "--support_label", str(CT_LABEL)], "clipped to .*pass --support_window"),
        (["--support", str(CT), "--support_label", str(MR), "--no_clip"], "does not lie on the grid"),
        (["--support", str(CT), "--support_label", str(CT_LABEL), "--no_clip", "--organs", "heart"],
         r"--organs \['heart'\] are not in the label map"),
        (["--support", str(CT), "--support_label", str(CT_LABEL), "--no_clip", "--query_range", "liver=0:99",
          "--organs", "liver"], "outside the query's slices 0..19"),
    ],
)  # fmt: skip
def test_bad_fewshot_inputs_are_one_line_errors(trained, tmp_path, extra, message):
    with pytest.raises(ValueError, match=message):
        predict("--ckpt", trained["ckpt"], "--input", str(MR), "--output", str(tmp_path / "o"), *extra)


def test_fewshot_flags_are_refused_for_segmentation_checkpoints(tmp_path):
    result = main(tiny_args(tmp_path))
    with pytest.raises(ValueError, match="--support --organs apply to few-shot checkpoints only"):
        predict("--ckpt", result["best_ckpt"], "--input", str(MR), "--output", str(tmp_path / "o"),
                "--support", str(CT), "--organs", "liver")  # fmt: skip


def test_query_range_flag_parsing():
    assert parse_query_ranges(["liver=3:9", "spleen=all"]) == {"liver": (3, 9), "spleen": None}
    for bad in ("liver", "liver=9:3", "liver=a:b", "=1:2"):
        with pytest.raises(ValueError, match="--query_range"):
            parse_query_ranges([bad])
    with pytest.raises(ValueError, match="once per organ"):
        parse_query_ranges(["liver=1:2", "liver=3:4"])


def test_relative_range_and_best_class_labels_by_hand():
    assert relative_range((10, 19), 40, 20) == (5, 9)
    assert relative_range((0, 39), 40, 20) == (0, 19)
    assert relative_range((39, 39), 40, 10) == (9, 9)
    a = np.array([[0.9, 0.6, 0.2, 0.7]], np.float32)
    b = np.array([[0.8, 0.7, 0.4, 0.7]], np.float32)
    labels = best_class_labels([(3, a), (5, b)], a.shape, np.uint8)
    np.testing.assert_array_equal(labels, [[3, 5, 0, 3]])  # ties go to the first class


@pytest.mark.parametrize("shape", [(7, 12), (12, 7), (9, 9)])
def test_square_resize_round_trip(shape):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, (2, *shape))
    # At the square's own side nothing is resampled: padding is removed exactly.
    side = max(shape)
    np.testing.assert_array_equal(square_unresize(square_resize(labels, side, 0, 0), shape, 0), labels)
    up = square_resize(labels, 4 * side, order=0, fill=0)
    assert up.shape == (2, 4 * side, 4 * side)
    np.testing.assert_array_equal(square_unresize(up, shape, 0), labels)  # nearest x4 and back
