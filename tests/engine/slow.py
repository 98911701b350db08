"""A callback that slows training down so a test can kill a run at a chosen step."""

from __future__ import annotations

import time

import lightning as L


class SlowDown(L.Callback):
    """Sleep after every training batch."""

    def __init__(self, seconds: float = 0.5) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        time.sleep(self.seconds)
