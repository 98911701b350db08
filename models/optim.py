"""Optimizer and learning-rate schedule factories (registries, configured by name)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler


def _adam(params: Iterable, lr: float, weight_decay: float, momentum: float) -> Optimizer:
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def _adamw(params: Iterable, lr: float, weight_decay: float, momentum: float) -> Optimizer:
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def _sgd(params: Iterable, lr: float, weight_decay: float, momentum: float) -> Optimizer:
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=momentum > 0)


OPTIMIZERS: dict[str, Callable[..., Optimizer]] = {"adam": _adam, "adamw": _adamw, "sgd": _sgd}


def build_optimizer(
    params: Iterable, name: str, lr: float, weight_decay: float = 0.0, momentum: float = 0.9
) -> Optimizer:
    """Create an optimizer by registry name.

    Args:
        params: Parameters (or parameter groups) to optimise.
        name: One of ``OPTIMIZERS`` (``adam``, ``adamw``, ``sgd``).
        lr: Base learning rate.
        weight_decay: L2 / decoupled weight decay.
        momentum: SGD momentum (ignored by Adam variants).

    Returns:
        The optimizer.

    Raises:
        ValueError: For an unknown name or a non-positive learning rate.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {sorted(OPTIMIZERS)}")
    if lr <= 0:
        raise ValueError(f"learning rate must be > 0, got {lr}")
    return OPTIMIZERS[name](params, lr=lr, weight_decay=weight_decay, momentum=momentum)


def lr_factor(
    name: str, epoch: int, max_epochs: int, warmup_epochs: int = 0, min_factor: float = 0.0, **kw: float
) -> float:
    """Multiplicative learning-rate factor of a schedule at an epoch.

    Args:
        name: ``none``, ``cosine``, ``poly`` (power 0.9) or ``step`` (``step_size``, ``gamma`` in ``kw``).
        epoch: Zero-based epoch index.
        max_epochs: Total number of epochs of the run.
        warmup_epochs: Epochs of linear warm-up from ``1/(warmup_epochs+1)`` to 1.
        min_factor: Floor of the decay as a fraction of the base learning rate.
        **kw: Schedule-specific options.

    Returns:
        The factor in ``(0, 1]`` applied to the base learning rate.
    """
    if epoch < warmup_epochs:
        return (epoch + 1) / (warmup_epochs + 1)
    span = max(1, max_epochs - warmup_epochs)
    progress = min(1.0, (epoch - warmup_epochs) / span)
    if name == "none":
        decay = 1.0
    elif name == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * progress))
    elif name == "poly":
        decay = (1.0 - progress) ** float(kw.get("power", 0.9))
    elif name == "step":
        decay = float(kw.get("gamma", 0.1)) ** ((epoch - warmup_epochs) // int(kw.get("step_size", 30)))
    else:
        raise ValueError(f"unknown scheduler {name!r}; expected one of {SCHEDULES}")
    return min_factor + (1.0 - min_factor) * decay


SCHEDULES = ("none", "cosine", "poly", "step")


def build_scheduler(
    optimizer: Optimizer,
    name: str,
    max_epochs: int,
    warmup_epochs: int = 0,
    min_factor: float = 0.0,
    **kw: float,
) -> LRScheduler:
    """Wrap :func:`lr_factor` into an epoch-wise ``LambdaLR`` (state saved in checkpoints).

    Raises:
        ValueError: For an unknown schedule or a non-positive ``max_epochs``.
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown scheduler {name!r}; expected one of {SCHEDULES}")
    if max_epochs is None or max_epochs < 1:
        raise ValueError(f"scheduler {name!r} needs trainer.max_epochs >= 1, got {max_epochs}")
    return LambdaLR(
        optimizer, lambda epoch: lr_factor(name, epoch, max_epochs, warmup_epochs, min_factor, **kw)
    )
