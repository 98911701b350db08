from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models.losses import (
    DeepSupervisionLoss,
    HybridLoss,
    apply_loss,
    create_loss,
    list_losses,
)
from models.losses.distillation import DistillationLoss
from models.losses.overlap import dice_loss, jaccard_loss, tversky_loss

# One image, 2x2 pixels; foreground in 3 of 4 pixels.
TARGET_2X2 = torch.tensor([[[0, 1], [1, 1]]])


def _two_class_logits(p_class0: list[float]) -> torch.Tensor:
    """Logits [1, 2, 1, N] whose softmax gives probability p for class 0 at each pixel."""
    p = torch.tensor(p_class0, dtype=torch.float64)
    logit = torch.log(p / (1 - p))
    return torch.stack([logit, torch.zeros_like(logit)])[None, :, None, :]


def _default_kwargs(name: str) -> dict:
    return {"losses": {"ce": 1.0, "dice": 1.5}} if name == "hybrid" else {}


# --- cross-entropy / bce ---------------------------------------------------------------------------


def test_ce_matches_torch_and_hand_value():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, 4, generator=gen)
    target = torch.randint(0, 3, (2, 4, 4), generator=gen)
    assert torch.allclose(create_loss("ce")(logits, target), F.cross_entropy(logits, target))
    weighted = create_loss("ce", weight=[0.2, 1.0, 3.0], label_smoothing=0.1)(logits, target)
    ref = F.cross_entropy(logits, target, weight=torch.tensor([0.2, 1.0, 3.0]), label_smoothing=0.1)
    assert torch.allclose(weighted, ref)
    # p(class 0) = 0.75 at the single pixel -> -ln 0.75
    hand = create_loss("ce")(_two_class_logits([0.75]), torch.zeros(1, 1, 1, dtype=torch.long))
    assert hand.item() == pytest.approx(-math.log(0.75))


def test_bce_binary_and_ce_on_one_channel_agree():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 1, 3, 3, generator=gen)
    target = torch.randint(0, 2, (2, 3, 3), generator=gen)
    ref = F.binary_cross_entropy_with_logits(logits[:, 0], target.float())
    assert torch.allclose(create_loss("bce")(logits, target), ref)
    assert torch.allclose(create_loss("ce")(logits, target), ref, atol=1e-6)


def test_bce_rejects_multichannel_and_non_binary_target():
    with pytest.raises(ValueError, match="1 logit channel"):
        create_loss("bce")(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"outside \[0, 2\)"):
        create_loss("bce")(torch.zeros(1, 1, 2, 2), torch.full((1, 2, 2), 3))


# --- overlap losses ------------------------------------------------------------------------------


def test_dice_hand_values_on_2x2():
    logits = torch.zeros(1, 2, 2, 2)  # every probability 0.5: I = 1.5, P = 2, G = 3
    assert dice_loss(logits, TARGET_2X2, smooth=0.0).item() == pytest.approx(1 - 3 / 5)
    assert dice_loss(logits, TARGET_2X2, smooth=1.0).item() == pytest.approx(1 - 4 / 6)
    # background too: class 0 has I = 0.5, P = 2, G = 1 -> 1/3; mean with 3/5
    both = dice_loss(logits, TARGET_2X2, smooth=0.0, include_background=True)
    assert both.item() == pytest.approx(1 - (1 / 3 + 3 / 5) / 2)
    assert jaccard_loss(logits, TARGET_2X2, smooth=0.0).item() == pytest.approx(1 - 1.5 / 3.5)
    # Tversky 0.3/0.7: FP = 0.5, FN = 1.5 -> 1.5 / (1.5 + 0.15 + 1.05)
    assert tversky_loss(logits, TARGET_2X2, smooth=0.0).item() == pytest.approx(1 - 1.5 / 2.7)


def test_dice_perfect_and_totally_wrong_predictions():
    target = torch.tensor([[[0, 1], [2, 1]]])
    onehot = F.one_hot(target, 3).permute(0, 3, 1, 2).float()
    perfect = dice_loss(onehot * 40 - 20, target, smooth=1e-6)
    wrong = dice_loss((1 - onehot) * 40 - 20, target, smooth=1e-6)
    assert perfect.item() < 1e-6
    assert wrong.item() > 1 - 1e-6


def test_tversky_half_half_equals_dice():
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 3, 5, 5, generator=gen)
    target = torch.randint(0, 3, (2, 5, 5), generator=gen)
    tversky = create_loss("tversky", alpha=0.5, beta=0.5, smooth=0.0)(logits, target)
    dice = create_loss("dice", smooth=0.0)(logits, target)
    assert torch.allclose(tversky, dice)


def test_binary_one_channel_dice_hand_value():
    # sigmoid(0) = 0.5 at every pixel: the foreground Dice of the 2x2 example, 3/5
    loss = create_loss("dice", smooth=0.0)(torch.zeros(1, 1, 2, 2), TARGET_2X2)
    assert loss.item() == pytest.approx(0.4)


# --- focal / ohem --------------------------------------------------------------------------------


def test_focal_gamma_zero_is_ce_and_hand_value():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 4, 3, 3, generator=gen)
    target = torch.randint(0, 4, (2, 3, 3), generator=gen)
    assert torch.allclose(create_loss("focal", gamma=0.0)(logits, target), F.cross_entropy(logits, target))
    one = _two_class_logits([0.75])
    zero = torch.zeros(1, 1, 1, dtype=torch.long)
    assert create_loss("focal")(one, zero).item() == pytest.approx(0.25**2 * -math.log(0.75))
    # scalar alpha weighs background pixels by 1 - alpha
    assert create_loss("focal", alpha=0.25)(one, zero).item() == pytest.approx(
        0.75 * 0.25**2 * -math.log(0.75)
    )
    per_class = create_loss("focal", gamma=0.0, alpha=[0.5, 2.0])(one, zero)
    assert per_class.item() == pytest.approx(0.5 * -math.log(0.75))


def test_ohem_keeps_only_hard_pixels():
    logits = _two_class_logits([0.9, 0.6, 0.2, 0.8])  # p(target) per pixel; target is class 0
    target = torch.zeros(1, 1, 4, dtype=torch.long)
    loss = create_loss("ohem_ce", thresh=0.7)(logits, target)
    assert loss.item() == pytest.approx((-math.log(0.6) - math.log(0.2)) / 2)
    # min_kept=3 forces the three lowest probabilities in
    loss3 = create_loss("ohem_ce", thresh=0.7, min_kept=3)(logits, target)
    assert loss3.item() == pytest.approx((-math.log(0.6) - math.log(0.2) - math.log(0.8)) / 3)
    # nothing hard and min_kept=0: zero loss, still differentiable
    easy = create_loss("ohem_ce", thresh=0.1)(logits.requires_grad_(), target)
    easy.backward()
    assert easy.item() == 0.0


# --- hybrid ----------------------------------------------------------------------------------------


def test_hybrid_is_weighted_sum():
    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 2, 6, 6, generator=gen)
    target = torch.randint(0, 2, (2, 6, 6), generator=gen)
    hybrid = create_loss("hybrid", losses={"ce": 1.0, "dice": 1.5})
    expected = create_loss("ce")(logits, target) + 1.5 * create_loss("dice")(logits, target)
    assert torch.allclose(hybrid(logits, target), expected)
    focal_tversky = HybridLoss({"focal": 0.5, "tversky": 2.0}, {"tversky": {"alpha": 0.5, "beta": 0.5}})
    expected = 0.5 * create_loss("focal")(logits, target) + 2.0 * create_loss("tversky", alpha=0.5, beta=0.5)(
        logits, target
    )
    assert torch.allclose(focal_tversky(logits, target), expected)
    assert set(focal_tversky.components(logits, target)) == {"focal", "tversky"}


def test_hybrid_bad_config_errors():
    with pytest.raises(ValueError, match="not in losses"):
        HybridLoss({"ce": 1.0}, {"dice": {}})
    with pytest.raises(ValueError, match="finite and >= 0"):
        HybridLoss({"ce": -1.0})
    with pytest.raises(ValueError, match="empty"):
        HybridLoss({})
    with pytest.raises(KeyError, match="dice"):
        HybridLoss({"dicee": 1.0})


def test_hybrid_from_yaml_with_jsonargparse():
    jsonargparse = pytest.importorskip("jsonargparse")
    parser = jsonargparse.ArgumentParser()
    parser.add_argument("--loss", type=torch.nn.Module)
    cfg = parser.parse_string(
        "loss:\n  class_path: models.losses.HybridLoss\n  init_args:\n"
        "    losses: {ce: 1.0, dice: 1.5}\n    loss_kwargs: {dice: {smooth: 0.5}}\n"
    )
    loss = parser.instantiate_classes(cfg).loss
    assert isinstance(loss, HybridLoss)
    assert loss.weights == {"ce": 1.0, "dice": 1.5}
    assert loss.losses["dice"].smooth == 0.5


# --- registry, ignore_index, optimisation --------------------------------------------------------


def test_unknown_loss_name_suggests_close_match():
    with pytest.raises(KeyError, match="did you mean.*'dice'"):
        create_loss("dicee")


@pytest.mark.parametrize("name", list_losses())
def test_ignored_pixels_do_not_contribute(name):
    channels = 1 if name == "bce" else 3
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(2, channels, 4, 4, generator=gen, requires_grad=True)
    target = torch.randint(0, max(channels, 2), (2, 4, 4), generator=gen)
    target[:, :2, :] = 255
    loss_fn = create_loss(name, **_default_kwargs(name))
    loss = loss_fn(logits, target)
    loss.backward()
    assert torch.all(logits.grad[:, :, :2, :] == 0)
    changed = logits.detach().clone()
    changed[:, :, :2, :] = torch.randn(2, channels, 2, 4, generator=gen) * 10
    assert torch.allclose(loss_fn(changed, target), loss)
    all_ignored = loss_fn(logits, torch.full_like(target, 255))
    assert torch.isfinite(all_ignored)


@pytest.mark.parametrize("name", list_losses())
def test_loss_decreases_on_free_logits(name):
    channels = 1 if name == "bce" else 3
    gen = torch.Generator().manual_seed(6)
    logits = torch.zeros(2, channels, 8, 8).normal_(generator=gen).requires_grad_()
    target = torch.randint(0, max(channels, 2), (2, 8, 8), generator=gen)
    loss_fn = create_loss(name, **_default_kwargs(name))
    optimizer = torch.optim.Adam([logits], lr=0.1)
    first = loss_fn(logits, target).item()
    for _ in range(20):
        optimizer.zero_grad()
        loss = loss_fn(logits, target)
        assert torch.isfinite(loss)
        loss.backward()
        optimizer.step()
    assert loss_fn(logits, target).item() < 0.8 * first


@pytest.mark.parametrize("name", ["ce", "dice", "focal", "jaccard", "tversky", "ohem_ce"])
def test_half_precision_logits_are_summed_in_float32(name):
    gen = torch.Generator().manual_seed(9)
    logits = torch.randn(1, 2, 256, 256, generator=gen).bfloat16()
    target = torch.randint(0, 2, (1, 256, 256), generator=gen)
    loss_fn = create_loss(name)
    low = loss_fn(logits, target)
    assert low.dtype == torch.float32
    assert low.item() == pytest.approx(loss_fn(logits.float(), target).item(), rel=1e-5)


def test_bad_shapes_and_labels_raise():
    with pytest.raises(ValueError, match="target"):
        create_loss("dice")(torch.zeros(1, 2, 2, 2), torch.zeros(1, 3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        create_loss("ce")(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match=r"\[5\]"):
        create_loss("focal")(torch.zeros(1, 3, 2, 2), torch.full((1, 2, 2), 5))
    with pytest.raises(ValueError, match="2 class weights for 3 classes"):
        create_loss("ce", weight=[1.0, 2.0])(torch.zeros(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))


# --- deep supervision ----------------------------------------------------------------------------


def test_deep_supervision_averages_and_upsamples():
    gen = torch.Generator().manual_seed(7)
    main = torch.randn(1, 2, 4, 4, generator=gen)
    aux = torch.randn(1, 2, 2, 2, generator=gen)
    target = torch.randint(0, 2, (1, 4, 4), generator=gen)
    ce = create_loss("ce")
    up = F.interpolate(aux, size=(4, 4), mode="bilinear", align_corners=False)
    l_main, l_aux = ce(main, target), ce(up, target)
    assert torch.allclose(apply_loss(ce, [main, aux], target), (l_main + l_aux) / 2)
    weighted = DeepSupervisionLoss(ce, weights=[3.0, 1.0])([main, aux], target)
    assert torch.allclose(weighted, (3 * l_main + l_aux) / 4)
    assert torch.allclose(DeepSupervisionLoss(ce)(main, target), l_main)
    with pytest.raises(ValueError, match="empty"):
        apply_loss(ce, [], target)
    with pytest.raises(ValueError, match="1 weights for 2 outputs"):
        apply_loss(ce, [main, aux], target, weights=[1.0])


# --- distillation ----------------------------------------------------------------------------------


def test_kd_kl_zero_when_equal_and_hand_value_scales_with_t2():
    gen = torch.Generator().manual_seed(8)
    logits = torch.randn(2, 3, 4, 4, generator=gen)
    assert DistillationLoss("kl", 4.0)(logits, logits.clone()).item() == pytest.approx(0.0, abs=1e-6)
    kl_hand = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    for temperature in (1.0, 2.0, 4.0):
        student = torch.zeros(1, 2, 1, 1)
        teacher = torch.tensor([math.log(3.0), 0.0]).view(1, 2, 1, 1) * temperature  # softened: 0.75/0.25
        value = DistillationLoss("kl", temperature)(student, teacher).item()
        assert value == pytest.approx(kl_hand * temperature**2, rel=1e-5)
    # two pixels, only one differs: per-pixel mean halves the value
    student = torch.zeros(1, 2, 1, 2)
    teacher = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]]).T.reshape(1, 2, 1, 2)
    assert DistillationLoss("kl", 1.0)(student, teacher).item() == pytest.approx(kl_hand / 2, rel=1e-5)


def test_kd_mse_teacher_detached_and_errors():
    student = torch.zeros(1, 2, 2, 2, requires_grad=True)
    teacher = torch.ones(1, 2, 2, 2, requires_grad=True)
    loss = DistillationLoss("mse")(student, teacher)
    assert loss.item() == pytest.approx(1.0)
    loss.backward()
    assert teacher.grad is None and student.grad is not None
    binary = DistillationLoss("kl", 1.0)(torch.zeros(1, 1, 1, 1), torch.full((1, 1, 1, 1), math.log(3.0)))
    assert binary.item() == pytest.approx(0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5), rel=1e-5)
    with pytest.raises(ValueError, match="same"):
        DistillationLoss()(torch.zeros(1, 2, 2, 2), torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match="mode"):
        DistillationLoss("l1")
    with pytest.raises(ValueError, match="temperature"):
        DistillationLoss("kl", 0.0)
