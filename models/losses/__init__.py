"""Segmentation losses: a name registry, ``create_loss`` and deep-supervision helpers.

Every registered loss is an ``nn.Module`` whose ``forward(logits, target)`` returns a scalar:

* ``logits``: float ``[B, C, H, W]``. ``C >= 2`` means softmax over classes; ``C == 1`` means
  a binary problem with a sigmoid on the single channel.
* ``target``: integer ``[B, H, W]`` holding class indices (``0..C-1``), or ``{0, 1}`` when
  ``C == 1``. Pixels equal to ``ignore_index`` (default 255) never contribute.

Deep supervision: networks with auxiliary heads return ``[main, aux1, ...]``. Pass such a list
through :func:`apply_loss` (or wrap the loss in :class:`DeepSupervisionLoss`), which evaluates
the loss on every output and returns their weighted average (equal weights by default).

``DistillationLoss`` (``forward(student_logits, teacher_logits)``) is not in the registry because
it does not take a target; import it from ``models.losses.distillation``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models.losses.hybrid import HybridLoss
from models.losses.overlap import DiceLoss, JaccardLoss, TverskyLoss
from models.losses.pixelwise import BCELoss, CrossEntropyLoss, FocalLoss, OhemCrossEntropyLoss
from models.losses.registry import LOSSES, create_loss, list_losses, register_loss


def apply_loss(
    loss: nn.Module,
    logits: torch.Tensor | Sequence[torch.Tensor],
    target: torch.Tensor,
    weights: Sequence[float] | None = None,
) -> torch.Tensor:
    """Evaluate ``loss`` on one output or on a deep-supervision list of outputs.

    For a list ``[main, aux1, ...]`` the result is ``sum(w_i * loss_i) / sum(w_i)``, i.e. the plain
    mean when ``weights`` is None. Outputs whose spatial size differs from the target are
    bilinearly upsampled to it first, so low-resolution auxiliary heads are supported.

    Args:
        loss: A module with ``forward(logits, target) -> scalar``.
        logits: ``[B, C, H, W]`` tensor, or a non-empty list/tuple of them.
        target: ``[B, H, W]`` integer target.
        weights: One non-negative weight per output (list input only); None means equal weights.

    Returns:
        Scalar loss tensor.

    Raises:
        ValueError: On an empty list, a weight count that does not match, or weights that do not
            sum to a positive value.
    """
    if isinstance(logits, torch.Tensor):
        return loss(logits, target)
    outputs = list(logits)
    if not outputs:
        raise ValueError("apply_loss: got an empty list of logits; expected [main, aux...]")
    if weights is None:
        weights = [1.0] * len(outputs)
    if len(weights) != len(outputs):
        raise ValueError(f"apply_loss: {len(weights)} weights for {len(outputs)} outputs; expected one each")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"apply_loss: weights must be >= 0 with a positive sum, got {list(weights)}")
    total = 0.0
    for w, out in zip(weights, outputs, strict=True):
        if out.shape[-2:] != target.shape[-2:]:
            out = F.interpolate(out, size=target.shape[-2:], mode="bilinear", align_corners=False)
        total = total + w * loss(out, target)
    return total / sum(weights)


class DeepSupervisionLoss(nn.Module):
    """Wrap a loss so that it accepts a deep-supervision list; see :func:`apply_loss`.

    Args:
        base: The per-output loss.
        weights: One weight per output (main first); None averages all outputs equally.
    """

    def __init__(self, base: nn.Module, weights: Sequence[float] | None = None) -> None:
        super().__init__()
        self.base = base
        self.weights = None if weights is None else [float(w) for w in weights]

    def forward(self, logits: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """Return the (weighted mean) loss over one output or a list of outputs."""
        return apply_loss(self.base, logits, target, self.weights)


__all__ = [
    "LOSSES",
    "BCELoss",
    "CrossEntropyLoss",
    "DeepSupervisionLoss",
    "DiceLoss",
    "FocalLoss",
    "HybridLoss",
    "JaccardLoss",
    "OhemCrossEntropyLoss",
    "TverskyLoss",
    "apply_loss",
    "create_loss",
    "list_losses",
    "register_loss",
]
