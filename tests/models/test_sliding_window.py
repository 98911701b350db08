"""Sliding-window inference: identity-like networks are reproduced at any size, memory stays bounded."""

from __future__ import annotations

import pytest
import torch

from models.inference import gaussian_weights, sliding_window_inference, window_starts


@pytest.mark.parametrize("size", [(7, 5), (32, 32), (33, 31), (45, 77), (100, 33)])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.75])
def test_identity_network_is_reproduced_without_seams_or_border_loss(size, overlap):
    torch.manual_seed(0)
    image = torch.rand(2, 3, *size)
    out = sliding_window_inference(image, lambda tiles: tiles * 1.0, window=32, overlap=overlap, batch_size=3)
    assert out.shape == image.shape
    torch.testing.assert_close(out, image, rtol=0, atol=1e-5)


def test_identity_conv_and_plain_average_and_single_image():
    conv = torch.nn.Conv2d(2, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(2)[:, :, None, None])
    image = torch.randn(2, 50, 61)
    for gaussian in (True, False):
        with torch.no_grad():
            out = sliding_window_inference(image, conv, window=(16, 24), overlap=0.5, gaussian=gaussian)
        assert out.shape == image.shape
        torch.testing.assert_close(out, image, rtol=0, atol=1e-5)


def test_windows_are_batched_so_memory_is_bounded():
    calls = []

    def predict(tiles):
        calls.append(tiles.shape[0])
        return tiles[:, :1]

    out = sliding_window_inference(torch.rand(1, 1, 64, 96), predict, window=16, overlap=0.5, batch_size=5)
    assert out.shape == (1, 1, 64, 96)
    assert max(calls) <= 5 and sum(calls) == len(window_starts(64, 16, 0.5)) * len(window_starts(96, 16, 0.5))


def test_window_starts_cover_the_axis_and_end_flush():
    assert window_starts(32, 32, 0.5) == [0]
    assert window_starts(40, 32, 0.5) == [0, 8]
    assert window_starts(100, 32, 0.5) == [0, 16, 32, 48, 64, 68]
    with pytest.raises(ValueError, match="overlap"):
        window_starts(40, 32, 1.0)
    weights = gaussian_weights((8, 6))
    assert weights.max() == pytest.approx(1.0) and weights.min() > 0


def test_outputs_with_other_channel_count_and_small_images_are_cropped_back():
    image = torch.rand(1, 1, 10, 12)
    out = sliding_window_inference(image, lambda t: t.repeat(1, 4, 1, 1), window=16, pad_value=-1.0)
    assert out.shape == (1, 4, 10, 12)
    torch.testing.assert_close(out, image.repeat(1, 4, 1, 1), rtol=0, atol=1e-6)
