"""``SegmentationMetrics``: a torchmetrics ``Metric`` that aggregates per-image metrics across steps and GPUs.

Every state is a sum (``dist_reduce_fx="sum"``), so Lightning/torchmetrics synchronise it under DDP
and the result equals what a single process would compute over the whole dataset.
"""

from __future__ import annotations

import math

import torch
from torchmetrics import Metric

from models.metrics import METRIC_FUNCTIONS, METRIC_NAMES, confusion_counts


class SegmentationMetrics(Metric):
    """Per-image segmentation metrics averaged over images, plus a pooled (global) Dice.

    ``compute()`` returns:

    * ``dice, iou, precision, recall, specificity, accuracy``: for every image, the NaN-ignoring
      mean over the reported classes (foreground by default, see ``models.metrics`` for the
      empty-class conventions), then the mean over the images where it is defined. This equals the
      mean of ``per_image_metrics(...)[name]`` over the images.
    * ``dice_global``: Dice from ``tp/fp/fn`` summed over all images, per class, then averaged
      over classes (classes never seen in target or prediction are ignored).
    * For more than 2 classes also ``dice_<c>`` and ``iou_<c>``: per-class mean over the images
      where class ``c`` is defined.

    Args:
        num_classes: Number of classes (1 = binary sigmoid labels, handled as 2).
        include_background: Include class 0.
        ignore_index: Target value whose pixels are not counted (None: count all).
        **kwargs: Forwarded to ``torchmetrics.Metric`` (e.g. ``sync_on_compute``).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self, num_classes: int, include_background: bool = False, ignore_index: int | None = None, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        if num_classes < 1:
            raise ValueError(f"SegmentationMetrics: num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.include_background = include_background
        self.ignore_index = ignore_index
        total = max(num_classes, 2)
        self.classes = list(range(0 if include_background else 1, total))
        reported = len(self.classes)
        for name in METRIC_NAMES:
            # float64 sums: thousands of per-image values must not lose precision.
            self.add_state(f"{name}_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{name}_count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
            self.add_state(
                f"{name}_class_sum", torch.zeros(reported, dtype=torch.float64), dist_reduce_fx="sum"
            )
            self.add_state(
                f"{name}_class_count", torch.zeros(reported, dtype=torch.long), dist_reduce_fx="sum"
            )
        for name in ("tp", "fp", "fn"):
            self.add_state(name, torch.zeros(reported, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Accumulate a batch of label maps.

        Args:
            preds: Integer labels ``[B, H, W]`` (argmax of the logits, or thresholded sigmoid).
            target: Integer labels ``[B, H, W]``.

        Raises:
            ValueError: If ``preds`` look like logits or the shapes differ.
        """
        if preds.ndim == target.ndim + 1 or preds.is_floating_point():
            raise ValueError(
                f"SegmentationMetrics.update: preds {tuple(preds.shape)} ({preds.dtype}) look like logits; "
                "pass integer label maps [B, H, W] (e.g. logits.argmax(1))"
            )
        counts = confusion_counts(preds, target, self.num_classes, self.ignore_index)
        for name, fn in METRIC_FUNCTIONS.items():
            values = fn(*counts, include_background=self.include_background, ignore_empty=True)
            per_image = torch.nanmean(values, dim=1)
            defined = ~torch.isnan(per_image)
            getattr(self, f"{name}_sum").add_(per_image[defined].sum())
            getattr(self, f"{name}_count").add_(defined.sum())
            class_defined = ~torch.isnan(values)
            getattr(self, f"{name}_class_sum").add_(torch.where(class_defined, values, 0.0).sum(0))
            getattr(self, f"{name}_class_count").add_(class_defined.sum(0))
        start = 0 if self.include_background else 1
        for name, value in zip(("tp", "fp", "fn"), counts[:3], strict=True):
            getattr(self, name).add_(value[:, start:].sum(0))

    def compute(self) -> dict[str, torch.Tensor]:
        """Return the aggregated metrics (NaN where no image defines them); see the class docstring."""
        out: dict[str, torch.Tensor] = {}
        for name in METRIC_NAMES:
            out[name] = _safe_mean(getattr(self, f"{name}_sum"), getattr(self, f"{name}_count"))
        denominator = 2 * self.tp + self.fp + self.fn
        global_dice = _safe_mean(2.0 * self.tp, denominator)
        out["dice_global"] = torch.nanmean(global_dice).float()
        if max(self.num_classes, 2) > 2:
            for name in ("dice", "iou"):
                per_class = _safe_mean(
                    getattr(self, f"{name}_class_sum"), getattr(self, f"{name}_class_count")
                )
                out.update({f"{name}_{c}": v for c, v in zip(self.classes, per_class, strict=True)})
        return out


def _safe_mean(total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """``total / count`` as float32, NaN where ``count == 0``."""
    count = count.to(torch.float64)
    value = torch.where(count > 0, total.double() / count.clamp_min(1), torch.full_like(count, math.nan))
    return value.float()
