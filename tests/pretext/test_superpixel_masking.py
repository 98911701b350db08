"""The one superpixel sampler (pretext/superpixel_masking.py): the cases of the deleted duplicate in
datasets/superpixels/masking.py, ported to the live implementation."""

from __future__ import annotations

import pytest
import torch

from pretext.superpixel_masking import draw_superpixel_masks


def grid_labels(cells: int = 4, size: int = 8) -> torch.Tensor:
    """[1, size, size] map of cells x cells square superpixels numbered 0..cells^2-1."""
    step = size // cells
    rows = torch.arange(size) // step
    return (rows[:, None] * cells + rows[None, :]).unsqueeze(0)


def test_exactly_n_distinct_ids_and_the_mask_is_their_union():
    labels = grid_labels()
    out = draw_superpixel_masks(labels, seeds=[3], n=5)
    chosen = torch.unique(labels[out.mask])
    assert chosen.numel() == 5
    assert torch.equal(out.mask[0], torch.isin(labels[0], chosen))
    assert out.masked_fraction.item() == pytest.approx(5 / 16) and int(out.counts[0]) == 16


def test_every_label_can_be_drawn_including_first_and_last():
    labels = grid_labels()
    seen = set()
    for seed in range(200):
        seen |= set(torch.unique(labels[draw_superpixel_masks(labels, seeds=[seed], n=1).mask]).tolist())
    assert seen == set(range(16))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 0}, "n_masked must be >= 1"),
        ({"ratio": 1.0}, r"mask_ratio must lie in \(0, 1\)"),
        ({"n": 2, "ratio": 0.5}, "exactly one of n_masked or mask_ratio"),
        ({}, "exactly one of n_masked or mask_ratio"),
        ({"n": 2, "on_excess": "wrap"}, "on_excess must be 'error' or 'clamp'"),
    ],
)
def test_bad_requests_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        draw_superpixel_masks(grid_labels(), seeds=[0], **kwargs)
