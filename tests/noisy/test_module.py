"""NoisyLabelSegmentation: hand-valued JoCoR loss, loss goes down, refinement round, end-to-end run."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch

import run
from datasets.datamodule import SegmentationDataModule
from datasets.noise.cli import generate_noisy_dataset
from datasets.superpixels.config import SuperpixelConfig
from models.noisy.jocor import class_balance_weights, jocor_pixel_loss
from models.noisy.module import NoisyLabelSegmentation

REPO = Path(__file__).resolve().parents[2]
NUCLEI = REPO / "datasets" / "sample" / "nuclei"


def test_jocor_loss_hand_value():
    p1 = torch.tensor([0.8, 0.2]).view(1, 2, 1, 1)
    p2 = torch.tensor([0.6, 0.4]).view(1, 2, 1, 1)
    label = torch.zeros(1, 1, 1, dtype=torch.long)
    ce = -math.log(0.8) - math.log(0.6)
    kl12 = 0.8 * math.log(0.8 / 0.6) + 0.2 * math.log(0.2 / 0.4)
    kl21 = 0.6 * math.log(0.6 / 0.8) + 0.4 * math.log(0.4 / 0.2)
    expected = 0.35 * ce + 0.65 * (kl12 + kl21)
    assert jocor_pixel_loss(p1, p2, label, lam=0.65).item() == pytest.approx(expected, rel=1e-5)


def test_class_balance_weights_hand_value():
    labels = torch.tensor([[[0, 0, 0, 1]]])
    # N = 4, K = 2: w0 = 4 / (2 * 3), w1 = 4 / (2 * 1); absent class 2 gets 0
    assert class_balance_weights(labels, 3).tolist() == pytest.approx([2 / 3, 2.0, 0.0])


def _batch():
    gen = torch.Generator().manual_seed(0)
    image = torch.randn(2, 1, 16, 16, generator=gen)
    mask = (image[:, 0] > 0.3).long()
    sp = (torch.arange(16).view(1, 16, 1) // 4 * 4 + torch.arange(16).view(1, 1, 16) // 4).expand(2, 16, 16)
    return {"image": image, "mask": mask, "superpixels": sp.contiguous(), "id": ["a", "b"]}


@pytest.mark.parametrize("method", ["jocor_sp", "plain", pytest.param("coteaching", marks=pytest.mark.slow)])
def test_loss_goes_down_in_20_steps(method):
    torch.manual_seed(0)
    module = NoisyLabelSegmentation(
        model="unet",
        model_kwargs={"base_channel": 4},
        num_classes=2,
        in_channels=1,
        method=method,
        keep_rates=[0.9, 0.8],
        optim={"name": "adam", "lr": 3e-3},
    )
    optimizer = torch.optim.Adam(module.parameters(), lr=3e-3)
    batch = _batch()
    losses = []
    for _ in range(20):
        loss, _ = module.compute_loss(batch, epoch=10)  # rates at their final values
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    assert all(math.isfinite(v) for v in losses)


def test_bad_arguments_and_missing_superpixels():
    with pytest.raises(ValueError, match="keep_rates"):
        NoisyLabelSegmentation(num_classes=2, in_channels=1, keep_rates=[0.9])
    with pytest.raises(ValueError, match="method"):
        NoisyLabelSegmentation(num_classes=2, in_channels=1, method="mixup")
    module = NoisyLabelSegmentation(
        model_kwargs={"base_channel": 8}, num_classes=2, in_channels=1, keep_rates=[1, 1]
    )
    batch = _batch()
    del batch["superpixels"]
    with pytest.raises(KeyError, match="superpixels"):
        module.compute_loss(batch, 0)


def _noisy_copy(tmp_path: Path) -> Path:
    root = tmp_path / "nuclei"
    shutil.copytree(NUCLEI, root)
    return generate_noisy_dataset(root, "folder", 0.5, 0.5, 0)


def test_refinement_round_writes_complete_label_set(tmp_path):
    view = _noisy_copy(tmp_path)
    dm = SegmentationDataModule(
        str(view),
        "noisy",
        num_classes=2,
        in_channels=1,
        image_size=32,
        batch_size=4,
        num_workers=0,
        superpixels=SuperpixelConfig(source="cpu", backend="numba", params={"n_segments": 30}),
    )
    module = NoisyLabelSegmentation(
        model_kwargs={"base_channel": 8},
        num_classes=2,
        in_channels=1,
        keep_rate_source="simulation",
        refine_threshold=0.0,
        refined_labels_dir=str(tmp_path / "refined"),
        hd95_in_test=False,
    )
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=1,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=dm)
    assert len(module.keep_rates) == 2 and all(0 < r <= 1 for r in module.keep_rates)
    out = module.refine_labels()
    ids = sorted(r.id for r in dm.splits["train"])
    assert sorted(p.stem for p in out.glob("*.png")) == ids
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["round"] == 1 and sorted(manifest["images"]) == ids
    # threshold 0: every superpixel whose majority label disagrees with the prediction is flipped
    assert set(module.flips) == set(ids)
    assert sum(s["flipped_superpixels"] for s in manifest["images"].values()) > 0
    # a resumed run continues with the refined labels, the round count and the tracker where they were
    module.tracker.update(0.25)
    checkpoint: dict = {}
    module.on_save_checkpoint(checkpoint)
    resumed = NoisyLabelSegmentation(
        model_kwargs={"base_channel": 8}, num_classes=2, in_channels=1, keep_rate_source="simulation"
    )
    resumed.on_load_checkpoint(torch.load(_roundtrip(checkpoint, tmp_path), weights_only=False))
    assert resumed.refine_rounds == 1 and resumed.keep_rates == module.keep_rates
    assert resumed.tracker.state_dict() == module.tracker.state_dict()
    assert resumed.flips.keys() == module.flips.keys()
    assert all(torch.equal(resumed.flips[k], v) for k, v in module.flips.items())
    batch = next(iter(dm.train_dataloader()))
    assert torch.equal(resumed.refined_labels(batch), module.refined_labels(batch))
    assert not torch.equal(module.refined_labels(batch), batch["mask"])  # the flips do change labels


def test_interrupted_epoch_keeps_its_loss_gap_sums(tmp_path):
    """Regression: the epoch's loss-gap sums were not in the checkpoint, so a run resumed mid-epoch
    logged a different train/loss_gap (0.8094 vs 0.8531) and could refine at another epoch."""
    module = NoisyLabelSegmentation(
        model_kwargs={"base_channel": 4}, num_classes=2, in_channels=1, keep_rate_source="simulation"
    )
    module._gap_sum, module._gap_count = 1.5, 3  # three steps of the interrupted epoch
    checkpoint: dict = {}
    module.on_save_checkpoint(checkpoint)
    resumed = NoisyLabelSegmentation(
        model_kwargs={"base_channel": 4}, num_classes=2, in_channels=1, keep_rate_source="simulation"
    )
    resumed.on_load_checkpoint(torch.load(_roundtrip(checkpoint, tmp_path), weights_only=True))
    assert (resumed._gap_sum, resumed._gap_count) == (1.5, 3)  # restored at load
    resumed._trainer = SimpleNamespace(datamodule=None, current_epoch=0)  # what the hooks read
    resumed.on_train_epoch_start()  # if Lightning starts the interrupted epoch (0) again: kept
    assert (resumed._gap_sum, resumed._gap_count) == (1.5, 3)
    resumed._trainer.current_epoch = 1
    resumed.on_train_epoch_start()  # the next epoch starts from zero
    assert (resumed._gap_sum, resumed._gap_count) == (0.0, 0)


def _roundtrip(checkpoint: dict, tmp_path: Path) -> Path:
    path = tmp_path / "state.ckpt"
    torch.save(checkpoint, path)
    return path


def test_run_main_end_to_end_on_noisy_view(tmp_path):
    view = _noisy_copy(tmp_path)
    result = run.main(
        [
            "--cfg",
            str(REPO / "configs" / "noisy_sample.yaml"),
            "--runs_dir",
            str(tmp_path / "runs"),
            "--data.image_size",
            "32",
            "--data.root",
            str(view),
            "--data.layout",
            "noisy",
            "--model.init_args.keep_rates",
            "null",
            "--model.init_args.model_kwargs",
            "{base_channel: 8}",
            "--data.superpixels.params",
            "{n_segments: 30, compactness: 10}",
            "--model.init_args.hd95_in_test",
            "false",
            "--trainer.max_epochs",
            "1",
            "--trainer.enable_progress_bar",
            "false",
        ]
    )
    assert "dice" in result["test"] and 0.0 <= result["test"]["dice"] <= 1.0
    assert Path(result["best_ckpt"]).is_file()
