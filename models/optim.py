"""Optimisation settings of every task: one ``OptimConfig``, optimizer and schedule registries.

Every task module takes ``optim: OptimConfig`` (YAML: ``model.init_args.optim: {name: adam, lr: ...}``,
CLI: ``--model.optim.lr 0.01``); its class states the family's defaults, and
:meth:`models.task.TaskModule.configure_optimizers` builds both objects from it, once for all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from core.registry import Registry
from core.settings import Settings
from models.lars import LARS

OPTIMIZERS: Registry[Callable[..., Optimizer]] = Registry("optimizer")
SCHEDULES: Registry[Callable[..., float]] = Registry("schedule")


@dataclass(frozen=True)
class OptimConfig(Settings):
    """Optimizer and learning-rate schedule of a task.

    Attributes:
        name: Registered optimizer: ``adam``, ``adamw``, ``sgd`` or ``lars``.
        lr: Base learning rate.
        weight_decay: L2 / decoupled weight decay.
        momentum: SGD/LARS momentum (Adam variants ignore it).
        nesterov: Nesterov momentum for ``sgd`` (used only when ``momentum > 0``).
        lars_eta: LARS trust coefficient.
        scheduler: Registered schedule: ``none``, ``cosine``, ``poly`` or ``step``.
        interval: The schedule advances per ``epoch`` or per optimizer ``step``.
        warmup: Linear warm-up length, in intervals (from ``1/(warmup+1)`` to 1).
        min_lr_factor: Floor of the decay as a fraction of ``lr``.
        step_size: ``step`` schedule: intervals between decays.
        gamma: ``step`` schedule: decay factor.
        power: ``poly`` schedule: exponent.
    """

    config_key: ClassVar[str] = "optim"

    name: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    nesterov: bool = True
    lars_eta: float = 0.02
    scheduler: str = "cosine"
    interval: Literal["epoch", "step"] = "epoch"
    warmup: int = 0
    min_lr_factor: float = 0.0
    step_size: int = 30
    gamma: float = 0.1
    power: float = 0.9

    def __post_init__(self) -> None:
        """Check names and ranges, so a bad value fails before any training.

        Raises:
            core.registry.UnknownNameError: Unknown optimizer or schedule.
            ValueError: Non-positive lr or step_size, negative warmup or weight decay.
        """
        OPTIMIZERS.check(self.name)
        SCHEDULES.check(self.scheduler)
        if not self.lr > 0:
            raise ValueError(f"optim.lr must be > 0, got {self.lr}")
        if self.weight_decay < 0 or self.warmup < 0 or self.step_size < 1:
            raise ValueError(
                "optim: need weight_decay >= 0, warmup >= 0 and step_size >= 1, got "
                f"{self.weight_decay}, {self.warmup}, {self.step_size}"
            )
        if self.interval not in ("epoch", "step"):
            raise ValueError(f"optim.interval must be 'epoch' or 'step', got {self.interval!r}")


@OPTIMIZERS.register("adam")
def _adam(params: Iterable, cfg: OptimConfig) -> Optimizer:
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("adamw")
def _adamw(params: Iterable, cfg: OptimConfig) -> Optimizer:
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("sgd")
def _sgd(params: Iterable, cfg: OptimConfig) -> Optimizer:
    nesterov = cfg.nesterov and cfg.momentum > 0
    return torch.optim.SGD(
        params, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum, nesterov=nesterov
    )


@OPTIMIZERS.register("lars")
def _lars(params: Iterable, cfg: OptimConfig) -> Optimizer:
    return LARS(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, eta=cfg.lars_eta)


# Schedules whose factor depends on the run's length (progress = t / total).
NEEDS_LENGTH = frozenset({"cosine", "poly"})


@SCHEDULES.register("none")
def _constant(progress: float, t: int, cfg: OptimConfig) -> float:
    return 1.0


@SCHEDULES.register("cosine")
def _cosine(progress: float, t: int, cfg: OptimConfig) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * progress))


@SCHEDULES.register("poly")
def _poly(progress: float, t: int, cfg: OptimConfig) -> float:
    return (1.0 - progress) ** float(cfg.power)


@SCHEDULES.register("step")
def _step(progress: float, t: int, cfg: OptimConfig) -> float:
    return float(cfg.gamma) ** (t // int(cfg.step_size))


def build_optimizer(params: Iterable, cfg: OptimConfig) -> Optimizer:
    """The optimizer ``cfg.name`` over ``params`` (tensors or parameter groups)."""
    return OPTIMIZERS.get(cfg.name)(params, cfg)


def lr_factor(cfg: OptimConfig, t: int, total: int) -> float:
    """Multiplicative learning-rate factor at interval ``t`` of ``total``.

    Args:
        cfg: The schedule settings (``scheduler``, ``warmup``, ``min_lr_factor``, ...).
        t: Zero-based epoch or step index.
        total: Number of intervals of the run (epochs or optimizer steps).

    Returns:
        The factor in ``(0, 1]`` applied to the base learning rate.
    """
    if t < cfg.warmup:
        return (t + 1) / (cfg.warmup + 1)
    span = max(1, total - cfg.warmup)
    progress = min(1.0, (t - cfg.warmup) / span)
    decay = SCHEDULES.get(cfg.scheduler)(progress, t - cfg.warmup, cfg)
    return cfg.min_lr_factor + (1.0 - cfg.min_lr_factor) * decay


def build_scheduler(optimizer: Optimizer, cfg: OptimConfig, total: int) -> LRScheduler:
    """Wrap :func:`lr_factor` into a ``LambdaLR`` (its state is saved in checkpoints).

    Raises:
        ValueError: For a non-positive ``total`` (the run's epochs or steps are unknown) with a
            schedule that needs it (:data:`NEEDS_LENGTH`).
    """
    if cfg.scheduler in NEEDS_LENGTH and (total is None or total < 1):
        unit = "trainer.max_epochs" if cfg.interval == "epoch" else "trainer.max_steps (or max_epochs)"
        raise ValueError(f"schedule {cfg.scheduler!r} needs {unit} >= 1, got {total}")
    total = max(1, total or 1)  # "none" and "step" need no length (0 steps: test the initial weights)
    return LambdaLR(optimizer, lambda t: lr_factor(cfg, t, total))
