from __future__ import annotations

import numpy as np
import pytest
import torch

from datasets.superpixels.masking import mask_superpixels_torch, policy_is_feasible, sample_superpixel_mask


def _stripes(n_labels: int, width: int = 4, offset: int = 0) -> np.ndarray:
    # Label i covers columns [i*width, (i+1)*width): equal areas, easy to count.
    return np.repeat(np.arange(n_labels) + offset, width)[None, :].repeat(3, axis=0).astype(np.int32)


def test_seeded_mask_is_reproducible():
    labels = _stripes(10)
    a = sample_superpixel_mask(labels, n=4, rng=np.random.default_rng(7))
    b = sample_superpixel_mask(labels, n=4, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a.mask, b.mask)
    np.testing.assert_array_equal(a.ids, b.ids)


def test_exactly_n_distinct_ids_and_mask_matches_them():
    labels = _stripes(10, offset=1)
    result = sample_superpixel_mask(labels, n=4, rng=np.random.default_rng(0))
    assert len(set(result.ids.tolist())) == 4
    assert set(np.unique(labels[result.mask]).tolist()) == set(result.ids.tolist())
    assert result.masked_fraction == pytest.approx(4 / 10)
    assert not result.clamped


def test_every_label_can_be_drawn_including_first_and_last():
    labels = np.array([[0, 0, 1], [1, 2, 2]], dtype=np.int32)
    drawn = set()
    for seed in range(60):
        drawn.update(sample_superpixel_mask(labels, n=1, rng=np.random.default_rng(seed)).ids.tolist())
    assert drawn == {0, 1, 2}


def test_ignore_label_is_never_masked():
    labels = np.array([[0, 1, 2], [0, 1, 2]], dtype=np.int32)
    for seed in range(20):
        result = sample_superpixel_mask(labels, n=2, rng=np.random.default_rng(seed), ignore_label=0)
        assert not result.mask[:, 0].any()
        assert result.mask.sum() == 4


def test_n_above_count_raises_with_numbers():
    labels = _stripes(3)
    with pytest.raises(ValueError, match=r"n=5.*only 3"):
        sample_superpixel_mask(labels, n=5, rng=np.random.default_rng(0))


def test_n_above_count_clamps_when_asked():
    result = sample_superpixel_mask(_stripes(3), n=5, rng=np.random.default_rng(0), on_excess="clamp")
    assert result.clamped
    assert sorted(result.ids.tolist()) == [0, 1, 2]
    assert result.mask.all()


@pytest.mark.parametrize(
    ("n", "ratio"), [(0, None), (-1, None), (None, 0.0), (None, 1.0), (None, 1.5), (None, None)]
)
def test_bad_n_or_ratio_raises(n, ratio):
    with pytest.raises(ValueError):
        sample_superpixel_mask(_stripes(4), n=n, ratio=ratio, rng=np.random.default_rng(0))


def test_both_n_and_ratio_raises():
    with pytest.raises(ValueError, match="exactly one"):
        sample_superpixel_mask(_stripes(4), n=1, ratio=0.5, rng=np.random.default_rng(0))


def test_ratio_mode_reaches_ratio_with_minimal_greedy_prefix():
    # Unequal areas: 1, 2, 3, ... columns; the last added superpixel must be needed to reach the ratio.
    labels = np.repeat(np.arange(8), np.arange(1, 9))[None, :].repeat(2, axis=0)
    for seed in range(30):
        result = sample_superpixel_mask(labels, ratio=0.4, rng=np.random.default_rng(seed))
        assert result.masked_fraction >= 0.4
        without_last = np.isin(labels, result.ids[:-1]).mean()
        assert without_last < 0.4


def test_ratio_unreachable_because_of_ignored_area():
    labels = np.array([[0, 0, 0, 1]], dtype=np.int32)
    with pytest.raises(ValueError, match="cover only 0.25"):
        sample_superpixel_mask(labels, ratio=0.5, rng=np.random.default_rng(0), ignore_label=0)


def test_torch_batched_mask_reproducible_and_respects_counts():
    labels = torch.zeros(2, 4, 6, dtype=torch.long)
    labels[0] = torch.arange(6).repeat(4, 1)  # 6 superpixels (columns)
    labels[1] = torch.arange(3).repeat_interleave(2).repeat(4, 1)  # 3 superpixels
    counts = torch.tensor([6, 3])
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    m1, f1 = mask_superpixels_torch(labels, 2, g1, counts)
    m2, f2 = mask_superpixels_torch(labels, 2, g2, counts)
    assert torch.equal(m1, m2) and torch.equal(f1, f2)
    for b in range(2):
        assert labels[b][m1[b]].unique().numel() == 2
    torch.testing.assert_close(f1, torch.tensor([2 / 6, 2 / 3]))


def test_torch_batched_every_label_drawable():
    labels = torch.tensor([[[0, 1, 2]]])
    drawn = set()
    gen = torch.Generator().manual_seed(0)
    for _ in range(60):
        mask, _ = mask_superpixels_torch(labels, 1, gen, torch.tensor([3]))
        drawn.update(labels[mask].tolist())
    assert drawn == {0, 1, 2}


def test_torch_batched_n_above_count_raises():
    labels = torch.tensor([[[0, 1, 2]], [[0, 0, 1]]])
    with pytest.raises(ValueError, match=r"n=3.*only 2"):
        mask_superpixels_torch(labels, 3, torch.Generator(), torch.tensor([3, 2]))


def test_torch_label_offset_one_ignores_background_zero():
    labels = torch.tensor([[[0, 1, 2, 3]]])  # 0 = outside the body, superpixels 1..3
    mask, frac = mask_superpixels_torch(
        labels, 3, torch.Generator().manual_seed(0), torch.tensor([3]), label_offset=1
    )
    assert mask.tolist() == [[[False, True, True, True]]]
    assert frac.item() == pytest.approx(0.75)


@pytest.mark.parametrize(
    ("k", "n", "ok"), [(512, 128, True), (512, 256, True), (512, 257, False), (40, 0, False), (0, 1, False)]
)
def test_policy_feasibility(k, n, ok):
    feasible, reason = policy_is_feasible(k, n)
    assert feasible is ok
    assert (reason == "") is ok
