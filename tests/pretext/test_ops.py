from __future__ import annotations

import pytest
import torch

from pretext.ops import (
    JIGSAW_PERMUTATIONS,
    fill_masked,
    jigsaw_batch,
    masked_mse,
    merge_tiles,
    paper_mse_x100,
    rotate_batch,
    split_tiles,
    to_grey_in_mask,
)

IMAGE = torch.tensor([[[[0.5, -0.5], [0.25, 1.0]]]])  # 1x1x2x2
MASK = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # 1x2x2


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_fill_zero_is_black_after_normalisation():
    out = fill_masked(IMAGE, MASK, "zero")
    assert torch.equal(out, torch.tensor([[[[-1.0, -0.5], [0.25, -1.0]]]]))


def test_fill_mean_uses_visible_pixels_only():
    out = fill_masked(IMAGE, MASK, "mean")
    assert torch.allclose(out, torch.tensor([[[[-0.125, -0.5], [0.25, -0.125]]]]))


def test_fill_noise_seeded_and_leaves_visible_pixels():
    a = fill_masked(IMAGE, MASK, "noise", gen(0))
    b = fill_masked(IMAGE, MASK, "noise", gen(0))
    c = fill_masked(IMAGE, MASK, "noise", gen(1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a[0, 0, 0, 1] == -0.5 and a[0, 0, 1, 0] == 0.25
    assert a.abs().max() <= 1.0
    with pytest.raises(ValueError, match="Generator"):
        fill_masked(IMAGE, MASK, "noise")
    with pytest.raises(ValueError, match="unknown fill mode"):
        fill_masked(IMAGE, MASK, "blur")  # type: ignore[arg-type]


def test_fill_rejects_mismatched_mask():
    with pytest.raises(ValueError, match="mask must be"):
        fill_masked(IMAGE, torch.ones(1, 3, 3), "zero")


def test_masked_mse_hand_computed():
    pred = torch.zeros_like(IMAGE)
    # masked pixels: 0.5 and 1.0 -> (0.25 + 1.0) / 2
    assert masked_mse(pred, IMAGE, MASK).item() == pytest.approx(0.625)
    # paper: over all 4 pixels of pred*m vs target*m, x100
    assert paper_mse_x100(pred, IMAGE, MASK).item() == pytest.approx(31.25)
    # errors outside the mask do not count
    assert masked_mse(IMAGE + (1 - MASK[:, None]) * 5, IMAGE, MASK).item() == 0.0


def test_masked_mse_empty_mask_is_zero_not_nan():
    value = masked_mse(torch.zeros_like(IMAGE), IMAGE, torch.zeros_like(MASK))
    assert value.item() == 0.0


def test_rotate_batch_labels_match_rotation_and_are_seeded():
    images = torch.randn(6, 2, 5, 5)
    rotated, labels = rotate_batch(images, gen(3))
    for img, rot, k in zip(images, rotated, labels, strict=True):
        assert torch.equal(torch.rot90(rot, -int(k), dims=(1, 2)), img)
    again, labels2 = rotate_batch(images, gen(3))
    assert torch.equal(again, rotated) and torch.equal(labels, labels2)
    other = torch.stack([rotate_batch(images, gen(s))[1] for s in range(4, 8)])
    assert not all(torch.equal(o, labels) for o in other)
    assert set(labels.tolist()) <= {0, 1, 2, 3}
    with pytest.raises(ValueError, match="square"):
        rotate_batch(torch.zeros(1, 1, 4, 6), gen(0))


def test_to_grey_in_mask_luma_inside_only():
    image = torch.zeros(1, 3, 1, 2)
    image[0, 0] = 1.0  # both pixels pure red
    out = to_grey_in_mask(image, torch.tensor([[[1.0, 0.0]]]))
    assert torch.allclose(out[0, :, 0, 0], torch.full((3,), 0.299))
    assert torch.equal(out[0, :, 0, 1], image[0, :, 0, 1])
    grey = torch.randn(2, 1, 4, 4)
    assert torch.equal(to_grey_in_mask(grey, torch.ones(2, 4, 4)), grey)


def test_jigsaw_permutations_are_all_24():
    assert len(JIGSAW_PERMUTATIONS) == 24 == len(set(JIGSAW_PERMUTATIONS))
    assert all(sorted(p) == [0, 1, 2, 3] for p in JIGSAW_PERMUTATIONS)


def test_split_merge_roundtrip_and_tile_order():
    images = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    tiles = split_tiles(images)
    assert tiles.shape == (2, 4, 3, 2, 3)
    assert torch.equal(tiles[:, 1], images[:, :, :2, 3:])  # top-right
    assert torch.equal(tiles[:, 2], images[:, :, 2:, :3])  # bottom-left
    assert torch.equal(merge_tiles(tiles), images)


def test_jigsaw_batch_applies_the_labelled_permutation():
    images = torch.zeros(8, 1, 4, 4)
    for t, (r, c) in enumerate([(0, 0), (0, 2), (2, 0), (2, 2)]):
        images[:, :, r : r + 2, c : c + 2] = t  # tile t holds the value t
    tiles, labels = jigsaw_batch(images, gen(0))
    for b in range(8):
        values = [int(tiles[b, j, 0, 0, 0]) for j in range(4)]
        assert tuple(values) == JIGSAW_PERMUTATIONS[int(labels[b])]
    tiles2, labels2 = jigsaw_batch(images, gen(0))
    assert torch.equal(tiles, tiles2) and torch.equal(labels, labels2)
    assert not torch.equal(jigsaw_batch(images, gen(1))[1], labels)
