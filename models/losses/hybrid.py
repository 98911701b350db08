"""Weighted sum of registered losses, e.g. autoSMIM's ``CE + 1.5 x Dice``.

YAML (jsonargparse reads the typed ``__init__``)::

    loss:
      class_path: models.losses.HybridLoss
      init_args:
        losses: {ce: 1.0, dice: 1.5}
        loss_kwargs: {dice: {smooth: 1.0}}
"""

from __future__ import annotations

import math

import torch
from torch import nn

from models.losses.registry import create_loss, register_loss


@register_loss("hybrid")
class HybridLoss(nn.Module):
    """``sum_name weight_name * loss_name(logits, target)`` over registered losses.

    Args:
        losses: Registered loss name -> weight, e.g. ``{"ce": 1.0, "dice": 1.5}``,
            ``{"focal": 1.0, "dice": 1.0}`` or ``{"focal": 1.0, "tversky": 1.0}``.
        loss_kwargs: Optional loss name -> keyword arguments of that loss,
            e.g. ``{"tversky": {"alpha": 0.3, "beta": 0.7}}``.

    Raises:
        ValueError: If ``losses`` is empty, a weight is negative or not finite, or ``loss_kwargs``
            names a loss that is not in ``losses``.
        KeyError: If a loss name is not registered.
    """

    def __init__(self, losses: dict[str, float], loss_kwargs: dict[str, dict] | None = None) -> None:
        super().__init__()
        if not losses:
            raise ValueError("hybrid: 'losses' is empty; expected e.g. {'ce': 1.0, 'dice': 1.5}")
        loss_kwargs = dict(loss_kwargs or {})
        unknown = sorted(set(loss_kwargs) - set(losses))
        if unknown:
            raise ValueError(f"hybrid: loss_kwargs keys {unknown} are not in losses {sorted(losses)}")
        for name, weight in losses.items():
            if not math.isfinite(float(weight)) or float(weight) < 0:
                raise ValueError(f"hybrid: weight of {name!r} must be finite and >= 0, got {weight}")
        self.weights = {name: float(weight) for name, weight in losses.items()}
        self.losses = nn.ModuleDict(
            {name: create_loss(name, **loss_kwargs.get(name, {})) for name in self.weights}
        )

    def components(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return each unweighted component loss by name (for logging).

        Args:
            logits: ``[B, C, *spatial]`` logits.
            target: ``[B, *spatial]`` class indices.

        Returns:
            Loss name -> scalar tensor.
        """
        return {name: loss(logits, target) for name, loss in self.losses.items()}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the weighted sum of the component losses."""
        parts = self.components(logits, target)
        return sum(self.weights[name] * value for name, value in parts.items())
