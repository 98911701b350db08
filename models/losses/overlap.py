"""Region-overlap losses (soft Dice, Tversky, Jaccard) as plain functions plus registered modules.

Shape conventions (see ``models.losses``): ``logits [B, C, *spatial]``, ``target [B, *spatial]``
integer. ``C == 1`` is a sigmoid problem viewed as two-class logits (see ``_checks``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from models.losses._base import FunctionalLoss, init_arguments
from models.losses._checks import as_class_logits, check_shapes, valid_target
from models.losses.registry import register_loss


def soft_overlap(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int = 255,
    squared: bool = False,
    batch: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Soft intersection and sums of probabilities and one-hot target, per class.

    Args:
        logits: ``[B, C, *spatial]`` (``C == 1`` becomes 2 classes, see module docstring).
        target: ``[B, *spatial]`` class indices.
        ignore_index: Target value whose pixels are excluded from every sum.
        squared: Sum squared probabilities / targets in the denominators (V-Net style).
        batch: Sum over the batch too (shape ``[C]``) instead of per image (``[B, C]``).

    Returns:
        ``(intersection, prob_sum, target_sum)``, each ``[C]`` or ``[B, C]`` with ``C >= 2``.
    """
    class_logits = as_class_logits(logits)
    num_classes = class_logits.shape[1]
    valid, safe = valid_target(target, num_classes, ignore_index, "soft overlap")
    mask = valid.unsqueeze(1).to(class_logits.dtype)
    probs = class_logits.softmax(dim=1) * mask
    onehot = F.one_hot(safe.long(), num_classes).movedim(-1, 1).to(class_logits.dtype) * mask
    dims = (0, *range(2, logits.ndim)) if batch else tuple(range(2, logits.ndim))
    intersection = (probs * onehot).sum(dims)
    if squared:
        return intersection, (probs * probs).sum(dims), (onehot * onehot).sum(dims)
    return intersection, probs.sum(dims), onehot.sum(dims)


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """Elementwise ratio that is 1 where the denominator is 0 (a class absent and not predicted)."""
    safe = torch.where(denominator > 0, denominator, torch.ones_like(denominator))
    return torch.where(denominator > 0, numerator / safe, torch.ones_like(denominator))


def _drop_background(score: torch.Tensor, include_background: bool) -> torch.Tensor:
    return score if include_background else score[..., 1:]


def dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    include_background: bool = False,
    smooth: float = 1.0,
    squared: bool = False,
    batch_dice: bool = True,
    ignore_index: int = 255,
) -> torch.Tensor:
    """Soft Dice loss ``1 - mean_c (2 I_c + s) / (P_c + G_c + s)``.

    A class absent from the target contributes ``P / (P + s)`` (P = its predicted mass), so with
    the default ``s = 1`` false positives are penalised without absent classes dominating.

    Args:
        logits: ``[B, C, *spatial]``; ``C == 1`` is sigmoid (Dice of the foreground).
        target: ``[B, *spatial]`` class indices.
        include_background: Keep class 0 in the mean.
        smooth: Additive smoothing ``s`` in numerator and denominator.
        squared: Use squared sums in the denominator.
        batch_dice: Pool the batch before the ratio (stabler) instead of averaging per image.
        ignore_index: Target value whose pixels are excluded.

    Returns:
        Scalar loss in ``[0, 1]``.
    """
    check_shapes(logits, target, "dice")
    inter, psum, gsum = soft_overlap(logits, target, ignore_index, squared, batch_dice)
    score = _ratio(2 * inter + smooth, psum + gsum + smooth)
    return 1.0 - _drop_background(score, include_background).mean()


def tversky_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    alpha: float = 0.3,
    beta: float = 0.7,
    gamma: float = 1.0,
    include_background: bool = False,
    smooth: float = 1.0,
    ignore_index: int = 255,
) -> torch.Tensor:
    """(Focal) Tversky loss ``mean_c (1 - TI_c) ** gamma`` with ``TI = (I + s) / (I + a FP + b FN + s)``.

    ``alpha`` weighs false positives, ``beta`` false negatives; ``alpha = beta = 0.5`` with
    ``smooth = 0`` equals soft Dice.

    Args:
        logits: ``[B, C, *spatial]``; ``C == 1`` is sigmoid.
        target: ``[B, *spatial]`` class indices.
        alpha: False-positive weight.
        beta: False-negative weight.
        gamma: Focal exponent on ``1 - TI`` (1 = plain Tversky).
        include_background: Keep class 0 in the mean.
        smooth: Additive smoothing.
        ignore_index: Target value whose pixels are excluded.

    Returns:
        Scalar loss.
    """
    check_shapes(logits, target, "tversky")
    inter, psum, gsum = soft_overlap(logits, target, ignore_index)
    false_pos, false_neg = psum - inter, gsum - inter
    index = _ratio(inter + smooth, inter + alpha * false_pos + beta * false_neg + smooth)
    return (1.0 - _drop_background(index, include_background)).clamp_min(0).pow(gamma).mean()


def jaccard_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    include_background: bool = False,
    smooth: float = 1.0,
    ignore_index: int = 255,
) -> torch.Tensor:
    """Soft Jaccard (IoU) loss ``1 - mean_c (I + s) / (P + G - I + s)``, batch pooled.

    Args:
        logits: ``[B, C, *spatial]``; ``C == 1`` is sigmoid.
        target: ``[B, *spatial]`` class indices.
        include_background: Keep class 0 in the mean.
        smooth: Additive smoothing.
        ignore_index: Target value whose pixels are excluded.

    Returns:
        Scalar loss in ``[0, 1]``.
    """
    check_shapes(logits, target, "jaccard")
    inter, psum, gsum = soft_overlap(logits, target, ignore_index)
    score = _ratio(inter + smooth, psum + gsum - inter + smooth)
    return 1.0 - _drop_background(score, include_background).mean()


@register_loss("dice")
class DiceLoss(FunctionalLoss):
    """Soft Dice loss; see :func:`dice_loss` for the arguments."""

    loss_fn = staticmethod(dice_loss)

    def __init__(
        self,
        include_background: bool = False,
        smooth: float = 1.0,
        squared: bool = False,
        batch_dice: bool = True,
        ignore_index: int = 255,
    ) -> None:
        super().__init__(**init_arguments(locals()))


@register_loss("tversky")
class TverskyLoss(FunctionalLoss):
    """(Focal) Tversky loss; see :func:`tversky_loss` for the arguments."""

    loss_fn = staticmethod(tversky_loss)

    def __init__(
        self,
        alpha: float = 0.3,
        beta: float = 0.7,
        gamma: float = 1.0,
        include_background: bool = False,
        smooth: float = 1.0,
        ignore_index: int = 255,
    ) -> None:
        super().__init__(**init_arguments(locals()))


@register_loss("jaccard")
class JaccardLoss(FunctionalLoss):
    """Soft Jaccard (IoU) loss; see :func:`jaccard_loss` for the arguments."""

    loss_fn = staticmethod(jaccard_loss)

    def __init__(
        self, include_background: bool = False, smooth: float = 1.0, ignore_index: int = 255
    ) -> None:
        super().__init__(**init_arguments(locals()))
