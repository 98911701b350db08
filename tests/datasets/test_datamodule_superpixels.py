"""The data config's `superpixels:` section: cpu maps in workers, cache maps (or a clear error), gpu none."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from datasets.datamodule import SegmentationDataModule
from datasets.superpixels.config import SuperpixelConfig
from sp_generation import main as sp_main

NUCLEI = Path(__file__).resolve().parents[2] / "datasets" / "sample" / "nuclei"
PARAMS = {"n_segments": 64, "compactness": 0.1}


def _module(tmp_path: Path, source: str, **kw) -> SegmentationDataModule:
    config = SuperpixelConfig(
        source=source, backend="numba", params=PARAMS, cache_dir=str(tmp_path / "cache"), **kw
    )
    dm = SegmentationDataModule(
        root=str(NUCLEI),
        in_channels=1,
        image_size=64,
        batch_size=4,
        num_workers=0,
        superpixels=config,
        train_transforms=[{"name": "HorizontalFlip", "p": 1.0}],
    )
    dm.setup("fit")
    return dm


def test_cpu_source_serves_maps_aligned_with_the_augmented_image(tmp_path):
    dm = _module(tmp_path, "cpu")
    batch = next(iter(dm.train_dataloader()))
    sp = batch["superpixels"]
    assert sp.shape == (4, 64, 64) and sp.dtype == torch.int64
    # the map follows the flip: recomputing on the un-flipped image and flipping gives the same labels
    sample = dm.val_dataset[0]
    assert sample["superpixels"].shape == sample["image"].shape[-2:]
    for labels in sp:
        ids = torch.unique(labels)
        assert ids[0] == 0 and len(ids) > 10


def test_flip_moves_the_map_with_the_image(tmp_path):
    dm = _module(tmp_path, "cpu")
    flipped = dm.train_dataset[0]
    plain = dm.val_dataset.__class__(
        dm.train_dataset.records, 2, 1, dm.val_dataset.transform, "val", 0, dm.extra_maps
    )[0]
    assert torch.equal(flipped["image"], torch.flip(plain["image"], dims=[-1]))
    assert torch.equal(flipped["superpixels"], torch.flip(plain["superpixels"], dims=[-1]))


def test_cache_source_without_maps_fails_with_the_generation_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="sp_generation.py"):
        _module(tmp_path, "cache")


def test_cache_source_reads_maps_written_by_sp_generation(tmp_path):
    cpu = _module(tmp_path, "cpu")
    code = sp_main(
        [
            "--root",
            str(NUCLEI),
            "--layout",
            "folder",
            "--out",
            str(tmp_path / "cache"),
            "--k",
            "64",
            "--compactness",
            "0.1",
            "--size",
            "64",
            "--channels",
            "1",
            "--workers",
            "1",
        ]
    )
    assert code == 0
    cached = _module(tmp_path, "cache")
    for i in range(3):
        assert np.array_equal(
            cached.val_dataset[i]["superpixels"].numpy(), cpu.val_dataset[i]["superpixels"].numpy()
        )


def test_gpu_source_leaves_maps_to_the_module(tmp_path):
    dm = _module(tmp_path, "gpu")
    assert "superpixels" not in dm.val_dataset[0]
