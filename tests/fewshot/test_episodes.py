"""Pseudolabel episodes: never empty, every label drawable, min size, seeded; pseudolabel maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datasets.fewshot.episodes import (
    AugmentParams,
    EpochIndexSampler,
    PseudolabelEpisodes,
    augment_pair,
    eligible_labels,
    sample_episode,
)
from datasets.volumes.pseudolabels import cached_pseudolabels, slice_stack_pseudolabels


def _grid_labels(h=32, w=32, cell=8) -> np.ndarray:
    # 0 border ring, then 16 cells of 8x8 labelled 1..16 (last label 16 must be drawable).
    lab = (np.arange(h)[:, None] // cell) * (w // cell) + (np.arange(w)[None] // cell) + 1
    lab[:2], lab[:, :2] = 0, 0
    return lab.astype(np.int32)


def test_every_label_drawn_and_never_empty():
    pseudo = _grid_labels()
    image = pseudo.astype(np.float32)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(400):
        ep = sample_episode(image, pseudo, rng, min_fg_pixels=1, augment=None)
        seen.add(ep["label"])
        assert ep["query_mask"].sum() > 0 and ep["support_mask"].sum() > 0
        np.testing.assert_array_equal(ep["query_mask"], pseudo == ep["label"])
    assert seen == set(range(1, 17))  # label 16 included, label 0 (outside the body) never


def test_min_size_excludes_small_superpixels():
    pseudo = _grid_labels()  # cells touching the ring are smaller than 64 pixels
    assert set(eligible_labels(pseudo, 64).tolist()) == {6, 7, 8, 10, 11, 12, 14, 15, 16}
    with pytest.raises(ValueError, match="no superpixel with >= 1000 pixels"):
        sample_episode(pseudo.astype(np.float32), pseudo, np.random.default_rng(0), min_fg_pixels=1000)


def test_augmented_episodes_nonempty_binary_and_different_views():
    pseudo = _grid_labels()
    image = np.random.default_rng(1).random((32, 32)).astype(np.float32)
    rng = np.random.default_rng(2)
    for _ in range(20):
        ep = sample_episode(image, pseudo, rng, min_fg_pixels=1, augment=AugmentParams())
        for role in ("support", "query"):
            assert ep[f"{role}_mask"].any() and set(np.unique(ep[f"{role}_mask"])) <= {0, 1}
        assert not np.array_equal(ep["support_image"], ep["query_image"])


def test_augment_pair_shapes_and_gamma_range():
    img = np.linspace(0, 1, 400, dtype=np.float32).reshape(20, 20)
    out, msk = augment_pair(img, img > 0.5, np.random.default_rng(0))
    assert out.shape == (20, 20) and msk.shape == (20, 20) and msk.dtype == np.uint8
    assert out.min() >= img.min() - 1e-6 and out.max() <= img.max() + 1e-6


def _episodes(seed=0, keep=None):
    pseudo = np.stack([_grid_labels(), _grid_labels()])
    image = np.random.default_rng(3).random((2, 32, 32)).astype(np.float32)
    return PseudolabelEpisodes([image], [pseudo], [keep if keep is not None else np.ones(2, bool)], 8, seed)


def test_episodes_reproducible_with_seed_and_three_channels():
    a, b, c = _episodes(0), _episodes(0), _episodes(1)
    for i in range(3):
        for key in ("support_image", "query_image", "query_mask", "slice"):
            torch.testing.assert_close(a[i][key], b[i][key])
    assert any(not torch.equal(a[i]["query_image"], c[i]["query_image"]) for i in range(3))
    item = a[0]
    assert item["support_image"].shape == (3, 32, 32)
    torch.testing.assert_close(item["support_image"][0], item["support_image"][2])


def test_keep_mask_restricts_slices_and_empty_pool_errors():
    ds = _episodes(keep=np.array([False, True]))
    assert {int(ds[i]["slice"][1]) for i in range(8)} == {1}
    with pytest.raises(ValueError, match="no training slice"):
        _episodes(keep=np.array([False, False]))


def test_epoch_sampler_moves_to_new_episodes():
    s = EpochIndexSampler(3)
    assert list(s) == [0, 1, 2]
    s.set_epoch(2)
    assert list(s) == [6, 7, 8] and len(s) == 3


def test_pseudolabels_inside_body_and_cached(tmp_path):
    yy, xx = np.mgrid[:48, :48]
    disk = ((yy - 24) ** 2 + (xx - 24) ** 2 < 400).astype(np.float32)
    slices = np.stack([disk * (1 + (xx > 24)), disk * (1 + (yy > 24))]) + 0.0
    labels = slice_stack_pseudolabels(slices, min_size=20)
    assert labels.shape == slices.shape and (labels[:, 0, 0] == 0).all()
    inside = labels[0][disk > 0]
    assert inside.min() >= 1 and set(np.unique(inside)) == set(range(1, labels[0].max() + 1))
    assert labels[0].max() >= 2  # the two halves differ in intensity
    path = tmp_path / "pl.nii.gz"
    first = cached_pseudolabels(slices, path, min_size=20)
    np.testing.assert_array_equal(first, labels)
    np.testing.assert_array_equal(cached_pseudolabels(slices, path, min_size=20), labels)
    with pytest.raises(ValueError, match="differs from the slices"):
        cached_pseudolabels(slices[:1], path, min_size=20)
