"""Patch-mode training end to end: the loss goes down, val/test run on whole native images, same seed
gives the same run, and the superpixel families (MIM, noisy-label) train on cropped maps."""

from __future__ import annotations

import csv
import json

import lightning as L
import torch

from datasets.datamodule import SegmentationDataModule
from datasets.patches import PatchConfig
from datasets.sample import abdomen_ct_root, nuclei_root
from models.segmentation_module import SegmentationModule
from run import main

from .conftest import REPO


class LossRecorder(L.Callback):
    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


def test_patch_training_loss_goes_down_and_evaluates_whole_native_images():
    L.seed_everything(0)
    torch.set_num_threads(1)
    dm = SegmentationDataModule(
        root=str(nuclei_root()), num_classes=2, in_channels=1, image_size=128, batch_size=4, num_workers=0,
        train_transforms=[], sampling="patch", patches=PatchConfig(patch_size=32, foreground_fraction=0.5),
    )  # fmt: skip
    module = SegmentationModule(
        model="unet", model_kwargs={"base_channel": 8}, num_classes=2, in_channels=1, loss="ce",
        optim={"lr": 0.01, "scheduler": "none"}, hd95_in_test=False,
    )  # fmt: skip
    recorder = LossRecorder()
    trainer = L.Trainer(
        max_steps=24, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, callbacks=[recorder],
    )  # fmt: skip
    trainer.fit(module, datamodule=dm)
    first, last = sum(recorder.losses[:4]) / 4, sum(recorder.losses[-4:]) / 4
    assert len(recorder.losses) == 24 and last < 0.8 * first, recorder.losses
    val = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    metrics = val.validate(module, datamodule=dm, verbose=False)[0]
    assert 0.0 < metrics["val/dice"] <= 1.0
    val.test(module, datamodule=dm, verbose=False)
    assert [(r["height"], r["width"]) for r in module.test_rows] == [(128, 128)] * 3
    assert all(0.0 < r["dice"] <= 1.0 for r in module.test_rows)


def patch_run(tmp_path, name, *extra):
    args = [
        "--cfg", str(REPO / "configs" / "demo_patches.yaml"), "--runs_dir", str(tmp_path / name),
        "--data.num_workers", "0", "--data.patches.patch_size", "32", "--model.model_kwargs",
        '{"base_channel": 4}', "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", *extra,
    ]  # fmt: skip
    return main(args)


def test_same_seed_gives_the_same_patch_run(tmp_path):
    a = patch_run(tmp_path, "a", "--seed", "3")
    b = patch_run(tmp_path, "b", "--seed", "3")
    assert a["test"] == b["test"]
    rows = []
    for name in ("a", "b"):
        with next((tmp_path / name).glob("*/version_0/metrics.csv")).open() as f:
            rows.append([{k: v for k, v in r.items() if k != "time"} for r in csv.DictReader(f)])
    assert rows[0] == rows[1]
    run_dir = next((tmp_path / "a").glob("*/version_0"))
    per_image = list(csv.DictReader((run_dir / "test_per_image.csv").open()))
    assert {(r["height"], r["width"]) for r in per_image} == {("128", "128")}
    assert json.loads((run_dir / "test_summary.json").read_text())["mean"]["dice"] == a["test"]["dice"]


FAST = ["--trainer.fast_dev_run", "1", "--data.num_workers", "0", "--trainer.enable_progress_bar", "false"]


def test_mim_trains_on_patches_with_cropped_superpixel_maps(tmp_path):
    result = main([
        "--cfg", str(REPO / "configs" / "config_inpainting_sample.yaml"), "--runs_dir", str(tmp_path),
        "--data.sampling", "patch", "--data.patches", '{"patch_size": 64}', "--data.superpixels.size", "128",
        "--data.train_transforms", '[{"name": "HorizontalFlip", "p": 0.5}]', "--model.n_masked", "8",
        "--data.batch_size", "2", *FAST,
    ])  # fmt: skip
    assert result["test"]["loss"] > 0


def test_noisy_label_module_trains_on_patches_with_cropped_superpixel_maps(tmp_path):
    result = main([
        "--cfg", str(REPO / "configs" / "noisy_sample.yaml"), "--runs_dir", str(tmp_path),
        "--data.sampling", "patch", "--data.patches", '{"patch_size": 64}', "--data.superpixels.size", "128",
        "--data.batch_size", "2", *FAST,
    ])  # fmt: skip
    assert 0.0 <= result["test"]["dice"] <= 1.0


def test_ct_sample_has_small_structures():
    # Why the bench uses the CT slices: the kidneys are a few hundred of 16,384 pixels per slice.
    from datasets.image_io import read_mask

    masks = [read_mask(p, 5) for p in sorted((abdomen_ct_root() / "test" / "masks").glob("*.png"))]
    kidney = sum(float(((m == 3) | (m == 4)).mean()) for m in masks) / len(masks)
    assert 0.0 < kidney < 0.05
