"""Segmentation metrics as plain functions (MONAI-style ``confusion counts -> compute_*`` pairs).

Predictions and targets are integer label maps of the same shape (``[H, W]`` or ``[B, H, W]``),
compared at the resolution the caller gives (use the original mask resolution for test metrics).
``num_classes == 1`` (a sigmoid model) means labels ``{0, 1}``, i.e. two classes.

Per image and class, with ``tp, fp, fn, tn`` counted one-vs-rest:

=================================  =====================================================
case                               value
=================================  =====================================================
class absent in target AND pred    NaN (excluded from means) if ``ignore_empty`` else 1.0
absent in target but predicted     Dice = IoU = precision = recall = 0 (false alarm)
present in target, not predicted   Dice = IoU = recall = 0, precision = 0 (complete miss)
no negatives (class fills image)   specificity = 1 (there was nothing to mislabel)
prediction or target empty         HD95 = NaN, flagged ``pred`` / ``target`` / ``both``
=================================  =====================================================

HD95 has no value when a side has no surface: it is NaN (never a stand-in distance) and the row's
``hd95_empty`` column says which side was empty, so means over images skip it visibly
(:func:`models.test_rows.summarise_rows` counts the excluded rows).

Background (class 0) is excluded unless ``include_background=True``, so an all-background image
predicted as all background yields NaN (ignored) rather than an inflated Dice of 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage

METRIC_NAMES = ("dice", "iou", "precision", "recall", "specificity", "accuracy")


def confusion_counts(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Count one-vs-rest true/false positives/negatives per image and class.

    Args:
        pred: Integer labels ``[H, W]`` or ``[B, H, W]``.
        target: Integer labels, same shape as ``pred``.
        num_classes: Number of classes; 1 means binary ``{0, 1}`` labels (counted as 2 classes).
        ignore_index: Target value whose pixels are not counted (None: count every pixel).

    Returns:
        ``(tp, fp, fn, tn)``, each int64 ``[B, max(num_classes, 2)]`` on the inputs' device.

    Raises:
        ValueError: On mismatched shapes or labels outside ``[0, num_classes)``.
    """
    pred = torch.as_tensor(pred)
    target = torch.as_tensor(target, device=pred.device)
    if pred.shape != target.shape or pred.ndim not in (2, 3):
        raise ValueError(
            f"confusion_counts: expected pred and target of the same shape [H, W] or [B, H, W], got "
            f"{tuple(pred.shape)} and {tuple(target.shape)}"
        )
    if pred.is_floating_point() or target.is_floating_point():
        raise ValueError("confusion_counts: pred and target must be integer label maps (argmax logits first)")
    if pred.ndim == 2:
        pred, target = pred[None], target[None]
    n = max(int(num_classes), 2)
    batch = pred.shape[0]
    valid = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    for name, labels in (("pred", pred), ("target", target)):
        bad = valid & ((labels < 0) | (labels >= n))
        if bad.any():
            raise ValueError(
                f"confusion_counts: {name} holds labels {torch.unique(labels[bad]).tolist()[:10]} outside "
                f"[0, {n}) for num_classes={num_classes}"
            )
    image = torch.arange(batch, device=pred.device).view(-1, 1, 1).expand_as(pred)
    flat = ((image * n + target.long()) * n + pred.long())[valid]
    matrix = torch.bincount(flat, minlength=batch * n * n).reshape(batch, n, n)  # [b, target, pred]
    tp = matrix.diagonal(dim1=1, dim2=2)
    fp = matrix.sum(1) - tp
    fn = matrix.sum(2) - tp
    tn = valid.flatten(1).sum(1, keepdim=True) - tp - fp - fn
    return tp, fp, fn, tn


def _finish(
    numerator: torch.Tensor,
    denominator: torch.Tensor,
    counts: tuple[torch.Tensor, ...],
    zero_denominator: float,
    include_background: bool,
    ignore_empty: bool,
) -> torch.Tensor:
    tp, fp, fn, _ = counts
    num, den = numerator.double(), denominator.double()
    value = torch.where(den > 0, num / den.clamp_min(1), torch.full_like(den, zero_denominator))
    empty = (tp + fp + fn) == 0
    value = torch.where(empty, torch.full_like(value, math.nan if ignore_empty else 1.0), value)
    return value if include_background else value[..., 1:]


def compute_dice(tp, fp, fn, tn, include_background: bool = False, ignore_empty: bool = True) -> torch.Tensor:
    """Dice ``2 tp / (2 tp + fp + fn)`` per image and class.

    Args:
        tp: ``[B, C]`` counts from :func:`confusion_counts` (likewise ``fp``, ``fn``, ``tn``).
        fp: False positives.
        fn: False negatives.
        tn: True negatives.
        include_background: Keep class 0 (else the result has ``C - 1`` columns).
        ignore_empty: NaN (True) or 1.0 (False) where the class is absent in target and prediction.

    Returns:
        float64 ``[B, C]`` or ``[B, C - 1]``.
    """
    return _finish(2 * tp, 2 * tp + fp + fn, (tp, fp, fn, tn), 0.0, include_background, ignore_empty)


def compute_iou(tp, fp, fn, tn, include_background: bool = False, ignore_empty: bool = True) -> torch.Tensor:
    """Jaccard index ``tp / (tp + fp + fn)``; arguments and return as :func:`compute_dice`."""
    return _finish(tp, tp + fp + fn, (tp, fp, fn, tn), 0.0, include_background, ignore_empty)


def compute_precision(
    tp, fp, fn, tn, include_background: bool = False, ignore_empty: bool = True
) -> torch.Tensor:
    """Precision ``tp / (tp + fp)`` (0 when nothing predicted); arguments as :func:`compute_dice`."""
    return _finish(tp, tp + fp, (tp, fp, fn, tn), 0.0, include_background, ignore_empty)


def compute_recall(
    tp, fp, fn, tn, include_background: bool = False, ignore_empty: bool = True
) -> torch.Tensor:
    """Recall (sensitivity) ``tp / (tp + fn)`` (0 on a false alarm); arguments as :func:`compute_dice`."""
    return _finish(tp, tp + fn, (tp, fp, fn, tn), 0.0, include_background, ignore_empty)


def compute_specificity(
    tp, fp, fn, tn, include_background: bool = False, ignore_empty: bool = True
) -> torch.Tensor:
    """Specificity ``tn / (tn + fp)`` (1 when there are no negatives); arguments as :func:`compute_dice`."""
    return _finish(tn, tn + fp, (tp, fp, fn, tn), 1.0, include_background, ignore_empty)


def compute_accuracy(
    tp, fp, fn, tn, include_background: bool = False, ignore_empty: bool = True
) -> torch.Tensor:
    """One-vs-rest pixel accuracy ``(tp + tn) / N``; for 2 classes it is the plain pixel accuracy.

    Arguments and return as :func:`compute_dice`.
    """
    return _finish(tp + tn, tp + fp + fn + tn, (tp, fp, fn, tn), 0.0, include_background, ignore_empty)


METRIC_FUNCTIONS = {
    "dice": compute_dice,
    "iou": compute_iou,
    "precision": compute_precision,
    "recall": compute_recall,
    "specificity": compute_specificity,
    "accuracy": compute_accuracy,
}


def _surface(mask: np.ndarray) -> np.ndarray:
    # Pixels with a face-neighbour outside the mask; the image border counts as outside.
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def compute_hd95(
    pred_mask: np.ndarray,
    target_mask: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0),
    max_distance: float | None = None,
    percentile: float = 95.0,
) -> float:
    """Symmetric 95th-percentile Hausdorff distance between two mask surfaces.

    The distances from every surface pixel of each mask to the nearest surface pixel of the other
    are pooled (both directions together) and their ``percentile`` is returned, in the units of
    ``spacing``.

    Args:
        pred_mask: Boolean mask ``[H, W]`` (or ``[D, H, W]``).
        target_mask: Boolean mask of the same shape.
        spacing: Pixel size per axis (one entry per dimension).
        max_distance: Value returned when exactly one mask is empty; None returns ``inf``.
        percentile: Percentile of the pooled distances (100 gives the Hausdorff distance).

    Returns:
        The distance; NaN when both masks are empty.

    Raises:
        ValueError: On mismatched shapes or a ``spacing`` of the wrong length.
    """
    pred, target = np.asarray(pred_mask, dtype=bool), np.asarray(target_mask, dtype=bool)
    if pred.shape != target.shape or len(spacing) != pred.ndim:
        raise ValueError(
            f"compute_hd95: masks {pred.shape} / {target.shape} must match and spacing {tuple(spacing)} "
            "needs one entry per axis"
        )
    if not pred.any() and not target.any():
        return math.nan
    if not pred.any() or not target.any():
        return math.inf if max_distance is None else float(max_distance)
    # Both surfaces lie in the union's bounding box (+1 px for the erosion), so cropping is exact.
    coords = np.argwhere(pred | target)
    lo = np.maximum(coords.min(0) - 1, 0)
    hi = np.minimum(coords.max(0) + 2, pred.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    pred_surface, target_surface = _surface(pred[box]), _surface(target[box])
    to_target = ndimage.distance_transform_edt(~target_surface, sampling=spacing)
    to_pred = ndimage.distance_transform_edt(~pred_surface, sampling=spacing)
    distances = np.concatenate([to_target[pred_surface], to_pred[target_surface]])
    return float(np.percentile(distances, percentile))


def hd95_empty_side(pred_mask: np.ndarray, target_mask: np.ndarray) -> str:
    """Which side of an HD95 comparison has no pixel: ``pred``, ``target``, ``both`` or ``""`` (neither)."""
    pred_empty, target_empty = not np.any(pred_mask), not np.any(target_mask)
    if pred_empty and target_empty:
        return "both"
    return "pred" if pred_empty else "target" if target_empty else ""


def _hd95_columns(
    pred: np.ndarray, target: np.ndarray, classes: list[int], spacing: Sequence[float], valid: np.ndarray
) -> tuple[torch.Tensor, list[str]]:
    values, flags = [], []
    for c in classes:
        pred_c, target_c = (pred == c) & valid, (target == c) & valid
        flag = hd95_empty_side(pred_c, target_c)
        values.append(math.nan if flag else compute_hd95(pred_c, target_c, spacing))
        flags.append(flag)
    return torch.tensor(values, dtype=torch.float64), flags


def _hd95_flag_columns(classes: list[int], flags: list[str], n: int) -> dict[str, str]:
    if n <= 2:
        return {"hd95_empty": flags[0]}
    pairs = list(zip(classes, flags, strict=True))
    return {
        "hd95_empty": " ".join(f"{c}={f}" for c, f in pairs if f),
        **{f"hd95_empty_{c}": f for c, f in pairs},
    }


def per_image_metrics(
    pred: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    include_background: bool = False,
    with_hd95: bool = True,
    spacing: Sequence[float] = (1.0, 1.0),
    ignore_empty: bool = True,
    ignore_index: int | None = None,
) -> dict[str, float | str]:
    """All metrics of one image: class means plus, for more than 2 classes, per-class values.

    Args:
        pred: Integer labels ``[H, W]`` (``{0, 1}`` when ``num_classes == 1``).
        target: Integer labels ``[H, W]``.
        num_classes: Number of classes (1 = binary sigmoid, handled as 2).
        include_background: Include class 0 in the means.
        with_hd95: Also compute ``hd95`` (CPU, scipy). A class whose prediction or target is empty
            has HD95 NaN and a flag (``hd95_empty``), whatever ``ignore_empty`` says.
        spacing: Pixel size ``(row, col)`` (volumes: voxel size in mm per axis) for HD95.
        ignore_empty: See the module docstring (Dice and the other overlap metrics only).
        ignore_index: Target value whose pixels are not counted.

    Returns:
        Keys ``dice, iou, precision, recall, specificity, accuracy`` (+ ``hd95``): NaN-ignoring mean
        over the reported classes; plus ``<metric>_<c>`` per class ``c`` when there are > 2 classes.
        With HD95 also ``hd95_empty``: the empty side (``pred``/``target``/``both``/``""``) for two
        classes; for more, ``hd95_empty_<c>`` per class and ``hd95_empty`` listing the flagged
        classes (``"2=target 3=both"``).
    """
    pred, target = torch.as_tensor(pred), torch.as_tensor(target)
    if pred.ndim not in (2, 3):
        raise ValueError(
            f"per_image_metrics: expected [H, W] (or volume [X, Y, Z]) label maps, got {tuple(pred.shape)}"
        )
    # A volume is counted as one sample over all its voxels.
    flat = (
        (pred.reshape(1, -1), target.reshape(1, -1))
        if pred.ndim == 3 and pred.shape == target.shape
        else (pred, target)
    )
    counts = confusion_counts(*flat, num_classes, ignore_index)
    n = max(int(num_classes), 2)
    classes = list(range(0 if include_background else 1, n))
    per_class = {
        name: fn(*counts, include_background=include_background, ignore_empty=ignore_empty)[0].cpu()
        for name, fn in METRIC_FUNCTIONS.items()
    }
    flags: list[str] = []
    if with_hd95:
        pred_np, target_np = pred.cpu().numpy(), target.cpu().numpy()
        valid = np.ones_like(target_np, dtype=bool) if ignore_index is None else target_np != ignore_index
        per_class["hd95"], flags = _hd95_columns(pred_np, target_np, classes, spacing, valid)
    result: dict[str, float | str] = {}
    for name, values in per_class.items():
        # nanmean of all-NaN is NaN (a warning-free torch op), e.g. HD95 with every class flagged
        result[name] = float(torch.nanmean(values))
        if n > 2:
            result.update({f"{name}_{c}": float(v) for c, v in zip(classes, values, strict=True)})
    if with_hd95:
        result.update(_hd95_flag_columns(classes, flags, n))
    return result
