"""Pixel-wise losses (CE, BCE, focal, OHEM CE) as plain functions plus thin registered modules.

Shape conventions (see ``models.losses``): ``logits [B, C, *spatial]``, ``target [B, *spatial]``
integer. ``C == 1`` is a sigmoid problem viewed as two-class logits (see ``_checks``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from models.losses._base import FunctionalLoss, init_arguments
from models.losses._checks import (
    as_class_logits,
    check_shapes,
    check_weight_length,
    valid_target,
    weight_vector,
)
from models.losses.registry import register_loss


def cross_entropy_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    ignore_index: int = 255,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Mean pixel cross-entropy over non-ignored pixels (torch's weighted-mean convention).

    Args:
        logits: ``[B, C, *spatial]``; ``C == 1`` is treated as sigmoid (equals BCE).
        target: ``[B, *spatial]`` class indices.
        weight: Optional ``[C]`` class weights (2 entries when ``C == 1``).
        ignore_index: Target value whose pixels are skipped.
        label_smoothing: Amount of uniform label smoothing in ``[0, 1)``.

    Returns:
        Scalar loss; 0 (still attached to the graph) when every pixel is ignored.
    """
    check_shapes(logits, target, "ce")
    class_logits = as_class_logits(logits)
    valid, _ = valid_target(target, class_logits.shape[1], ignore_index, "ce")
    check_weight_length(weight, class_logits.shape[1], "ce")
    if not valid.any():
        return logits.sum() * 0.0
    if weight is not None:
        weight = weight.to(device=logits.device, dtype=class_logits.dtype)
    return F.cross_entropy(
        class_logits, target.long(), weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing
    )


def binary_cross_entropy_loss(
    logits: torch.Tensor, target: torch.Tensor, pos_weight: float | None = None, ignore_index: int = 255
) -> torch.Tensor:
    """Mean sigmoid binary cross-entropy over non-ignored pixels.

    Args:
        logits: ``[B, 1, *spatial]``.
        target: ``[B, *spatial]`` with values in ``{0, 1}`` (or ``ignore_index``).
        pos_weight: Optional weight of the positive term (as in ``BCEWithLogitsLoss``).
        ignore_index: Target value whose pixels are skipped.

    Returns:
        Scalar loss; 0 (still attached to the graph) when every pixel is ignored.

    Raises:
        ValueError: If ``C != 1`` or the target holds values other than 0, 1 and ``ignore_index``.
    """
    check_shapes(logits, target, "bce")
    if logits.shape[1] != 1:
        raise ValueError(
            f"bce: expects 1 logit channel (sigmoid), got C={logits.shape[1]}; use 'ce' for C >= 2"
        )
    valid, safe = valid_target(target, 2, ignore_index, "bce")
    if not valid.any():
        return logits.sum() * 0.0
    foreground = as_class_logits(logits)[:, 1]
    pw = None if pos_weight is None else foreground.new_tensor(float(pos_weight))
    per_pixel = F.binary_cross_entropy_with_logits(
        foreground, safe.to(foreground.dtype), pos_weight=pw, reduction="none"
    )
    return (per_pixel * valid).sum() / valid.sum()


def _target_log_prob(logits: torch.Tensor, target: torch.Tensor, ignore_index: int, loss_name: str):
    """Return ``(log p_target [B, *spatial], valid mask, safe target)`` for softmax/sigmoid logits."""
    check_shapes(logits, target, loss_name)
    class_logits = as_class_logits(logits)
    valid, safe = valid_target(target, class_logits.shape[1], ignore_index, loss_name)
    log_probs = class_logits.log_softmax(dim=1)
    return log_probs.gather(1, safe.long().unsqueeze(1)).squeeze(1), valid, safe


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    gamma: float = 2.0,
    alpha: float | torch.Tensor | None = None,
    ignore_index: int = 255,
) -> torch.Tensor:
    """Focal loss ``-alpha_t (1 - p_t) ** gamma log p_t``, mean over non-ignored pixels.

    With ``gamma = 0`` and ``alpha = None`` it equals cross-entropy.

    Args:
        logits: ``[B, C, *spatial]``; ``C == 1`` is sigmoid focal loss.
        target: ``[B, *spatial]`` class indices.
        gamma: Focusing exponent.
        alpha: None (no weighting); a float: weight ``alpha`` for foreground pixels (target != 0)
            and ``1 - alpha`` for background; or a ``[C]`` tensor of per-class weights (2 when C == 1).
        ignore_index: Target value whose pixels are skipped.

    Returns:
        Scalar loss; 0 (attached to the graph) when every pixel is ignored.
    """
    log_pt, valid, safe = _target_log_prob(logits, target, ignore_index, "focal")
    per_pixel = -((1.0 - log_pt.exp()).clamp_min(0) ** gamma) * log_pt
    if isinstance(alpha, torch.Tensor):
        check_weight_length(alpha, max(logits.shape[1], 2), "focal")
        per_pixel = per_pixel * alpha.to(device=logits.device, dtype=log_pt.dtype)[safe.long()]
    elif alpha is not None:
        per_pixel = per_pixel * torch.where(safe != 0, alpha, 1.0 - alpha).to(log_pt.dtype)
    if not valid.any():
        return logits.sum() * 0.0
    return (per_pixel * valid).sum() / valid.sum()


def ohem_cross_entropy_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    thresh: float = 0.7,
    min_kept: int = 0,
    weight: torch.Tensor | None = None,
    ignore_index: int = 255,
) -> torch.Tensor:
    """Online hard example mining CE: average CE over pixels whose target probability is low.

    A pixel is kept when its predicted probability of the true class is ``<= thresh``. When fewer
    than ``min_kept`` pixels qualify, the ``min_kept`` lowest-probability pixels are kept instead.

    Args:
        logits: ``[B, C, *spatial]``; ``C == 1`` is sigmoid.
        target: ``[B, *spatial]`` class indices.
        thresh: Probability threshold in ``(0, 1]``.
        min_kept: Minimum number of kept pixels per batch.
        weight: Optional ``[C]`` class weights (weighted mean over kept pixels).
        ignore_index: Target value whose pixels are never kept.

    Returns:
        Scalar loss; 0 (attached to the graph) when nothing is kept.
    """
    log_pt, valid, safe = _target_log_prob(logits, target, ignore_index, "ohem_ce")
    with torch.no_grad():
        prob = torch.where(valid, log_pt.exp(), torch.full_like(log_pt, 2.0))  # 2 > any prob: never kept
        threshold = torch.as_tensor(float(thresh), device=prob.device, dtype=prob.dtype)
        num_valid = int(valid.sum())
        k = min(int(min_kept), num_valid)
        if k > 0:
            threshold = torch.maximum(threshold, prob.flatten().kthvalue(k).values)
        keep = valid & (prob <= threshold)
    pixel_weight = keep.to(log_pt.dtype)
    if weight is not None:
        check_weight_length(weight, max(logits.shape[1], 2), "ohem_ce")
        pixel_weight = pixel_weight * weight.to(device=logits.device, dtype=log_pt.dtype)[safe.long()]
    denominator = pixel_weight.sum()
    if denominator <= 0:
        return logits.sum() * 0.0
    return -(pixel_weight * log_pt).sum() / denominator


@register_loss("ce")
class CrossEntropyLoss(FunctionalLoss):
    """Cross-entropy; see :func:`cross_entropy_loss`.

    Args:
        weight: Optional per-class weights, e.g. ``[0.05, 1.0]``.
        ignore_index: Target value whose pixels are skipped.
        label_smoothing: Uniform label smoothing in ``[0, 1)``.
    """

    loss_fn = staticmethod(cross_entropy_loss)

    def __init__(
        self, weight: list[float] | None = None, ignore_index: int = 255, label_smoothing: float = 0.0
    ) -> None:
        super().__init__(
            weight=weight_vector(weight, "ce"), ignore_index=ignore_index, label_smoothing=label_smoothing
        )


@register_loss("bce")
class BCELoss(FunctionalLoss):
    """Sigmoid binary cross-entropy for ``C == 1``; see :func:`binary_cross_entropy_loss`."""

    loss_fn = staticmethod(binary_cross_entropy_loss)

    def __init__(self, pos_weight: float | None = None, ignore_index: int = 255) -> None:
        super().__init__(**init_arguments(locals()))


@register_loss("focal")
class FocalLoss(FunctionalLoss):
    """Focal loss; see :func:`focal_loss`. ``alpha`` may be a float or a per-class list."""

    loss_fn = staticmethod(focal_loss)

    def __init__(
        self, gamma: float = 2.0, alpha: float | list[float] | None = None, ignore_index: int = 255
    ) -> None:
        if isinstance(alpha, float | int):
            if not 0.0 <= alpha <= 1.0:
                raise ValueError(f"focal: a scalar alpha must lie in [0, 1], got {alpha}")
            alpha = float(alpha)
        elif alpha is not None:
            alpha = weight_vector(alpha, "focal")
        super().__init__(gamma=gamma, alpha=alpha, ignore_index=ignore_index)


@register_loss("ohem_ce")
class OhemCrossEntropyLoss(FunctionalLoss):
    """OHEM cross-entropy; see :func:`ohem_cross_entropy_loss` for the arguments."""

    loss_fn = staticmethod(ohem_cross_entropy_loss)

    def __init__(
        self,
        thresh: float = 0.7,
        min_kept: int = 0,
        weight: list[float] | None = None,
        ignore_index: int = 255,
    ) -> None:
        if not 0.0 < thresh <= 1.0 or min_kept < 0:
            raise ValueError(f"ohem_ce: need 0 < thresh <= 1 and min_kept >= 0, got {thresh}, {min_kept}")
        super().__init__(
            thresh=thresh,
            min_kept=min_kept,
            weight=weight_vector(weight, "ohem_ce"),
            ignore_index=ignore_index,
        )
