"""The task contract: the one base LightningModule every family's module derives from.

What the engine relies on, declared here once:

* ``monitor``: the metric the task is judged by and its mode; the CLI's checkpoint callback uses it.
* ``needs_fit`` / ``has_test``: whether ``run.py`` fits before testing, and whether it tests at all.
* ``optim``: an :class:`models.optim.OptimConfig`; :meth:`TaskModule.configure_optimizers` builds the
  optimizer and schedule from it (subclasses only choose the parameters, :meth:`optim_parameters`).
* Test results: a subclass's ``test_step`` hands per-item rows to :meth:`TaskModule.add_test_rows`;
  at the end of the test epoch the rows of every rank are gathered, :meth:`TaskModule.summarise_test`
  turns them into the summary, ``test/<metric>`` is logged and ``test_rows`` / ``test_summary`` are
  set. The engine writes them (rank 0, atomically) as ``test_per_image.csv`` + ``test_summary.json``.
* Prediction: a family whose output is a segmentation sets ``predicts_segmentation``; its
  ``forward`` gives class scores whose (resized) argmax is the test prediction.
  :meth:`TaskModule.predict_log_probs` turns them into log-probabilities ``[B, C, H, W]`` (what
  ``run.py --predict`` averages and resizes, so its masks are the test's masks) and ``predict_step``
  into probabilities; the other families say why they cannot predict. A family that segments a
  query from a support set (few-shot) sets ``segments_from_support`` instead: ``run.py --predict``
  then takes ``--support``/``--support_label`` and calls its ``forward(support, support_mask, query)``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
from torch import Tensor

from models.optim import OptimConfig, build_optimizer, build_scheduler
from models.test_rows import gather_rows, summarise_rows


@dataclass(frozen=True)
class Monitor:
    """The metric a task is judged by (checkpoint selection) and whether higher is better.

    Attributes:
        metric: Logged key, e.g. ``val/dice``.
        mode: ``max`` or ``min``.
    """

    metric: str
    mode: Literal["min", "max"]


def local_log_dir(trainer: Any) -> str | None:
    """The run directory without a collective call.

    ``Trainer.log_dir`` broadcasts from rank 0 under DDP, so calling it from rank 0 alone deadlocks.
    """
    if trainer.loggers:
        return trainer.loggers[0].log_dir
    return trainer.default_root_dir


class TaskModule(L.LightningModule):
    """Base of every task module (supervised, few-shot, noisy-label, pretext, policy search).

    Args:
        optim: Optimizer and schedule; None takes the class's ``default_optim``. A dict is read as
            fields over ``default_optim`` (what a checkpoint's hyper-parameters hold).
    """

    monitor: ClassVar[Monitor] = Monitor("val/loss", "min")
    needs_fit: ClassVar[bool] = True
    has_test: ClassVar[bool] = True
    predicts_segmentation: ClassVar[bool] = False
    segments_from_support: ClassVar[bool] = False
    default_optim: ClassVar[OptimConfig] = OptimConfig()

    def __init__(self, optim: OptimConfig | dict[str, Any] | None = None) -> None:
        super().__init__()
        self.optim = OptimConfig.coerce(optim, self.default_optim)
        self._test_rows: list[dict[str, Any]] = []
        self.test_rows: list[dict[str, Any]] = []
        self.test_summary: dict[str, Any] = {}

    def save_task_hyperparameters(self, ignore: Sequence[str] = ()) -> None:
        """``save_hyperparameters`` of the subclass's ``__init__``, with ``optim`` stored as a plain dict.

        Checkpoints then hold only plain types, so they load with ``torch.load(weights_only=True)``.
        A task built inside another task's ``__init__`` (the search proxy loads two frozen tasks) keeps
        its own arguments: LightningCLI's hyper-parameters of the outer class are not taken for them.
        """
        frame = _caller_frame()
        token = _given_hyperparameters.set(None) if self._given_hparams_are_foreign() else None
        try:
            self.save_hyperparameters(ignore=list(ignore), frame=frame)
        finally:
            if token is not None:
                _given_hyperparameters.reset(token)
        self.hparams["optim"] = self.optim.as_dict()

    def _given_hparams_are_foreign(self) -> bool:
        """Whether LightningCLI's pending hyper-parameters describe another class than this one."""
        given = _given_hyperparameters.get()
        if not given or "_class_path" not in given:
            return False
        module, _, name = str(given["_class_path"]).rpartition(".")
        return getattr(importlib.import_module(module), name, None) is not type(self)

    def on_train_epoch_start(self) -> None:
        """Tell the data the epoch (augmentation seeds), also when DDP replaced the sampler or on resume."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "set_epoch"):
            datamodule.set_epoch(self.current_epoch)

    # -- optimisation ------------------------------------------------------------------------------
    def optim_parameters(self) -> Iterable[Any]:
        """What the optimizer updates: every trainable parameter (override for groups)."""
        return [p for p in self.parameters() if p.requires_grad]

    def configure_optimizers(self) -> dict[str, Any] | None:
        """Optimizer + schedule from ``self.optim`` (per epoch or per step)."""
        cfg = self.optim
        optimizer = build_optimizer(self.optim_parameters(), cfg)
        if cfg.interval == "epoch":
            total = self.trainer.max_epochs
        else:
            total = int(self.trainer.estimated_stepping_batches)
        scheduler = build_scheduler(optimizer, cfg, total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": cfg.interval}}

    # -- test results ------------------------------------------------------------------------------
    def add_test_rows(self, rows: Iterable[dict[str, Any]]) -> None:
        """Keep per-item test rows (each with a unique ``id``) for the end of the test epoch."""
        self._test_rows.extend(rows)

    def summarise_test(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """The test summary of the gathered rows; ``summary["mean"]`` is logged as ``test/<key>``."""
        return summarise_rows(rows)

    def on_test_epoch_start(self) -> None:
        """Start a fresh list of rows."""
        self._test_rows = []

    def on_test_epoch_end(self) -> None:
        """Gather the rows of every rank, summarise, log ``test/<metric>``, set the results."""
        rows = gather_rows(self._test_rows)
        summary = self.summarise_test(rows)
        for key, value in summary.get("mean", {}).items():
            self.log(f"test/{key}", value, rank_zero_only=True)
        self.test_rows, self.test_summary = rows, summary

    def run_dir(self) -> str | None:
        """This run's directory (no collective call), None outside a trainer with a logger."""
        return local_log_dir(self.trainer) if self._trainer is not None else None

    # -- prediction --------------------------------------------------------------------------------
    def predict_log_probs(self, image: Tensor) -> Tensor:
        """Class log-probabilities of ``image`` (segmentation families).

        Shape:
            ``[B, in_channels, H, W]`` -> ``[B, max(C, 2), H, W]``.

        Raises:
            TypeError: For a task whose output is not a segmentation.
        """
        if not self.predicts_segmentation:
            raise TypeError(f"{type(self).__name__} does not predict segmentations")
        return log_probabilities(self(image))

    def predict_step(self, batch: dict[str, Any], batch_idx: int = 0) -> Tensor:
        """Class probabilities ``[B, C, H, W]`` of ``batch["image"]`` (segmentation families).

        Raises:
            TypeError: For a task whose output is not a segmentation.
        """
        return self.predict_log_probs(batch["image"]).exp()


def probabilities(logits: Tensor) -> Tensor:
    """Softmax over classes, or a two-channel sigmoid for single-channel (binary) logits.

    Shape:
        ``[B, C, H, W]`` -> ``[B, max(C, 2), H, W]``.
    """
    if logits.shape[1] == 1:
        fg = logits.float().sigmoid()
        return torch.cat([1.0 - fg, fg], dim=1)
    return logits.float().softmax(dim=1)


def log_probabilities(logits: Tensor) -> Tensor:
    """Log-softmax over classes, or the two-channel log-sigmoid pair for single-channel logits.

    Interpolating these and taking the argmax gives the argmax of the interpolated logits (the
    per-pixel normaliser is shared by all classes), so resized predictions match the test's.

    Shape:
        ``[B, C, H, W]`` -> ``[B, max(C, 2), H, W]``.
    """
    if logits.shape[1] == 1:
        x = logits.float()
        return torch.cat([F.logsigmoid(-x), F.logsigmoid(x)], dim=1)
    return logits.float().log_softmax(dim=1)


def _caller_frame() -> Any:
    frame = inspect.currentframe()
    # _caller_frame <- save_task_hyperparameters <- the subclass __init__
    return frame.f_back.f_back if frame is not None and frame.f_back is not None else None
