"""The method registry and the refinement-round functions."""

from __future__ import annotations

import math
import typing

import pytest
import torch
from torch import nn

from models.noisy.methods import NOISY_METHODS, LossInputs, jocor_loss, jocor_superpixel_loss, plain_loss
from models.noisy.module import NoisyLabelSegmentation
from models.noisy.refine_round import update_flips


def _inputs(**overrides):
    gen = torch.Generator().manual_seed(0)
    logits = [torch.randn(1, 2, 4, 4, generator=gen) for _ in range(2)]
    fields = {
        "probs": [t.softmax(1) for t in logits],
        "labels": (torch.arange(16).view(1, 4, 4) % 3 == 0).long(),
        "weights": None,
        "rates": [0.75, 0.5],
        "lam": 0.65,
        "superpixels": (torch.arange(4).view(4, 1) // 2 * 2 + torch.arange(4).view(1, 4) // 2).view(1, 4, 4),
    }
    return LossInputs(**{**fields, **overrides})


def test_registry_matches_the_config_choices():
    choices = typing.get_args(typing.get_type_hints(NoisyLabelSegmentation.__init__)["method"])
    assert set(choices) == set(NOISY_METHODS)
    assert {name: m.networks for name, m in NOISY_METHODS.items()} == {
        "plain": 1,
        "coteaching": 2,
        "jocor": 2,
        "jocor_sp": 2,
    }
    assert [name for name, m in NOISY_METHODS.items() if m.needs_superpixels] == ["jocor_sp"]


def test_plain_loss_hand_value_on_uniform_probabilities():
    uniform = torch.full((1, 2, 4, 4), 0.5)
    loss, gap = plain_loss(_inputs(probs=[uniform]))
    assert loss.item() == pytest.approx(math.log(2), abs=1e-6)
    assert gap.item() == 0.0


def test_superpixel_loss_is_jocor_on_superpixel_means():
    x = _inputs()
    means = []
    for p in x.probs:  # 2x2 blocks are the superpixels: average each block by hand
        blocks = p.view(1, 2, 2, 2, 2, 2).mean(dim=(3, 5), keepdim=True).expand(1, 2, 2, 2, 2, 2)
        means.append(blocks.reshape(1, 2, 4, 4))
    expected_loss, expected_gap = jocor_loss(LossInputs(means, x.labels, None, x.rates, x.lam))
    loss, gap = jocor_superpixel_loss(x)
    assert loss.item() == pytest.approx(expected_loss.item(), abs=1e-6)
    assert gap.item() == pytest.approx(expected_gap.item(), abs=1e-6)
    # one superpixel per pixel: averaging changes nothing
    singletons = torch.arange(16).view(1, 4, 4)
    assert jocor_superpixel_loss(_inputs(superpixels=singletons))[0].item() == pytest.approx(
        jocor_loss(x)[0].item(), abs=1e-6
    )


def test_superpixel_loss_without_maps_names_the_setting():
    with pytest.raises(KeyError, match="data.superpixels"):
        jocor_superpixel_loss(_inputs(superpixels=None))


class _Failing(nn.Module):
    def forward(self, image):
        raise RuntimeError("out of memory")


def test_update_flips_restores_training_mode_even_on_failure():
    net = nn.Conv2d(1, 2, 1)
    net.train()
    item = {
        "image": torch.ones(1, 4, 4),
        "mask": torch.zeros(4, 4, dtype=torch.long),
        "superpixels": torch.zeros(4, 4, dtype=torch.long),
        "id": "a",
    }
    with torch.no_grad():
        net.weight.zero_()
        net.bias.copy_(torch.tensor([-5.0, 5.0]))  # confident class 1 everywhere
    flips: dict = {}
    stats = update_flips([net], [item], flips, threshold=0.8, device=torch.device("cpu"))
    assert net.training
    assert stats == {"a": {"flipped_superpixels": 1}}
    assert flips["a"].tolist() == [1]
    broken = _Failing().train()
    with pytest.raises(RuntimeError, match="out of memory"):
        update_flips([broken], [item], {}, threshold=0.8, device=torch.device("cpu"))
    assert broken.training
