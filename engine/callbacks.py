"""The callbacks every run gets: best/last checkpoints from the task's monitor, LR monitor, results.

``last.ckpt`` is one file per run, written only by :class:`LastCheckpoint`: at each epoch end, every
``--last_every_n_steps`` steps and when SIGTERM (what schedulers send before a kill) stops the run at
the next step boundary. With :class:`engine.rng_state.ResumeState` and the resumable train loader a run
resumed from it repeats the uninterrupted run exactly (CPU).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, Checkpoint, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from engine.results import TestResultsWriter
from engine.rng_state import ResumeState
from models.task import TaskModule

log = logging.getLogger(__name__)


class LastCheckpoint(Checkpoint):
    """Write ``<checkpoints>/last.ckpt`` at each epoch end, every N optimizer steps and on SIGTERM.

    A state is captured at the end of a step (or epoch) but renamed into ``last.ckpt`` only at the next
    hook, after Lightning has written that step's rows to ``metrics.csv``: a kill at any moment leaves
    a ``last.ckpt`` whose rows are all on disk (the resumed run writes the later ones again). The write
    goes through a temporary file and ``os.replace``, so a kill during it keeps the previous file.

    The last step of an epoch is not saved on its own (its validation would be skipped on resume); the
    epoch-end save follows it. Being a ``Checkpoint``, it runs after the best-checkpoint callback, so the
    saved state knows the epoch's best checkpoint.

    Args:
        every_n_steps: Also save every N steps (None or 0: at epoch ends and on SIGTERM only).
    """

    def __init__(self, every_n_steps: int | None = None) -> None:
        self.every_n_steps = every_n_steps or 0
        self._saved_step = -1
        self._pending: Path | None = None

    @property
    def best_model_path(self) -> str:
        """No best model: that is the ``ModelCheckpoint``'s."""
        return ""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """A resumed run's loaded step is already saved."""
        self._saved_step = trainer.global_step

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        """The previous step's rows are written: publish its state."""
        self._commit()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        """Capture the state when the step count reaches a multiple of ``every_n_steps`` mid-epoch."""
        step = trainer.global_step
        due = self.every_n_steps and step % self.every_n_steps == 0 and step != self._saved_step
        if due and not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            self._capture(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Publish a state captured before a validation inside the epoch."""
        if trainer.state.fn == "fit":
            self._commit()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Capture the end of the epoch (after validation and the best checkpoint's update)."""
        self._capture(trainer)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The previous epoch's rows are written: publish its state."""
        self._commit()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Publish the last state; save the final step if nothing captured it (``max_steps`` mid-epoch)."""
        if trainer.global_step != self._saved_step:
            self._capture(trainer)
        self._commit()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        """On SIGTERM (Lightning stops at a step boundary, rows written) save ``last.ckpt`` to resume from.

        Any other exception drops an unpublished state: like a kill, the run resumes from the last one.
        """
        if isinstance(exception, SIGTERMException) and trainer.state.fn == "fit":
            path = self.save(trainer)
            log.warning(
                "SIGTERM at step %d: saved %s; continue with --resume last", trainer.global_step, path
            )
        elif self._pending is not None:
            self._pending.unlink(missing_ok=True)
            self._pending = None

    def save(self, trainer: L.Trainer) -> Path:
        """Write ``last.ckpt`` now, atomically (rank 0 writes; every rank takes part in the call)."""
        self._capture(trainer)
        self._commit()
        return last_checkpoint_path(trainer)

    def _capture(self, trainer: L.Trainer) -> None:
        path = last_checkpoint_path(trainer)
        tmp = path.with_name(f".{path.name}.tmp")
        trainer.save_checkpoint(str(tmp))
        self._saved_step = trainer.global_step
        self._pending = tmp if trainer.is_global_zero else None

    def _commit(self) -> None:
        if self._pending is not None:
            os.replace(self._pending, self._pending.with_name(self._pending.name[1:-4]))
            self._pending = None


def last_checkpoint_path(trainer: L.Trainer) -> Path:
    """``last.ckpt`` in the folder of the run's checkpoint callback (``<run>/checkpoints``)."""
    callback = next((c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)), None)
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
        Callbacks: the configured ones, a ``ModelCheckpoint`` on ``model.monitor`` (best) unless one
        is configured, :class:`LastCheckpoint` (``last.ckpt`` at epoch ends, every N steps and on
        SIGTERM), :class:`~engine.rng_state.ResumeState` (RNGs and epoch accumulators in every
        checkpoint), an epoch LR monitor and the results writer.
    """
    callbacks: list[Any] = list(configured)
    if not fast_dev_run and not any(isinstance(c, ModelCheckpoint) for c in callbacks):
        callbacks.append(
            ModelCheckpoint(
                monitor=model.monitor.metric,
                mode=model.monitor.mode,
                # last.ckpt is LastCheckpoint's alone (Lightning 2.6 would write it only on improvement,
                # and before the epoch's rows are logged).
                save_last=False,
                filename="best-{epoch:03d}",
                auto_insert_metric_name=False,
                enable_version_counter=False,
            )
        )
    if not fast_dev_run and not any(isinstance(c, LastCheckpoint) for c in callbacks):
        callbacks.append(LastCheckpoint(last_every_n_steps))
    if not any(isinstance(c, ResumeState) for c in callbacks):
        callbacks.append(ResumeState())
    if not any(isinstance(c, LearningRateMonitor) for c in callbacks):
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    if not any(isinstance(c, TestResultsWriter) for c in callbacks):
        callbacks.append(TestResultsWriter())
    return callbacks
