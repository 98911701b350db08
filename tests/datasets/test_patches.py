"""Patch sampling (``data.sampling: patch``): foreground oversampling, padding, seeding, config errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from datasets.datamodule import SegmentationDataModule
from datasets.patch_pipeline import resolve_patches
from datasets.patch_scale import EvalRescale, ScaleSource
from datasets.patches import PatchConfig, PatchSampler, choose_corner, crop_padded, patch_rng
from datasets.records import SampleRecord
from datasets.sample import abdomen_ct_root
from datasets.superpixels.config import SuperpixelConfig

RECORD = SampleRecord("a", "a.png", "a.png")  # type: ignore[arg-type]


def sparse_mask(shape, seed, classes=3, dots=3):
    """A mask with a few isolated foreground pixels of several classes (< 0.1% of the pixels)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, dtype=np.int32)
    for c in range(1, classes + 1):
        for _ in range(dots):
            mask[rng.integers(shape[0]), rng.integers(shape[1])] = c
    return mask


def sample_patch(shape, mask, patch, fraction, seed, epoch=0, index=0):
    targets = {"image": np.random.default_rng(1).random((*shape, 1), dtype=np.float32), "mask": mask}
    sampler = PatchSampler(PatchConfig(foreground_fraction=fraction), patch, None)
    return sampler(targets, RECORD, patch_rng(seed, epoch, index))


@pytest.mark.parametrize("shape", [(200, 300), (37, 41), (20, 70), (48, 48)])
def test_foreground_fraction_one_gives_patches_that_all_contain_foreground(shape):
    for seed in range(60):
        mask = sparse_mask(shape, seed)
        out = sample_patch(shape, mask, (48, 48), 1.0, seed)
        assert out["image"].shape == (48, 48, 1) and out["mask"].shape == (48, 48)
        assert (out["mask"] > 0).any(), (shape, seed)


def test_foreground_fraction_zero_places_patches_uniformly():
    mask = sparse_mask((400, 400), 0, classes=1, dots=1)
    hits = sum((sample_patch((400, 400), mask, (32, 32), 0.0, s)["mask"] > 0).any() for s in range(200))
    assert hits < 10  # one pixel in 400 x 400: a uniform 32 x 32 patch holds it ~0.6% of the time


def test_every_class_present_is_drawn():
    mask = np.zeros((300, 300), dtype=np.int32)
    mask[10, 10], mask[290, 290] = 1, 2
    seen = {int(sample_patch((300, 300), mask, (16, 16), 1.0, s)["mask"].max()) for s in range(40)}
    assert seen == {1, 2}


def test_images_smaller_than_the_patch_are_padded_centred():
    image = np.ones((10, 6, 1), dtype=np.float32)
    labels = np.arange(60, dtype=np.int32).reshape(10, 6)
    corner = choose_corner(None, (10, 6), (16, 16), 0.0, patch_rng(0, 0, 0))
    assert corner == (0, 0)  # the padded image is exactly the patch
    padded = crop_padded(image, corner, (16, 16), fill=0.25)
    assert padded.shape == (16, 16, 1) and padded.dtype == np.float32
    assert (padded[3:13, 5:11] == 1).all() and padded[:3].max() == 0.25 and padded[:, :5].max() == 0.25
    edge = crop_padded(labels, corner, (16, 16), fill=None)  # superpixel maps: edge replication
    assert edge[3:13, 5:11].tolist() == labels.tolist() and set(np.unique(edge)) <= set(np.unique(labels))
    assert (crop_padded(labels, corner, (16, 16), fill=0)[:3] == 0).all()


def test_crop_inside_the_image_is_a_plain_slice():
    array = np.arange(100 * 80).reshape(100, 80)
    assert np.array_equal(crop_padded(array, (30, 7), (20, 50), fill=0), array[30:50, 7:57])


def test_patches_are_a_function_of_seed_epoch_and_index():
    mask = sparse_mask((200, 200), 3)
    a = sample_patch((200, 200), mask, (32, 32), 0.5, seed=5, epoch=2, index=7)
    b = sample_patch((200, 200), mask, (32, 32), 0.5, seed=5, epoch=2, index=7)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    others = [sample_patch((200, 200), mask, (32, 32), 0.5, 5, e, i)["image"] for e, i in [(3, 7), (2, 8)]]
    assert not any(np.array_equal(a["image"], other) for other in others)


def patch_dm(**patches):
    patches.setdefault("patch_size", 48)
    dm = SegmentationDataModule(
        root=str(abdomen_ct_root()), num_classes=5, in_channels=1, image_size=128, batch_size=4,
        num_workers=0, train_transforms=[], sampling="patch", patches=PatchConfig(**patches),
    )  # fmt: skip
    dm.setup("fit")
    return dm


def test_datamodule_serves_seeded_foreground_patches_and_whole_native_images():
    dm, twin = patch_dm(foreground_fraction=1.0), patch_dm(foreground_fraction=1.0)
    for epoch in (0, 1):
        dm.set_epoch(epoch)
        twin.set_epoch(epoch)
        for batch, other in zip(dm.train_dataloader(), twin.train_dataloader(), strict=True):
            assert batch["image"].shape[-2:] == (48, 48) and torch.equal(batch["image"], other["image"])
            assert all((mask > 0).any() for mask in batch["mask"])
    val, test = next(iter(dm.val_dataloader())), next(iter(dm.test_dataloader()))
    assert val["image"].shape == (1, 1, 128, 128) and test["orig_mask"][0].shape == (128, 128)
    assert dm.eval_window.size == (48, 48) and dm.eval_window.pad_value == -1.0
    # what `run.py --predict` reads from the checkpoint: the patch is the window, applied by sliding
    assert dm.hparams["image_size"] == [48, 48] and dm.hparams["inference"]["mode"] == "sliding"
    assert "patches (48, 48) at native resolution" in dm.describe()


def test_resize_default_is_unchanged():
    dm = SegmentationDataModule(root=str(abdomen_ct_root()), num_classes=5, in_channels=1, image_size=64)
    assert dm.patching is None and dm.eval_window is None and dm.hparams["image_size"] == 64


def test_superpixel_maps_are_cropped_with_the_patch():
    sp = SuperpixelConfig(source="cpu", backend="skimage", params={"n_segments": 64}, size=128)
    dm = SegmentationDataModule(
        root=str(abdomen_ct_root()), num_classes=5, in_channels=1, image_size=128, batch_size=2,
        num_workers=0, train_transforms=[], sampling="patch", superpixels=sp,
        patches=PatchConfig(patch_size=40, foreground_fraction=0.5),
    )  # fmt: skip
    dm.setup("fit")
    dataset = dm.train_dataset
    item = dataset[(3, 1)]
    image, mask = dataset._load(dataset.records[3])
    full = dm.extra_maps(dataset.records[3], image)["superpixels"]
    corner = choose_corner(mask, image.shape[:2], (40, 40), 0.5, patch_rng(dm.seed, 1, 3))
    assert torch.equal(
        item["superpixels"], torch.from_numpy(crop_padded(full, corner, (40, 40), None)).long()
    )
    assert torch.equal(item["mask"], torch.from_numpy(crop_padded(mask, corner, (40, 40), 0)).long())


def test_target_spacing_zooms_training_patches_and_whole_eval_images(tmp_path):
    dm = patch_dm(patch_size=32, target_spacing_mm=1.5, spacing_mm=3.0)
    assert next(iter(dm.train_dataloader()))["image"].shape[-2:] == (32, 32)
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape[-2:] == (256, 256) and val["mask"].shape[-2:] == (256, 256)
    test = next(iter(dm.test_dataloader()))
    assert test["orig_mask"][0].shape == (128, 128)  # metrics at the original resolution
    table = tmp_path / "spacing.json"
    table.write_text(json.dumps({"a": 0.5}))
    rescale = EvalRescale(ScaleSource(1.0, spacing_file=str(table)))
    out = rescale(
        {"image": np.zeros((10, 20, 3), np.float32), "mask": np.zeros((10, 20), np.int32)}, RECORD, None
    )
    assert out["image"].shape == (5, 10, 3) and out["mask"].shape == (5, 10)
    with pytest.raises(ValueError, match="no spacing for sample 'b'"):
        ScaleSource(1.0, spacing_file=str(table)).zoom(SampleRecord("b", "b.png", None))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"patch_size": 0}, r"data\.patches\.patch_size must be a positive int .*got 0"),
        ({"patch_size": -8}, r"data\.patches\.patch_size must be a positive int .*got -8"),
        ({"patch_size": [32]}, r"data\.patches\.patch_size must be a positive int or \[height, width\]"),
        ({"foreground_fraction": 1.5}, r"foreground_fraction must be a number in \[0, 1\], got 1\.5"),
        ({"foreground_fraction": -0.1}, r"data\.patches\.foreground_fraction must be a number in \[0, 1\]"),
        ({"overlap": 1.0}, r"data\.patches\.overlap must be a number in \[0, 1\), got 1\.0"),
        ({"sw_batch_size": 0}, r"data\.patches\.sw_batch_size must be a positive int, got 0"),
        ({"target_spacing_mm": 1.0}, r"data\.patches\.spacing_mm must be set \(or spacing_file\)"),
        ({"target_spacing_mm": -1.0, "spacing_mm": 1.0}, r"patches\.target_spacing_mm must be a positive"),
        ({"scale_jitter": [1.2, 0.8]}, r"patches\.scale_jitter must be \[low, high\] with 0 < low <= high"),
    ],
)  # fmt: skip
def test_bad_patch_values_name_the_key_and_what_was_expected(kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        PatchConfig(**kwargs)
    assert "\n" not in str(info.value)


def test_bad_sampling_options_name_the_key():
    root = str(abdomen_ct_root())
    with pytest.raises(ValueError, match=r"data\.sampling must be one of \('resize', 'patch'\), got 'tiles'"):
        SegmentationDataModule(root=root, sampling="tiles")
    with pytest.raises(ValueError, match=r"data\.patches is set but data\.sampling is 'resize'"):
        SegmentationDataModule(root=root, patches=PatchConfig(patch_size=32))
    with pytest.raises(ValueError, match=r"unknown key 'data\.patches\.size'"):
        resolve_patches("patch", {"size": 32}, (64, 64))
    with pytest.raises(ValueError, match=r"data\.superpixels\.size must be set with data\.sampling: patch"):
        SegmentationDataModule(root=root, sampling="patch", superpixels=SuperpixelConfig(source="cpu"))
