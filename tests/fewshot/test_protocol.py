"""The 1-shot protocol: chunking, support choice, 3D Dice, folds, setting 2, and an end-to-end run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from datasets.fewshot.datamodule import FewShotDataModule
from datasets.fewshot.protocol import (
    aggregate_folds,
    chunk_of,
    class_slices,
    dice_3d,
    fold_splits,
    keep_slices,
    query_plan,
    support_slices,
)
from datasets.volumes.io import Volume
from datasets.volumes.prepare import write_prepared

REPO = Path(__file__).resolve().parents[2]
NAMES = {"liver": 1, "spleen": 2}


def test_chunks_and_support_centres():
    assert chunk_of(10, 3).tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert support_slices((5, 14), 3) == [7, 10, 13]  # chunks {5..8},{9..11},{12..14}
    assert support_slices((3, 11), 3) == [4, 7, 10]
    assert support_slices((4, 5), 3) == [4, 5]  # fewer slices than chunks: one chunk per slice
    assert support_slices((6, 6), 3) == [6]


def test_query_plan_uses_the_chunk_support():
    assert query_plan((10, 15), [1, 2, 3]) == [(10, 1), (11, 1), (12, 2), (13, 2), (14, 3), (15, 3)]
    assert query_plan((0, 1), [7, 8, 9]) == [(0, 7), (1, 8)]


def test_query_plan_excludes_given_slices():
    assert query_plan((10, 15), [11, 13, 15], exclude=[11, 13, 15]) == [(10, 11), (12, 13), (14, 15)]
    with pytest.raises(ValueError, match=r"every slice of the query range \(4, 5\) is excluded"):
        query_plan((4, 5), [4, 5], exclude=[4, 5])


def test_dice_3d_hand_values():
    pred, gt = np.zeros((2, 2, 2), bool), np.zeros((2, 2, 2), bool)
    pred[0, 0, :] = True
    pred[1, 1, 1] = True  # 3 voxels
    gt[0, 0, 0] = gt[1, 0, 0] = True  # 2 voxels, 1 shared
    assert dice_3d(pred, gt) == pytest.approx(2 * 1 / 5)
    assert dice_3d(gt, gt) == 1.0
    assert math.isnan(dice_3d(np.zeros(3), np.zeros(3)))


def test_class_slices_and_missing_class():
    lab = np.zeros((6, 4, 4), int)
    lab[2:5, 1, 1] = 3
    assert class_slices(lab, 3) == (2, 4)
    with pytest.raises(ValueError, match="support scan 'a'.*class id 1 is absent"):
        class_slices(lab, 1, "support scan 'a'")


def test_fold_splits_hold_out_support_and_queries():
    folds = fold_splits([f"s{i}" for i in range(6)], n_folds=3)
    assert [f["support"] for f in folds] == ["s0", "s2", "s4"]
    assert folds[1]["queries"] == ["s3"] and folds[1]["train"] == ["s0", "s1", "s4", "s5"]
    for f in folds:
        assert f["support"] not in f["train"] and not set(f["queries"]) & set(f["train"])
    with pytest.raises(ValueError, match="need >= 2"):
        fold_splits(["a", "b", "c"], n_folds=3)


def test_setting2_keep_slices():
    lab = np.zeros((5, 3, 3), int)
    lab[1, 0, 0], lab[3, 1, 1], lab[4, 2, 2] = 1, 2, 5
    assert keep_slices(lab, [1, 2], 5).tolist() == [True, False, True, False, True]
    assert keep_slices(None, [], 5).all()
    with pytest.raises(ValueError, match="setting 2 needs the label"):
        keep_slices(None, [1], 5)


def test_aggregate_mean_over_scans_then_folds():
    rows = [
        {"fold": 0, "scan": "a", "organ": "liver", "dice": 0.8},
        {"fold": 0, "scan": "b", "organ": "liver", "dice": 0.6},
        {"fold": 1, "scan": "c", "organ": "liver", "dice": 0.5},
        {"fold": 1, "scan": "c", "organ": "spleen", "dice": 0.4},
        {"fold": 1, "scan": "d", "organ": "spleen", "dice": math.nan},
    ]
    out = aggregate_folds(rows)
    assert out["dice_liver"] == pytest.approx(0.6)  # (0.7 + 0.5) / 2, not (0.8+0.6+0.5)/3
    assert out["dice_spleen"] == pytest.approx(0.4)
    assert out["dice_mean"] == pytest.approx(0.5)


def _synthetic_prepared(root: Path, spleen_in_support: bool = True) -> Path:
    # Two 24x24x12 scans: body disk, liver (1) in slices 2..10, spleen (2) in slices 4..6.
    yy, xx = np.mgrid[:24, :24]
    scans = {}
    for sid in ("sup", "qry"):
        img = np.zeros((24, 24, 12), np.float32)
        lab = np.zeros((24, 24, 12), np.int16)
        img[(yy - 12) ** 2 + (xx - 12) ** 2 < 100] = 1.0
        lab[4:10, 4:12, 2:11] = 1
        if sid == "qry" or spleen_in_support:
            lab[14:18, 14:18, 4:7] = 2
        img[lab > 0] += lab[lab > 0]
        scans[sid] = (Volume(img, np.eye(4)), Volume(lab, np.eye(4)))
    return write_prepared(root, scans, NAMES, "MR", {"MR": None})


def _dm(root: Path, **kw) -> FewShotDataModule:
    args = dict(root=str(root), organs=["liver", "spleen"], image_size=24, episodes_per_epoch=4,
                split={"support": "sup", "queries": ["qry"], "train": ["qry"]}, min_fg_pixels=1,
                superpixel_min_size=5)  # fmt: skip
    return FewShotDataModule(**{**args, **kw})


def test_protocol_items_on_a_synthetic_prepared_folder(tmp_path):
    root = _synthetic_prepared(tmp_path / "prep")
    assert json.loads((root / "class_slice_index.json").read_text())["sup"]["spleen"] == [4, 5, 6]
    dm = _dm(root)
    dm.setup("test")
    items = dm.protocol_items()
    liver = [(i["query_z"], i["support_z"]) for i in items if i["organ"] == "liver"]
    assert liver == [(2, 3), (3, 3), (4, 3), (5, 6), (6, 6), (7, 6), (8, 9), (9, 9), (10, 9)]
    spleen = [(i["query_z"], i["support_z"]) for i in items if i["organ"] == "spleen"]
    assert spleen == [(4, 4), (5, 5), (6, 6)]
    assert {i["gt_total"] for i in items if i["organ"] == "spleen"} == {4 * 4 * 3}
    batch = dm.test_set[0]
    assert batch["support_image"].shape == (3, 24, 24) and batch["query_mask"].sum() == 6 * 8


def test_within_scan_queries_skip_the_support_slices(tmp_path):
    # The query is the support scan: its support slices (3, 6, 9 for the liver; 4, 5, 6 cover the whole
    # spleen, so it has nothing left to query and is an error) are not segmented with their own masks.
    root = _synthetic_prepared(tmp_path / "prep")
    dm = _dm(root, organs=["liver"], split={"support": "sup", "queries": ["sup"], "train": ["qry"]})
    dm.setup("test")
    items = dm.protocol_items()
    assert [(i["query_z"], i["support_z"]) for i in items] == [
        (2, 3), (4, 3), (5, 6), (7, 6), (8, 9), (10, 9)
    ]  # fmt: skip
    assert {i["gt_total"] for i in items} == {6 * 8 * 6}  # six evaluated slices of 6x8 liver pixels
    spleen = _dm(root, organs=["spleen"], split={"support": "sup", "queries": ["sup"], "train": ["qry"]})
    with pytest.raises(ValueError, match="is excluded"):
        spleen.setup("test")


def test_setting2_removes_training_slices_with_test_classes(tmp_path):
    root = _synthetic_prepared(tmp_path / "prep")
    dm = _dm(root, setting=2, organs=["spleen"])
    dm.setup("fit")
    assert {z for _, z in dm.train_set.pool}.isdisjoint({4, 5, 6})
    dm1 = _dm(root, setting=1, organs=["spleen"])
    dm1.setup("fit")
    assert {4, 5, 6} <= {z for _, z in dm1.train_set.pool}


def test_global_zscore_survives_setup_for_fit_then_test(tmp_path):
    # Regression: setup("test") after setup("fit") loaded no new scan and z-scored an empty list
    # (ZeroDivisionError in every SABS run); the scans keep the one global normalisation.
    dm = _dm(_synthetic_prepared(tmp_path / "prep"), normalize="global")
    dm.setup("fit")
    before = {sid: image.copy() for sid, image in dm.images.items()}
    dm.setup("test")
    assert set(dm.images) == set(before)
    for sid, image in before.items():
        np.testing.assert_array_equal(dm.images[sid], image)
    values = np.concatenate([image.ravel() for image in dm.images.values()])
    assert abs(values.mean()) < 0.5  # normalised, not raw intensities (0..3)


def test_clear_errors(tmp_path):
    root = _synthetic_prepared(tmp_path / "prep", spleen_in_support=False)
    with pytest.raises(ValueError, match=r"organs \['pancreas'\] are not in the label map"):
        _dm(root, organs=["pancreas"]).setup("test")
    with pytest.raises(ValueError, match="support scan 'sup' \\(spleen\\).*class id 2 is absent"):
        _dm(root).setup("test")
    with pytest.raises(ValueError, match="must not be a training scan"):
        _dm(root, split={"support": "sup", "queries": ["qry"], "train": ["sup"]}).setup("fit")


def test_end_to_end_sample_config(tmp_path):
    import run

    args = ["--cfg", str(REPO / "configs" / "fewshot_sample.yaml"), "--runs_dir", str(tmp_path),
            "--model.init_args.backbone", "tiny", "--trainer.max_steps", "2",
            "--data.init_args.episodes_per_epoch", "2", "--data.init_args.image_size", "64",
            "--data.init_args.root", str(REPO / "datasets" / "sample" / "volumes")]  # fmt: skip
    result = run.main(args)
    keys = {"dice_liver", "dice_spleen", "dice_kidney_left", "dice_kidney_right", "dice_mean"}
    assert set(result["test"]) == keys
    assert all(0.0 <= v <= 1.0 for v in result["test"].values())
    run_dir = Path(result["run_dir"])
    summary = json.loads((run_dir / "test_summary.json").read_text())
    assert {r["organ"] for r in summary["per_scan"]} == {k[5:] for k in keys if k != "dice_mean"}
    assert summary["mean"] == pytest.approx(result["test"])
    rows = (run_dir / "test_per_image.csv").read_text().splitlines()  # one row per scored query slice
    assert rows[0].startswith("id,scan,organ,z,") and len(rows) - 1 == summary["num_slices"]
    assert list((run_dir / "overlays").glob("*.png"))
    assert result["best_ckpt"] and Path(result["best_ckpt"]).is_file()


def test_zero_iterations_tests_the_untrained_network(tmp_path):
    # Regression: --trainer.max_steps 0 (bench/fewshot_sample.py --steps 0) failed building the step
    # schedule; it must test the untrained network, as the bench's baseline row does.
    import run

    args = ["--cfg", str(REPO / "configs" / "fewshot_sample.yaml"), "--runs_dir", str(tmp_path),
            "--model.init_args.backbone", "tiny", "--trainer.max_steps", "0",
            "--data.init_args.episodes_per_epoch", "2", "--data.init_args.image_size", "64"]  # fmt: skip
    result = run.main(args)
    assert result["best_ckpt"] is None
    assert all(0.0 <= v <= 1.0 for v in result["test"].values()) and "dice_mean" in result["test"]
