"""Writing test results: ``test_per_image.csv`` + ``test_summary.json``, once, on rank 0, atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from datasets.atomic_io import atomic_write_csv, atomic_write_json
from models.task import TaskModule, local_log_dir

PER_ITEM_FILE = "test_per_image.csv"
SUMMARY_FILE = "test_summary.json"


def write_test_results(rows: list[dict[str, Any]], summary: dict[str, Any], out_dir: str | Path) -> Path:
    """Write the per-item rows as CSV and the summary as JSON into ``out_dir``.

    Args:
        rows: One dict per test item (same keys in every row; the first row's order is kept).
        summary: The task's summary (``mean`` holds the headline metrics).
        out_dir: The run directory.

    Returns:
        The path of the summary JSON.
    """
    out = Path(out_dir)
    columns = list(dict.fromkeys(key for row in rows for key in row)) if rows else ["id"]
    atomic_write_csv(out / PER_ITEM_FILE, rows, columns)
    atomic_write_json(out / SUMMARY_FILE, summary)
    return out / SUMMARY_FILE


class TestResultsWriter(Callback):
    """After every test run, rank 0 writes the task's ``test_rows`` / ``test_summary`` to the run dir."""

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write the results gathered by :class:`models.task.TaskModule` (rank 0 only)."""
        if not isinstance(pl_module, TaskModule):
            raise TypeError(f"{type(pl_module).__name__} is not a models.task.TaskModule")
        log_dir = local_log_dir(trainer)
        if trainer.is_global_zero and log_dir is not None:
            write_test_results(pl_module.test_rows, pl_module.test_summary, log_dir)
