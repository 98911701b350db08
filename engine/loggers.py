"""Loggers: W&B offline unless the user says otherwise; a CSV logger that survives resuming."""

from __future__ import annotations

import csv
import functools
import io
import os
import warnings
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.fabric.utilities.rank_zero import rank_zero_only
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
    """``CSVLogger`` that continues an existing ``metrics.csv`` and writes every row as it is logged.

    Lightning's writer removes ``metrics.csv`` when the run directory already exists, so resuming a
    run into its own directory would lose the history logged before the interruption; this one keeps
    it (without a row cut short by a kill). Rows are written at once (``flush_logs_every_n_steps=1``),
    so a killed run has lost none; on resume :meth:`drop_rows_from` removes those the resumed run
    writes again, so the file ends up as the uninterrupted run's.

    Args:
        *args: Passed to ``CSVLogger``.
        **kwargs: Passed to ``CSVLogger`` (``flush_logs_every_n_steps`` defaults to 1).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("flush_logs_every_n_steps", 1)
        super().__init__(*args, **kwargs)

    @property
    def metrics_path(self) -> str:
        """``<run>/metrics.csv``."""
        return os.path.join(self.log_dir, "metrics.csv")

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The experiment writer, with the previous rows and header of ``metrics.csv`` restored."""
        if self._experiment is not None:
            return self._experiment
        header, rows = _read_rows(self.metrics_path)
        with warnings.catch_warnings():
            # Lightning's "previous log files ... will be deleted": they are written back below.
            warnings.filterwarnings("ignore", message="Experiment logs directory")
            experiment = super().experiment
        if header:
            _write_rows(self.metrics_path, header, rows)
            experiment.metrics_keys = sorted(set(header))
        # A new key rewrites the whole file under its new header: through a temporary file, not in place.
        experiment._rewrite_with_new_header = functools.partial(_rewrite_header, self.metrics_path)
        return experiment

    @rank_zero_only
    def drop_rows_from(self, step: int) -> int:
        """Remove the rows logged at ``step`` or later (a resumed run logs them again).

        A row logged at step ``s`` belongs to training step ``s + 1`` or to the epoch end or epoch
        start at ``s``; a checkpoint at ``global_step`` ``g`` covers every row below ``g``.

        Returns:
            How many rows were removed.
        """
        header, rows = _read_rows(self.metrics_path)
        kept = [row for row in rows if not row.get("step") or int(float(row["step"])) < step]
        if header:
            _write_rows(self.metrics_path, header, kept)
        if self._experiment is not None:
            self._experiment.metrics = [m for m in self._experiment.metrics if int(m["step"]) < step]
        return len(rows) - len(kept)


def _read_rows(path: str) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a ``metrics.csv``; a last line cut short by a kill is left out."""
    if not os.path.isfile(path):
        return [], []
    with open(path, newline="") as handle:
        text = handle.read()
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    reader = csv.DictReader(io.StringIO(text))
    rows = list(reader)
    return list(reader.fieldnames or []), rows


def _rewrite_header(path: str, fieldnames: list[str]) -> None:
    """Rewrite ``metrics.csv`` under a header with more keys (atomically)."""
    _, rows = _read_rows(path)
    _write_rows(path, fieldnames, rows)


def _write_rows(path: str, header: list[str], rows: list[dict[str, str]]) -> None:
    """Write ``metrics.csv`` through a temporary file (a kill keeps the old one)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
