"""The callbacks every run gets: best/last checkpoints from the task's monitor, LR monitor, results."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint

from engine.results import TestResultsWriter
from models.task import TaskModule


def default_callbacks(
    model: TaskModule,
    configured: Sequence[Callback],
    last_every_n_steps: int | None,
    fast_dev_run: bool = False,
) -> list[Callback]:
    """The configured callbacks plus the framework's defaults that they do not already provide.

    Args:
        model: The task; its ``monitor`` picks the best checkpoint.
        configured: ``trainer.callbacks`` from the config (kept first, in order).
        last_every_n_steps: Also refresh ``last.ckpt`` every N optimizer steps.
        fast_dev_run: A smoke run: no checkpoints (Lightning 2.6 still writes ``last.ckpt`` at train
            end with ``fast_dev_run``, which is meant to disable checkpointing).

    Returns:
        Callbacks: the configured ones, a ``ModelCheckpoint`` on ``model.monitor`` (best + last) unless
        one is configured, the step-wise last checkpoint, an epoch LR monitor and the results writer.
    """
    callbacks: list[Any] = list(configured)
    if not fast_dev_run and not any(isinstance(c, ModelCheckpoint) for c in callbacks):
        callbacks.append(
            ModelCheckpoint(
                monitor=model.monitor.metric,
                mode=model.monitor.mode,
                save_last=True,
                filename="best-{epoch:03d}",
                auto_insert_metric_name=False,
            )
        )
    if last_every_n_steps and not fast_dev_run:
        every = ModelCheckpoint(save_top_k=0, save_last=True, every_n_train_steps=last_every_n_steps)
        callbacks.append(every)
    if not any(isinstance(c, LearningRateMonitor) for c in callbacks):
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    if not any(isinstance(c, TestResultsWriter) for c in callbacks):
        callbacks.append(TestResultsWriter())
    return callbacks
