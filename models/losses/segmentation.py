"""Pixel-wise segmentation losses as plain functions, each wrapped by a thin registered module.

Shape conventions (see ``models.losses``): ``logits [B, C, *spatial]``, ``target [B, *spatial]``
integer. A binary problem (``C == 1``, sigmoid) is handled by viewing its logit ``z`` as the
two-class logits ``[0, z]``: ``softmax([0, z]) = [1 - sigmoid(z), sigmoid(z)]``, so every loss
below has one code path, and "background" is channel 0 in both cases.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models.losses import register_loss


def _check_shapes(logits: torch.Tensor, target: torch.Tensor, loss_name: str) -> None:
    if logits.ndim < 3 or target.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(
            f"{loss_name}: expected logits [B, C, *spatial] and target [B, *spatial], got logits "
            f"{tuple(logits.shape)} and target {tuple(target.shape)}"
        )
    if target.is_floating_point():
        raise ValueError(f"{loss_name}: target must hold integer class indices, got dtype {target.dtype}")


def _as_class_logits(logits: torch.Tensor) -> torch.Tensor:
    """Return float32+ logits with >= 2 channels; a single sigmoid channel ``z`` becomes ``[0, z]``."""
    if logits.dtype in (torch.float16, torch.bfloat16):
        # Sums over millions of pixels lose too much precision in half types.
        logits = logits.float()
    if logits.shape[1] == 1:
        return torch.cat([torch.zeros_like(logits), logits], dim=1)
    return logits


def _valid_target(target: torch.Tensor, num_classes: int, ignore_index: int, loss_name: str):
    """Return ``(valid_mask, safe_target)``; ignored pixels are mapped to class 0 in ``safe_target``."""
    valid = target != ignore_index
    bad = valid & ((target < 0) | (target >= num_classes))
    if bad.any():
        values = torch.unique(target[bad]).tolist()[:10]
        raise ValueError(
            f"{loss_name}: target values {values} are outside [0, {num_classes}) and are not "
            f"ignore_index={ignore_index}"
        )
    return valid, torch.where(valid, target, torch.zeros_like(target))


def _weight_vector(weight: Sequence[float] | None, name: str) -> torch.Tensor | None:
    if weight is None:
        return None
    vector = torch.as_tensor([float(w) for w in weight], dtype=torch.float32)
    if vector.ndim != 1 or (vector < 0).any():
        raise ValueError(f"{name}: class weights must be a flat list of non-negative numbers, got {weight}")
    return vector


def _check_weight_length(weight: torch.Tensor | None, num_classes: int, loss_name: str) -> None:
    if weight is not None and weight.numel() != num_classes:
        raise ValueError(
            f"{loss_name}: got {weight.numel()} class weights for {num_classes} classes "
            "(a binary C == 1 model has 2 classes: background, foreground)"
        )


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
    _check_shapes(logits, target, "ce")
    class_logits = _as_class_logits(logits)
    valid, _ = _valid_target(target, class_logits.shape[1], ignore_index, "ce")
    _check_weight_length(weight, class_logits.shape[1], "ce")
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
    _check_shapes(logits, target, "bce")
    if logits.shape[1] != 1:
        raise ValueError(
            f"bce: expects 1 logit channel (sigmoid), got C={logits.shape[1]}; use 'ce' for C >= 2"
        )
    valid, safe = _valid_target(target, 2, ignore_index, "bce")
    if not valid.any():
        return logits.sum() * 0.0
    foreground = _as_class_logits(logits)[:, 1]
    pw = None if pos_weight is None else foreground.new_tensor(float(pos_weight))
    per_pixel = F.binary_cross_entropy_with_logits(
        foreground, safe.to(foreground.dtype), pos_weight=pw, reduction="none"
    )
    return (per_pixel * valid).sum() / valid.sum()


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
    class_logits = _as_class_logits(logits)
    num_classes = class_logits.shape[1]
    valid, safe = _valid_target(target, num_classes, ignore_index, "soft overlap")
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
    _check_shapes(logits, target, "dice")
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
    _check_shapes(logits, target, "tversky")
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
    _check_shapes(logits, target, "jaccard")
    inter, psum, gsum = soft_overlap(logits, target, ignore_index)
    score = _ratio(inter + smooth, psum + gsum - inter + smooth)
    return 1.0 - _drop_background(score, include_background).mean()


def _target_log_prob(logits: torch.Tensor, target: torch.Tensor, ignore_index: int, loss_name: str):
    """Return ``(log p_target [B, *spatial], valid mask, safe target)`` for softmax/sigmoid logits."""
    _check_shapes(logits, target, loss_name)
    class_logits = _as_class_logits(logits)
    valid, safe = _valid_target(target, class_logits.shape[1], ignore_index, loss_name)
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
        _check_weight_length(alpha, max(logits.shape[1], 2), "focal")
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
        _check_weight_length(weight, max(logits.shape[1], 2), "ohem_ce")
        pixel_weight = pixel_weight * weight.to(device=logits.device, dtype=log_pt.dtype)[safe.long()]
    denominator = pixel_weight.sum()
    if denominator <= 0:
        return logits.sum() * 0.0
    return -(pixel_weight * log_pt).sum() / denominator


@register_loss("ce")
class CrossEntropyLoss(nn.Module):
    """Cross-entropy; see :func:`cross_entropy_loss`.

    Args:
        weight: Optional per-class weights, e.g. ``[0.05, 1.0]``.
        ignore_index: Target value whose pixels are skipped.
        label_smoothing: Uniform label smoothing in ``[0, 1)``.
    """

    def __init__(
        self, weight: list[float] | None = None, ignore_index: int = 255, label_smoothing: float = 0.0
    ) -> None:
        super().__init__()
        self.register_buffer("weight", _weight_vector(weight, "ce"), persistent=False)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the scalar loss."""
        return cross_entropy_loss(logits, target, self.weight, self.ignore_index, self.label_smoothing)


@register_loss("bce")
class BCELoss(nn.Module):
    """Sigmoid binary cross-entropy for ``C == 1``; see :func:`binary_cross_entropy_loss`."""

    def __init__(self, pos_weight: float | None = None, ignore_index: int = 255) -> None:
        super().__init__()
        self.pos_weight = pos_weight
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the scalar loss."""
        return binary_cross_entropy_loss(logits, target, self.pos_weight, self.ignore_index)


@register_loss("dice")
class DiceLoss(nn.Module):
    """Soft Dice loss; see :func:`dice_loss` for the arguments."""

    def __init__(
        self,
        include_background: bool = False,
        smooth: float = 1.0,
        squared: bool = False,
        batch_dice: bool = True,
        ignore_index: int = 255,
    ) -> None:
        super().__init__()
        self.include_background = include_background
        self.smooth = smooth
        self.squared = squared
        self.batch_dice = batch_dice
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the scalar loss."""
        return dice_loss(
            logits,
            target,
            self.include_background,
            self.smooth,
            self.squared,
            self.batch_dice,
            self.ignore_index,
        )


@register_loss("focal")
class FocalLoss(nn.Module):
    """Focal loss; see :func:`focal_loss`. ``alpha`` may be a float or a per-class list."""

    def __init__(
        self, gamma: float = 2.0, alpha: float | list[float] | None = None, ignore_index: int = 255
    ) -> None:
        super().__init__()
        self.gamma = gamma
        if alpha is None or isinstance(alpha, float | int):
            if alpha is not None and not 0.0 <= alpha <= 1.0:
                raise ValueError(f"focal: a scalar alpha must lie in [0, 1], got {alpha}")
            self.alpha = None if alpha is None else float(alpha)
            alpha_vector = None
        else:
            self.alpha = None
            alpha_vector = _weight_vector(alpha, "focal")
        self.register_buffer("alpha_vector", alpha_vector, persistent=False)
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the scalar loss."""
        alpha = self.alpha_vector if self.alpha_vector is not None else self.alpha
        return focal_loss(logits, target, self.gamma, alpha, self.ignore_index)


@register_loss("tversky")
class TverskyLoss(nn.Module):
    """(Focal) Tversky loss; see :func:`tversky_loss` for the arguments."""

    def __init__(
        self,
        alpha: float = 0.3,
        beta: float = 0.7,
        gamma: float = 1.0,
        include_background: bool = False,
        smooth: float = 1.0,
        ignore_index: int = 255,
    ) -> None:
        super().__init__()
        self.alpha, self.beta, self.gamma = alpha, beta, gamma
        self.include_background = include_background
        self.smooth = smooth
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the scalar loss."""
        return tversky_loss(
            logits,
            target,
            self.alpha,
            self.beta,
            self.gamma,
            self.include_background,
            self.smooth,
            self.ignore_index,
        )


@register_loss("jaccard")
class JaccardLoss(nn.Module):
    """Soft Jaccard (IoU) loss; see :func:`jaccard_loss` for the arguments."""

    def __init__(
        self, include_background: bool = False, smooth: float = 1.0, ignore_index: int = 255
    ) -> None:
        super().__init__()
        self.include_background = include_background
        self.smooth = smooth
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the scalar loss."""
        return jaccard_loss(logits, target, self.include_background, self.smooth, self.ignore_index)


@register_loss("ohem_ce")
class OhemCrossEntropyLoss(nn.Module):
    """OHEM cross-entropy; see :func:`ohem_cross_entropy_loss` for the arguments."""

    def __init__(
        self,
        thresh: float = 0.7,
        min_kept: int = 0,
        weight: list[float] | None = None,
        ignore_index: int = 255,
    ) -> None:
        super().__init__()
        if not 0.0 < thresh <= 1.0 or min_kept < 0:
            raise ValueError(f"ohem_ce: need 0 < thresh <= 1 and min_kept >= 0, got {thresh}, {min_kept}")
        self.thresh = thresh
        self.min_kept = min_kept
        self.register_buffer("weight", _weight_vector(weight, "ohem_ce"), persistent=False)
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the scalar loss."""
        return ohem_cross_entropy_loss(
            logits, target, self.thresh, self.min_kept, self.weight, self.ignore_index
        )
