"""BYOL: loss, EMA, tau schedule, seeded views, LARS, gradient flow and the 20-step test."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from models.lars import LARS
from pretext.byol import BYOL, view_generator
from pretext.byol_ops import (
    ViewAugmentation,
    augment_view,
    byol_loss,
    ema_update,
    symmetric_byol_loss,
    tau_schedule,
)

TINY = {"encoder_name": "resnet18", "proj_hidden_dim": 32, "proj_output_dim": 16, "pred_hidden_dim": 32}


def tiny_byol(**kw) -> BYOL:
    torch.manual_seed(0)
    return BYOL(in_channels=1, **{**TINY, **kw})


def test_byol_loss_zero_for_aligned_vectors_and_hand_values():
    z = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]])
    assert byol_loss(z, z).item() == pytest.approx(0.0, abs=1e-6)
    assert byol_loss(3.0 * z, z).item() == pytest.approx(0.0, abs=1e-6)  # scale-invariant
    # orthogonal -> 2, opposite -> 4; 45 degrees -> 2 - sqrt(2)
    assert byol_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 5.0]])).item() == pytest.approx(2.0)
    assert byol_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[-2.0, 0.0]])).item() == pytest.approx(4.0)
    p = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    t = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    assert byol_loss(p, t).item() == pytest.approx(((2 - math.sqrt(2)) + 2.0) / 2)
    # symmetric: p1 vs z2 plus p2 vs z1
    one, zero = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert symmetric_byol_loss(one, one, one, zero).item() == pytest.approx(2.0)
    assert symmetric_byol_loss(one, zero, zero, one).item() == pytest.approx(0.0, abs=1e-6)


def test_ema_update_hand_value_and_bad_tau():
    target, online = nn.Linear(2, 1), nn.Linear(2, 1)
    with torch.no_grad():
        target.weight.fill_(0.0)
        target.bias.fill_(4.0)
        online.weight.fill_(2.0)
        online.bias.fill_(0.0)
    ema_update(target, online, 0.5)
    assert torch.equal(target.weight, torch.ones(1, 2))
    assert torch.equal(target.bias, torch.tensor([2.0]))
    ema_update(target, online, 1.0)  # tau = 1 keeps the target
    assert torch.equal(target.weight, torch.ones(1, 2))
    with pytest.raises(ValueError, match="tau"):
        ema_update(target, online, 1.5)


def test_tau_schedule_cosine_from_base_to_final():
    assert tau_schedule(0, 100) == pytest.approx(0.99)
    assert tau_schedule(100, 100) == pytest.approx(1.0)
    assert tau_schedule(50, 100) == pytest.approx(0.995)
    values = [tau_schedule(s, 100) for s in range(101)]
    assert all(a <= b for a, b in zip(values, values[1:], strict=False))
    assert tau_schedule(500, 100) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="max_steps"):
        tau_schedule(0, 0)


def test_views_reproducible_per_seed_and_in_range():
    images = torch.rand(4, 3, 40, 48) * 2 - 1
    a = augment_view(images, torch.Generator().manual_seed(3), out_size=(32, 32))
    b = augment_view(images, torch.Generator().manual_seed(3), out_size=(32, 32))
    c = augment_view(images, torch.Generator().manual_seed(4), out_size=(32, 32))
    assert a.shape == (4, 3, 32, 32)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= -1.0 and a.max() <= 1.0
    # the module's generators depend only on (seed, stream, step)
    g1, g2 = view_generator(0, 0, 5), view_generator(0, 0, 5)
    assert torch.equal(torch.rand(3, generator=g1), torch.rand(3, generator=g2))
    assert not torch.equal(torch.rand(3, generator=view_generator(0, 0, 6)), torch.rand(3, generator=g1))


def test_full_crop_with_flip_is_an_exact_mirror():
    images = torch.rand(2, 1, 8, 8) * 2 - 1
    kw = {"scale": (1.0, 1.0), "ratio": (1.0, 1.0), "jitter_p": 0.0}
    flipped = augment_view(images, torch.Generator().manual_seed(0), aug=ViewAugmentation(hflip_p=1.0, **kw))
    same = augment_view(images, torch.Generator().manual_seed(0), aug=ViewAugmentation(hflip_p=0.0, **kw))
    torch.testing.assert_close(flipped, images.flip(-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(same, images, atol=1e-5, rtol=0)


def test_grayscale_makes_rgb_channels_equal():
    images = torch.rand(3, 3, 16, 16) * 2 - 1
    grey = augment_view(
        images, torch.Generator().manual_seed(0), aug=ViewAugmentation(grayscale_p=1.0, jitter_p=0.0)
    )
    assert torch.allclose(grey[:, 0], grey[:, 1]) and torch.allclose(grey[:, 1], grey[:, 2])
    with pytest.raises(ValueError, match="expected images"):
        augment_view(torch.rand(2, 2, 8, 8), torch.Generator())


def test_lars_step_hand_value_and_excluded_group():
    w = nn.Parameter(torch.tensor([3.0, 4.0]))  # norm 5
    b = nn.Parameter(torch.tensor([1.0]))
    opt = LARS([{"params": [w]}, {"params": [b], "exclude": True}], lr=1.0, momentum=0.0, eta=0.02)
    w.grad, b.grad = torch.tensor([0.6, 0.8]), torch.tensor([0.5])  # grad norm 1 -> trust 0.1
    opt.step()
    torch.testing.assert_close(w.detach(), torch.tensor([2.94, 3.92]))
    torch.testing.assert_close(b.detach(), torch.tensor([0.5]))  # plain SGD step


def test_target_gets_no_gradient_and_online_does():
    model = tiny_byol()
    model.train()
    loss = model.byol_step(torch.rand(4, 1, 32, 32) * 2 - 1, torch.Generator().manual_seed(0))
    loss.backward()
    assert all(not p.requires_grad and p.grad is None for p in model.target_net.parameters())
    assert all(p.grad is not None for p in model.online_net.parameters())
    assert all(p.grad is not None for p in model.predictor.parameters())
    # the target starts as an exact copy with its own storage
    for t, o in zip(model.target_net.parameters(), model.online_net.parameters(), strict=True):
        assert torch.equal(t, o) and t.data_ptr() != o.data_ptr()


def test_loss_goes_down_in_20_steps_on_a_fixed_batch():
    model = tiny_byol()
    model.train()
    images = torch.rand(6, 1, 32, 32) * 2 - 1
    opt = torch.optim.Adam([*model.online_net.parameters(), *model.predictor.parameters()], lr=1e-3)
    losses = []
    for step in range(20):
        loss = model.byol_step(images, torch.Generator().manual_seed(0))  # fixed views
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema_update(model.target_net, model.online_net, tau_schedule(step, 20))
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_init_checkpoint_initialises_both_branches(tmp_path):
    from models.networks.registry import create_model

    torch.manual_seed(1)
    source = create_model("encoder_unet", in_channels=1, num_classes=2, encoder_name="resnet18")
    path = tmp_path / "sup.pt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in source.state_dict().items()}}, path)
    model = tiny_byol(init_checkpoint=str(path))
    for name, value in source.encoder.state_dict().items():
        assert torch.equal(model.online_net.encoder.state_dict()[name], value)
        assert torch.equal(model.target_net.encoder.state_dict()[name], value)
    with pytest.raises(ValueError, match="encoder_weights=.* and init_checkpoint=.* are both set; give one"):
        tiny_byol(init_checkpoint=str(path), encoder_weights=str(path))
    with pytest.raises(FileNotFoundError):
        tiny_byol(init_checkpoint=str(tmp_path / "nope.ckpt"))


def test_view_augmentation_settings_checked_and_round_trip():
    aug = ViewAugmentation.coerce({"hue": 0.05, "scale": [0.5, 1.0]}, ViewAugmentation())
    assert aug.hue == 0.05 and aug.scale == (0.5, 1.0) and aug.brightness == 0.4
    assert ViewAugmentation.coerce(aug.as_dict(), ViewAugmentation()) == aug  # what a checkpoint holds
    assert aug.as_dict()["scale"] == [0.5, 1.0]  # plain lists: hparams.yaml without Python tags
    with pytest.raises(ValueError, match="augment.hflip_p must be in"):
        ViewAugmentation(hflip_p=1.5)
    with pytest.raises(ValueError, match="augment.scale"):
        ViewAugmentation(scale=(0.9, 0.1))
    with pytest.raises(ValueError, match="did you mean 'hue'"):
        ViewAugmentation.coerce({"hues": 0.1}, ViewAugmentation())
