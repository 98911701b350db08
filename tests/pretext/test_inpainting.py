from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace

import imageio.v3 as iio
import pytest
import torch
import torch.nn.functional as F
import yaml

from pretext.inpainting import SuperpixelInpainting
from pretext.masked_reconstruction import match_data_config
from pretext.superpixel_masking import SuperpixelMasker, draw_superpixel_masks, sample_seed

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # Tiny CPU models: one intra-op thread avoids oversubscription on small, shared machines.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def grid_labels(batch: int = 2, size: int = 8, cell: int = 2) -> torch.Tensor:
    """A regular grid of (size/cell)^2 superpixels per image."""
    rows = torch.arange(size) // cell
    labels = rows[:, None] * (size // cell) + rows[None, :]
    return labels.expand(batch, size, size).clone()


def smooth_images(batch: int, channels: int, size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, channels, 4, 4, generator=g)
    return F.interpolate(coarse, size=size, mode="bilinear", align_corners=False) * 2 - 1


def batch_of(images: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
    out = {
        "image": images,
        "index": torch.arange(images.shape[0]),
        "id": [f"i{i}" for i in range(len(images))],
    }
    if labels is not None:
        out["superpixels"] = labels
    return out


def test_masks_seeded_per_sample_and_fraction_is_mask_mean():
    labels = grid_labels(3)
    masker = SuperpixelMasker(n_masked=5, seed=7)
    a = masker(batch_of(torch.zeros(3, 1, 8, 8), labels), "train", epoch=0)
    b = masker(batch_of(torch.zeros(3, 1, 8, 8), labels), "train", epoch=0)
    assert torch.equal(a.mask, b.mask)
    assert torch.allclose(a.masked_fraction, a.mask.flatten(1).float().mean(1))
    assert torch.allclose(a.masked_fraction, torch.full((3,), 5 * 4 / 64))  # 5 cells of 2x2
    assert a.counts.tolist() == [16, 16, 16]
    other_seed = SuperpixelMasker(n_masked=5, seed=8)(batch_of(torch.zeros(3, 1, 8, 8), labels), "train", 0)
    other_epoch = masker(batch_of(torch.zeros(3, 1, 8, 8), labels), "train", epoch=1)
    assert not torch.equal(a.mask, other_seed.mask) and not torch.equal(a.mask, other_epoch.mask)
    # validation masks never change with the epoch
    assert torch.equal(
        masker(batch_of(torch.zeros(3, 1, 8, 8), labels), "val", 0).mask,
        masker(batch_of(torch.zeros(3, 1, 8, 8), labels), "val", 5).mask,
    )


def test_mask_depends_on_sample_index_not_batch_position():
    labels = grid_labels(2)
    seeds = [sample_seed(0, "train", 0, i) for i in (4, 9)]
    both = draw_superpixel_masks(labels, seeds, n=3).mask
    alone = draw_superpixel_masks(labels[1:], seeds[1:], n=3).mask
    assert torch.equal(both[1:], alone)


def test_n_larger_than_real_count_raises_naming_k_n_and_count():
    masker = SuperpixelMasker(n_masked=20, seed=0, k=64)
    with pytest.raises(ValueError, match=r"k=64, n=20.*real superpixel count 16"):
        masker(batch_of(torch.zeros(2, 1, 8, 8), grid_labels(2)), "train", 0)


def test_clamp_masks_every_superpixel_and_flags_it():
    masker = SuperpixelMasker(n_masked=20, seed=0, on_excess="clamp")
    out = masker(batch_of(torch.zeros(2, 1, 8, 8), grid_labels(2)), "train", 0)
    assert out.mask.all() and out.clamped.all()


def test_clamp_warns_once_per_epoch_with_the_clamped_share(caplog):
    masker = SuperpixelMasker(n_masked=10, seed=0, on_excess="clamp", k=32)
    labels = torch.cat([grid_labels(1), torch.arange(64).reshape(1, 8, 8)])  # 16 and 64 superpixels
    batch = {**batch_of(torch.zeros(2, 1, 8, 8), labels), "index": torch.tensor([0, 1])}
    masker(batch, "train", 3)
    masker(batch, "train", 3)
    with caplog.at_level("WARNING", logger="pretext.superpixel_masking"):
        assert masker.report_clamped("train", 3) == 0.0  # 16 and 64 >= 10: nothing clamped, no warning
        assert masker.report_clamped("train", 3) is None  # the tally was reset
    assert not caplog.records
    clamping = SuperpixelMasker(n_masked=20, seed=0, on_excess="clamp", k=32)
    for _ in range(3):
        clamping(batch, "train", 0)
    with caplog.at_level("WARNING", logger="pretext.superpixel_masking"):
        assert clamping.report_clamped("train", 0) == pytest.approx(0.5)  # the 16-superpixel map
    assert (
        len(caplog.records) == 1
        and "3 of 6 images (50.0%)" in caplog.text
        and "k=32, n_masked=20" in caplog.text
    )


def test_no_shipped_config_clamps():
    """Regression: the MIM base config clamped impossible policies silently (masked fraction 1.0)."""

    def values(node, key):
        if isinstance(node, dict):
            yield from ([node[key]] if key in node else [])
            for child in node.values():
                yield from values(child, key)
        elif isinstance(node, list):
            for child in node:
                yield from values(child, key)

    configs = sorted((REPO / "configs").glob("*.yaml"))
    loaded = {c.name: list(values(yaml.safe_load(c.read_text()), "on_excess")) for c in configs}
    assert "error" in loaded["config_inpainting.yaml"]
    assert not [name for name, found in loaded.items() if "clamp" in found]


def test_ratio_mode_reaches_the_area_and_pool_sizes_draw_absent_labels():
    out = draw_superpixel_masks(grid_labels(2), [1, 2], ratio=0.3)
    assert (out.masked_fraction >= 0.3).all() and (out.masked_fraction < 0.3 + 4 / 64 + 1e-6).all()
    # a crop showing labels 0..15 of an un-augmented map with 64 superpixels: absent ones mask nothing
    fractions = [
        draw_superpixel_masks(grid_labels(1), [s], n=16, pool_sizes=torch.tensor([64])).masked_fraction.item()
        for s in range(20)
    ]
    assert 0.1 < sum(fractions) / len(fractions) < 0.45  # expected 16/64 = 0.25 (vs 1.0 over present ids)
    with pytest.raises(ValueError, match="exactly one"):
        draw_superpixel_masks(grid_labels(1), [0], n=2, ratio=0.2)


def test_gpu_source_computes_maps_with_the_torch_backend_on_cpu_tensors():
    images = smooth_images(2, 3, 32)
    masker = SuperpixelMasker(
        n_masked=3, source="gpu", params={"n_segments": 16, "compactness": 10.0}, seed=1
    )
    out = masker(batch_of(images), "train", 0)
    assert out.mask.shape == (2, 32, 32) and (out.counts >= 3).all()
    assert torch.equal(out.mask, masker(batch_of(images), "train", 0).mask)
    with pytest.raises(ValueError, match=r"k=16, n=500"):
        SuperpixelMasker(n_masked=500, source="gpu", params={"n_segments": 16}, seed=1)(
            batch_of(images), "train", 0
        )


def test_source_mismatch_with_data_is_an_error():
    masker = SuperpixelMasker(n_masked=2)
    data = SimpleNamespace(superpixels=SimpleNamespace(source="gpu", params={"n_segments": 99}))
    with pytest.raises(ValueError, match="source='gpu'"):
        match_data_config(masker, data)
    data.superpixels.source = "cache"
    match_data_config(masker, data)
    assert masker.k == 99


def tiny_module(**kw) -> SuperpixelInpainting:
    args = {"in_channels": 1, "encoder_name": "resnet18", "n_masked": 4, "optim": {"lr": 1e-3}, "seed": 0}
    return SuperpixelInpainting(**{**args, **kw})


def test_output_shape_range_and_zero_outside_mask():
    module = tiny_module(in_channels=3)
    mask = torch.zeros(2, 1, 32, 32)
    mask[:, :, :16] = 1
    out = module(torch.randn(2, 3, 32, 32) * 3, mask)
    assert out.shape == (2, 3, 32, 32)
    assert out.abs().max() <= 1.0 and out[:, :, 16:].abs().max() == 0
    assert any(k.startswith("net.encoder.") for k in module.state_dict())
    with pytest.raises(ValueError, match="both set"):
        tiny_module(mask_ratio=0.3)


@pytest.mark.parametrize("fill", ["zero", "noise"])
def test_inpainting_loss_goes_down_in_20_steps(fill):
    torch.manual_seed(0)
    module = tiny_module(fill=fill)
    batch = batch_of(smooth_images(2, 1, 32), grid_labels(2, 32, 8))
    optimizer = torch.optim.Adam(module.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        loss, _ = module._step(batch, "train")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_run_main_end_to_end_writes_checkpoint_and_grid(tmp_path):
    from run import main

    result = main(
        [
            "--cfg",
            str(REPO / "configs" / "config_inpainting_sample.yaml"),
            "--runs_dir",
            str(tmp_path),
            "--trainer.max_epochs",
            "1",
            "--trainer.limit_train_batches",
            "2",
            "--trainer.limit_val_batches",
            "1",
            "--trainer.limit_test_batches",
            "1",
            "--trainer.enable_progress_bar",
            "false",
            "--data.image_size",
            "64",
            # numba's OpenMP layer deadlocks in loader workers forked after torch ran (see report)
            "--data.num_workers",
            "0",
            "--data.train_transforms",
            '[{"name": "RandomResizedCrop", "size": [64, 64], "scale": [0.36, 1.0], "ratio": [1.0, 1.0]}]',
        ]
    )
    run_dir = Path(result["run_dir"])
    assert (
        list((run_dir / "checkpoints").glob("best-*.ckpt"))
        and (run_dir / "checkpoints" / "last.ckpt").is_file()
    )
    grid = iio.imread(run_dir / "inpainting" / "epoch_000.png")
    assert grid.shape == (4 * 64, 3 * 64, 3)
    with open(run_dir / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert any(r.get("val/loss") for r in rows) and any(r.get("train/masked_fraction") for r in rows)
    assert set(result["test"]) >= {"loss", "mse_x100", "masked_fraction"}
    assert 0.1 < result["test"]["masked_fraction"] < 0.5
