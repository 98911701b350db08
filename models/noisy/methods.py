"""The noisy-label training methods as a registry: how many peers each trains and its loss.

Every method's loss is a plain function of :class:`LossInputs` returning ``(loss, gap)``: the scalar
to minimise and the loss gap (mean loss of the unselected minus the selected pixels) that triggers
label refinement; methods without selection report a gap of 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from torch import Tensor

from core.registry import Registry
from models.noisy.jocor import coteaching_losses, jocor_pixel_loss, loss_gap, masked_mean, pixel_cross_entropy
from models.noisy.superpixel_ops import select_small_loss, superpixel_mean


@dataclass(frozen=True)
class LossInputs:
    """What a method's loss sees for one batch.

    Attributes:
        probs: Softmax outputs of the peers, each ``[B, C, H, W]``.
        labels: (Refined) noisy labels ``[B, H, W]``.
        weights: Class weights ``[C]`` for the CE terms, or None.
        rates: Keep rate per class at the current epoch.
        lam: JoCoR co-regularisation weight.
        superpixels: Superpixel maps ``[B, H, W]`` (None when the batch has none).
    """

    probs: list[Tensor]
    labels: Tensor
    weights: Tensor | None
    rates: list[float]
    lam: float
    superpixels: Tensor | None = None


@dataclass(frozen=True)
class NoisyMethod:
    """A registered method: number of peer networks, whether it needs superpixels, and its loss."""

    networks: int
    needs_superpixels: bool
    loss: Callable[[LossInputs], tuple[Tensor, Tensor]]


def plain_loss(x: LossInputs) -> tuple[Tensor, Tensor]:
    """(Class-balanced) cross-entropy of one network on all pixels; gap 0."""
    ce = pixel_cross_entropy(x.probs[0], x.labels, x.weights)
    return ce.mean(), ce.new_zeros(())


def coteaching_loss(x: LossInputs) -> tuple[Tensor, Tensor]:
    """Each peer selects its small-loss pixels per class; the other peer learns on them."""
    ce1, ce2 = (pixel_cross_entropy(p, x.labels, x.weights) for p in x.probs)
    sel1, sel2 = select_small_loss(ce1, x.labels, x.rates), select_small_loss(ce2, x.labels, x.rates)
    loss1, loss2 = coteaching_losses(ce1, ce2, sel1, sel2)
    return loss1 + loss2, loss_gap(ce1, sel1)


def jocor_loss(x: LossInputs) -> tuple[Tensor, Tensor]:
    """JoCoR joint loss per pixel, one joint small-loss selection per class."""
    joint = jocor_pixel_loss(x.probs[0], x.probs[1], x.labels, x.lam, x.weights)
    selected = select_small_loss(joint, x.labels, x.rates)
    return masked_mean(joint, selected), loss_gap(joint, selected)


def jocor_superpixel_loss(x: LossInputs) -> tuple[Tensor, Tensor]:
    """JoCoR on probabilities averaged within superpixels (the MICCAI 2021 method).

    Raises:
        KeyError: When the batch has no superpixel maps.
    """
    if x.superpixels is None:
        raise KeyError("method 'jocor_sp' needs batch['superpixels']: set data.superpixels (cpu or cache)")
    return jocor_loss(replace(x, probs=[superpixel_mean(p, x.superpixels) for p in x.probs]))


NOISY_METHODS: Registry[NoisyMethod] = Registry("noisy method")
NOISY_METHODS.register("plain", NoisyMethod(1, False, plain_loss))
NOISY_METHODS.register("coteaching", NoisyMethod(2, False, coteaching_loss))
NOISY_METHODS.register("jocor", NoisyMethod(2, False, jocor_loss))
NOISY_METHODS.register("jocor_sp", NoisyMethod(2, True, jocor_superpixel_loss))
METHODS = ("plain", "coteaching", "jocor", "jocor_sp")
