"""The callbacks every run gets: best/last checkpoints from the task's monitor, LR monitor, results.

``last.ckpt`` is one file per run: written at each epoch end by the best-checkpoint callback, every
``--last_every_n_steps`` steps and when SIGTERM (what schedulers send before a kill) stops the run at
the next step boundary, all by :class:`LastCheckpoint` into the same path, atomically.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from engine.results import TestResultsWriter
from models.task import TaskModule

log = logging.getLogger(__name__)


class LastCheckpoint(Callback):
    """Refresh ``<checkpoints>/last.ckpt`` every N optimizer steps and when SIGTERM stops the run.

    Writes through a temporary file and ``os.replace``, so a kill during the write leaves the previous
    ``last.ckpt`` intact.

    Args:
        every_n_steps: Save every N steps (None or 0: only on SIGTERM).
    """

    def __init__(self, every_n_steps: int | None = None) -> None:
        self.every_n_steps = every_n_steps or 0
        self._saved_step = -1

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        """Save when the step count reaches a multiple of ``every_n_steps``."""
        step = trainer.global_step
        if self.every_n_steps and step % self.every_n_steps == 0 and step != self._saved_step:
            self.save(trainer)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        """On SIGTERM (Lightning stops at the next step boundary) save ``last.ckpt`` to resume from."""
        if isinstance(exception, SIGTERMException) and trainer.state.fn == "fit":
            path = self.save(trainer)
            log.warning(
                "SIGTERM at step %d: saved %s; continue with --resume last", trainer.global_step, path
            )

    def save(self, trainer: L.Trainer) -> Path:
        """Write ``last.ckpt`` atomically (rank 0 writes; every rank takes part in the call)."""
        path = last_checkpoint_path(trainer)
        tmp = path.with_name(f".{path.name}.tmp")
        trainer.save_checkpoint(str(tmp))
        if trainer.is_global_zero:
            os.replace(tmp, path)
        self._saved_step = trainer.global_step
        return path


def last_checkpoint_path(trainer: L.Trainer) -> Path:
    """``last.ckpt`` in the folder of the run's checkpoint callback (``<run>/checkpoints``)."""
    callback = trainer.checkpoint_callback
    folder = callback.dirpath if callback is not None and callback.dirpath else None
    if folder is None:
        folder = os.path.join(trainer.log_dir or trainer.default_root_dir, "checkpoints")
    Path(folder).mkdir(parents=True, exist_ok=True)
    return Path(folder) / "last.ckpt"


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
        one is configured, :class:`LastCheckpoint` (every N steps and on SIGTERM, into the same
        ``last.ckpt``), an epoch LR monitor and the results writer.
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
                # One last.ckpt, also written by LastCheckpoint: never last-v1.ckpt beside it.
                enable_version_counter=False,
            )
        )
    if not fast_dev_run and not any(isinstance(c, LastCheckpoint) for c in callbacks):
        callbacks.append(LastCheckpoint(last_every_n_steps))
    if not any(isinstance(c, LearningRateMonitor) for c in callbacks):
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    if not any(isinstance(c, TestResultsWriter) for c in callbacks):
        callbacks.append(TestResultsWriter())
    return callbacks
