"""Loss functions of the noisy-label methods: class-balanced CE, JoCoR joint loss, Co-teaching.

All losses take probabilities (softmax outputs, possibly superpixel-averaged) and return per-pixel
values, so that small-loss selection can act on them before reduction.
"""

from __future__ import annotations

import torch
from torch import Tensor

EPS = 1e-7


def class_balance_weights(labels: Tensor, num_classes: int) -> Tensor:
    """Inverse-frequency class weights of a batch, normalised so the mean pixel weight is 1.

    ``w_c = N / (K * n_c)`` for the ``K`` classes present (``n_c`` pixels of class ``c`` among ``N``);
    absent classes get 0 (they have no pixels to weigh).

    Args:
        labels: Integer labels ``[B, H, W]``.
        num_classes: Number of classes.

    Returns:
        float ``[num_classes]`` on the labels' device.
    """
    counts = torch.bincount(labels.reshape(-1).long(), minlength=num_classes)[:num_classes].float()
    present = counts > 0
    weights = torch.zeros(num_classes, device=labels.device)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


def pixel_cross_entropy(probs: Tensor, labels: Tensor, class_weights: Tensor | None = None) -> Tensor:
    """Per-pixel ``-w_y log p_y`` from probabilities.

    Shape:
        probs ``[B, C, H, W]``, labels ``[B, H, W]`` -> ``[B, H, W]``.
    """
    picked = probs.gather(1, labels.long().unsqueeze(1)).squeeze(1)
    loss = -torch.log(picked.clamp_min(EPS))
    if class_weights is not None:
        loss = loss * class_weights.to(loss.dtype)[labels.long()]
    return loss


def pixel_kl(p: Tensor, q: Tensor) -> Tensor:
    """Per-pixel ``KL(p || q) = sum_c p_c (log p_c - log q_c)``.

    Shape:
        p, q ``[B, C, H, W]`` -> ``[B, H, W]``.
    """
    p_safe, q_safe = p.clamp_min(EPS), q.clamp_min(EPS)
    return (p * (torch.log(p_safe) - torch.log(q_safe))).sum(1)


def jocor_pixel_loss(
    probs1: Tensor, probs2: Tensor, labels: Tensor, lam: float = 0.65, class_weights: Tensor | None = None
) -> Tensor:
    """JoCoR joint loss per pixel: ``(1 - lam)(CE1 + CE2) + lam (KL(p1||p2) + KL(p2||p1))``.

    Args:
        probs1: Probabilities of network 1 ``[B, C, H, W]``.
        probs2: Probabilities of network 2.
        labels: Noisy labels ``[B, H, W]``.
        lam: Weight of the co-regularisation (agreement) term.
        class_weights: Optional ``[C]`` weights of the CE terms (class balancing).

    Returns:
        ``[B, H, W]`` losses.
    """
    ce = pixel_cross_entropy(probs1, labels, class_weights) + pixel_cross_entropy(
        probs2, labels, class_weights
    )
    kl = pixel_kl(probs1, probs2) + pixel_kl(probs2, probs1)
    return (1.0 - lam) * ce + lam * kl


def masked_mean(losses: Tensor, selected: Tensor) -> Tensor:
    """Mean of ``losses`` over ``selected`` pixels (0, attached to the graph, if none)."""
    count = selected.sum()
    if int(count) == 0:
        return losses.sum() * 0.0
    return (losses * selected).sum() / count


def coteaching_losses(
    ce1: Tensor, ce2: Tensor, selected_by_1: Tensor, selected_by_2: Tensor
) -> tuple[Tensor, Tensor]:
    """Co-teaching cross update: each network learns on the pixels its PEER found small-loss.

    Args:
        ce1: Per-pixel loss of network 1.
        ce2: Per-pixel loss of network 2.
        selected_by_1: Small-loss pixels according to network 1.
        selected_by_2: Small-loss pixels according to network 2.

    Returns:
        ``(loss of network 1, loss of network 2)``.
    """
    return masked_mean(ce1, selected_by_2), masked_mean(ce2, selected_by_1)


def loss_gap(losses: Tensor, selected: Tensor) -> Tensor:
    """Mean loss of unselected minus selected pixels (0 when either set is empty); no gradient."""
    losses = losses.detach()
    n_sel, n_un = selected.sum(), (~selected).sum()
    if int(n_sel) == 0 or int(n_un) == 0:
        return losses.new_zeros(())
    return losses[~selected].mean() - losses[selected].mean()
