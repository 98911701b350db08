"""Loggers: W&B offline unless the user says otherwise; a CSV logger that survives resuming."""

from __future__ import annotations

import csv
import io
import os
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger, WandbLogger


def resolve_wandb_mode(mode: str | None) -> str:
    """Pick the W&B mode: explicit ``mode`` > ``$WANDB_MODE`` > ``offline``.

    Raises:
        ValueError: For a mode W&B does not know.
    """
    chosen = mode or os.environ.get("WANDB_MODE") or "offline"
    if chosen not in ("online", "offline", "disabled"):
        raise ValueError(f"W&B mode must be online, offline or disabled, got {chosen!r}")
    return chosen


class OfflineWandbLogger(WandbLogger):
    """``WandbLogger`` whose default is offline (no account, no network needed).

    Args:
        project: W&B project name.
        name: Run name.
        save_dir: Where the offline run files go (``wandb sync`` uploads them later).
        mode: ``online``, ``offline`` or ``disabled``; ``None`` reads ``$WANDB_MODE``, else offline.
        **kwargs: Passed to :class:`lightning.pytorch.loggers.WandbLogger`.
    """

    def __init__(
        self,
        project: str = "spseg",
        name: str | None = None,
        save_dir: str = "runs",
        mode: str | None = None,
        **kwargs: Any,
    ) -> None:
        resolved = resolve_wandb_mode(mode)
        os.makedirs(save_dir, exist_ok=True)
        super().__init__(
            project=project,
            name=name,
            save_dir=save_dir,
            offline=resolved == "offline",
            mode=resolved,
            **kwargs,
        )


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` that appends to an existing ``metrics.csv`` instead of deleting it.

    Lightning's writer removes ``metrics.csv`` when the run directory already exists, so resuming a
    run into its own directory would lose the history logged before the interruption.
    """

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The experiment writer, with the previous rows and header of ``metrics.csv`` restored."""
        if self._experiment is not None:
            return self._experiment
        path = os.path.join(self.log_dir, "metrics.csv")
        previous = None
        if os.path.isfile(path):
            with open(path, newline="") as handle:
                previous = handle.read()
        experiment = super().experiment
        if previous:
            with open(path, "w", newline="") as handle:
                handle.write(previous)
            header = next(csv.reader(io.StringIO(previous)), [])
            experiment.metrics_keys = sorted(set(header))
        return experiment
