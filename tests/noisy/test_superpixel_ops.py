"""Superpixel averaging (hand-computed) and per-class small-loss selection."""

from __future__ import annotations

import pytest
import torch

from models.noisy.superpixel_ops import keep_rates_at, select_small_loss, superpixel_mean


def test_superpixel_mean_hand_computed_2x3():
    # superpixels: [[0, 0, 1], [2, 1, 1]]; one channel values [[1, 3, 2], [7, 4, 6]]
    sp = torch.tensor([[[0, 0, 1], [2, 1, 1]]])
    values = torch.tensor([[[[1.0, 3.0, 2.0], [7.0, 4.0, 6.0]]]])
    expected = torch.tensor([[[[2.0, 2.0, 4.0], [7.0, 4.0, 4.0]]]])
    assert torch.equal(superpixel_mean(values, sp), expected)


def test_superpixel_mean_is_per_image_and_differentiable():
    sp = torch.tensor([[[0, 0], [1, 1]], [[0, 0], [0, 0]]])
    values = torch.arange(16, dtype=torch.float32).reshape(2, 2, 2, 2).requires_grad_()
    out = superpixel_mean(values, sp)
    assert torch.allclose(out[1, 0], torch.full((2, 2), 9.5))  # image 2 not mixed with image 1
    assert torch.allclose(out[0, 1], torch.tensor([[4.5, 4.5], [6.5, 6.5]]))
    out.sum().backward()
    assert torch.allclose(values.grad, torch.ones_like(values))
    with pytest.raises(ValueError):
        superpixel_mean(values, sp[:, :1])


def test_selection_keeps_requested_fraction_per_class():
    gen = torch.Generator().manual_seed(0)
    labels = (torch.rand(2, 16, 16, generator=gen) > 0.7).long()
    losses = torch.rand(2, 16, 16, generator=gen)
    selected = select_small_loss(losses, labels, [0.9, 0.5])
    for cls, rate in ((0, 0.9), (1, 0.5)):
        in_class = labels == cls
        assert int((selected & in_class).sum()) == round(rate * int(in_class.sum()))
        kept, dropped = losses[selected & in_class], losses[~selected & in_class]
        assert kept.max() <= dropped.min()  # the smallest losses are the kept ones


def test_forget_rate_ramp():
    assert keep_rates_at([0.9, 0.5], 0, 5) == pytest.approx([1.0, 1.0])
    assert keep_rates_at([0.9, 0.5], 2, 4) == pytest.approx([0.95, 0.75])
    assert keep_rates_at([0.9, 0.5], 10, 5) == pytest.approx([0.9, 0.5])
    with pytest.raises(ValueError):
        keep_rates_at([0.0, 1.0], 1, 5)
