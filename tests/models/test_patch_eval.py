"""Patch-mode evaluation: sliding windows of an identity-like network reproduce it at any image size."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from datasets.patch_pipeline import resolve_patches
from datasets.patches import PatchConfig
from models.inference.patch_eval import data_eval_window, eval_logits


class PixelwiseNet(torch.nn.Module):
    """An identity-like segmentation "network": class scores are a pixel-wise function of the input."""

    predicts_segmentation = True

    def __init__(self, window=None):
        super().__init__()
        datamodule = SimpleNamespace(eval_window=window)
        self._trainer = SimpleNamespace(datamodule=datamodule) if window is not None else None

    def forward(self, image):
        return torch.cat([image, -image, 0.5 * image], dim=1)

    def predict_log_probs(self, image):
        return self(image).log_softmax(dim=1)


def window(patch=32, overlap=0.5, batch=3):
    plan = resolve_patches(
        "patch", PatchConfig(patch_size=patch, overlap=overlap, sw_batch_size=batch), (8, 8)
    )
    return plan.window


@pytest.mark.parametrize("size", [(5, 7), (31, 33), (32, 32), (33, 97), (130, 64)])
@pytest.mark.parametrize("overlap", [0.0, 0.5, 0.75])
def test_sliding_windows_reproduce_a_pixelwise_network_at_any_size(size, overlap):
    torch.manual_seed(0)
    image = torch.randn(2, 1, *size)
    net = PixelwiseNet(window(32, overlap))
    out = eval_logits(net, image, head_channels=3)
    assert out.shape == (2, 3, *size)  # no border lost, smaller images cropped back
    torch.testing.assert_close(out, net.predict_log_probs(image), rtol=0, atol=1e-5)  # no seams


def test_binary_heads_get_the_logit_of_the_blended_probability():
    class Binary(PixelwiseNet):
        def forward(self, image):
            return image

        def predict_log_probs(self, image):
            return torch.cat([F.logsigmoid(-image), F.logsigmoid(image)], dim=1)

    image = torch.randn(1, 1, 45, 50)
    out = eval_logits(Binary(window(16)), image, head_channels=1)
    torch.testing.assert_close(out, image, rtol=0, atol=1e-4)


def test_resize_mode_calls_the_module_itself():
    net = PixelwiseNet(None)
    image = torch.randn(1, 1, 20, 20)
    assert data_eval_window(net) is None
    assert torch.equal(eval_logits(net, image, head_channels=3), net(image))


def test_window_comes_from_the_patch_options():
    spec = window(48, 0.25, 6)
    assert (spec.size, spec.overlap, spec.batch_size, spec.pad_value) == ((48, 48), 0.25, 6, -1.0)
