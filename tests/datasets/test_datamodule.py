from __future__ import annotations

import json
import logging
import re

import numpy as np
import pytest
import torch

from datasets.datamodule import EpochShuffleSampler, SegmentationDataModule
from tests.datasets.conftest import make_folder_flat, make_isic2018, write_pair


def make_dm(root, **kwargs):
    kwargs.setdefault("image_size", 16)
    kwargs.setdefault("batch_size", 2)
    kwargs.setdefault("num_workers", 0)
    dm = SegmentationDataModule(root=str(root), **kwargs)
    dm.setup("fit")
    return dm


def batches(loader):
    return [batch for batch in loader]


def test_layout_splits_are_used(folder_root):
    dm = make_dm(folder_root)
    assert [len(dm.train_dataset), len(dm.val_dataset), len(dm.test_dataset)] == [5, 2, 3]
    assert "train 5, val 2, test 3" in dm.describe()
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 16, 16) and batch["mask"].shape == (2, 16, 16)
    assert dm.class_names == ["class_0", "class_1"] and dm.num_classes == 2 and dm.in_channels == 3


def test_val_from_kfold_and_test_falls_back_to_val_with_warning(flat_root, caplog):
    with caplog.at_level(logging.WARNING, logger="datasets.datamodule"):
        dm = make_dm(flat_root, n_folds=5, fold=1, seed=3)
    assert "no test split" in caplog.text
    train_ids = {r.id for r in dm.train_dataset.records}
    val_ids = {r.id for r in dm.val_dataset.records}
    assert len(val_ids) == 2 and len(train_ids) == 8 and not train_ids & val_ids
    assert dm.test_dataset.records == dm.val_dataset.records
    other = make_dm(flat_root, n_folds=5, fold=2, seed=3)
    assert {r.id for r in other.val_dataset.records}.isdisjoint(val_ids)


def test_isic2018_uses_kfold(tmp_path):
    dm = make_dm(make_isic2018(tmp_path), layout="isic2018", n_folds=3)
    assert (len(dm.train_dataset), len(dm.val_dataset)) == (4, 2)


def test_split_file_overrides_layout(folder_root, tmp_path):
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ["a", "b", "v1"], "val": ["c"], "test": ["t1", "d"]}))
    dm = make_dm(folder_root, split_file=str(split))
    assert [r.id for r in dm.train_dataset.records] == ["a", "b", "v1"]
    assert [r.id for r in dm.test_dataset.records] == ["t1", "d"]
    split.write_text(json.dumps({"train": ["a", "nope"], "val": ["c"]}))
    with pytest.raises(ValueError, match="nope"):
        make_dm(folder_root, split_file=str(split))


def test_percent_subsampling_and_oversampling(tmp_path):
    root = make_folder_flat(tmp_path, count=10)  # 8 train after 5-fold
    small = make_dm(root, percent=0.25, seed=5)
    again = make_dm(root, percent=0.25, seed=5)
    assert len(small.train_dataset) == 2
    assert small.train_dataset.records == again.train_dataset.records
    over = make_dm(root, percent=0.25, seed=5, oversample=True)
    assert len(over.train_dataset) == 8
    assert set(over.train_dataset.records) == set(small.train_dataset.records)
    assert "oversampled" in over.describe()


def test_same_seed_gives_identical_batches(flat_root):
    def run(seed):
        dm = make_dm(flat_root, seed=seed)
        loader = dm.train_dataloader()
        out = []
        for epoch in range(2):
            loader.sampler.set_epoch(epoch)
            out.append(batches(loader))
        return out

    first, second = run(11), run(11)
    for epoch_a, epoch_b in zip(first, second, strict=True):
        for a, b in zip(epoch_a, epoch_b, strict=True):
            assert a["id"] == b["id"]
            assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    assert [b["id"] for b in first[0]] != [b["id"] for b in first[1]]
    assert [b["id"] for b in run(12)[0]] != [b["id"] for b in first[0]]


def test_worker_processes_reproduce_single_process_batches(flat_root):
    single = make_dm(flat_root, seed=2).train_dataloader()
    multi = make_dm(flat_root, seed=2, num_workers=1, persistent_workers=True).train_dataloader()
    by_epoch = []
    for epoch in range(2):
        single.sampler.set_epoch(epoch)
        multi.sampler.set_epoch(epoch)
        images = {}
        for a, b in zip(batches(single), batches(multi), strict=True):
            assert torch.equal(a["image"], b["image"])
            images.update(zip(b["id"], b["image"], strict=True))
        by_epoch.append(images)
    # The persistent worker must see the new epoch: augmentations of the same image change.
    shared = set(by_epoch[0]) & set(by_epoch[1])
    assert any(not torch.equal(by_epoch[0][i], by_epoch[1][i]) for i in shared)


def test_drop_last_only_with_more_than_one_batch(tmp_path):
    root = make_folder_flat(tmp_path, count=10)
    assert make_dm(root, batch_size=3).train_dataloader().drop_last
    assert not make_dm(root, batch_size=8).train_dataloader().drop_last
    assert len(make_dm(root, batch_size=3).train_dataloader()) == 2


def test_test_batches_carry_original_masks(folder_root):
    dm = make_dm(folder_root, batch_size=3)
    batch = next(iter(dm.test_dataloader()))
    assert batch["id"] == ["t1", "t2", "t3"]
    assert batch["orig_size"] == [(16, 16), (24, 8), (10, 14)]
    assert [tuple(m.shape) for m in batch["orig_mask"]] == batch["orig_size"]
    assert batch["mask"].shape == (3, 16, 16)
    assert not dm.val_dataloader().drop_last


def test_extra_maps_hook_reaches_batches(folder_root):
    dm = make_dm(folder_root)
    dm.extra_maps = lambda record, image: {"superpixels": np.ones(image.shape[:2], np.int64)}
    batch = next(iter(dm.val_dataloader()))
    assert batch["superpixels"].shape == (2, 16, 16) and batch["superpixels"].dtype == torch.int64


def test_setup_is_lazy_about_file_contents(folder_root):
    (folder_root / "train/images/a.png").write_bytes(b"garbage")
    dm = make_dm(folder_root)  # setup must not read images
    with pytest.raises(ValueError, match=re.escape(str(folder_root / "train/images/a.png"))):
        dm.train_dataset[0]


def test_missing_root_and_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        make_dm(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="layout"):
        SegmentationDataModule(root=str(tmp_path), layout="isic")
    with pytest.raises(ValueError, match="class_names"):
        SegmentationDataModule(root=str(tmp_path), class_names=["bg"])
    with pytest.raises(ValueError, match="percent"):
        SegmentationDataModule(root=str(tmp_path), percent=0.0)


def test_empty_val_split_reports_error(tmp_path):
    write_pair(tmp_path / "train/images", tmp_path / "train/masks", "only")
    with pytest.raises(ValueError, match="cannot split 1 records"):
        make_dm(tmp_path)


def test_sampler_order_depends_on_seed_and_epoch_only():
    sampler = EpochShuffleSampler(6, seed=1)
    first = list(sampler)
    assert sorted(i for i, _ in first) == list(range(6)) and {e for _, e in first} == {0}
    second = list(sampler)  # advances by itself when nobody calls set_epoch
    assert {e for _, e in second} == {1}
    sampler.set_epoch(0)
    assert list(sampler) == first


def test_jsonargparse_reads_the_signature(tmp_path):
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(SegmentationDataModule, "data")
    cfg = parser.parse_object({"data": {"root": "x", "image_size": [32, 48], "percent": 0.5}})
    assert cfg.data.image_size == (32, 48) and cfg.data.percent == 0.5
    with pytest.raises(Exception, match="bogus"):
        parser.parse_object({"data": {"root": "x", "bogus": 1}})
