"""What a checkpoint needs beyond Lightning's own state for a resumed run to repeat an uninterrupted one.

:class:`ResumeState` saves, in every checkpoint, the random generators (Python, NumPy, torch, CUDA) and
the training metrics accumulated so far in the epoch (``self.log(..., on_epoch=True)`` means and sums,
which Lightning does not save), and restores them when a run resumes. All of it is plain values and
tensors, so the checkpoint still loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback


def capture_rng() -> dict[str, Any]:
    """The state of every global random generator, as tensors and plain values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Set every global random generator to ``state`` (from :func:`capture_rng`)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _epoch_results(trainer: L.Trainer) -> Any:
    # Lightning's accumulators of the values logged in training_step during the current epoch.
    return trainer.fit_loop.epoch_loop._results


def capture_epoch_metrics(trainer: L.Trainer) -> dict[str, dict[str, torch.Tensor]]:
    """The accumulated ``on_epoch`` training values: ``{key: {"value", "cumulated_batch_size"?}}``."""
    saved: dict[str, dict[str, torch.Tensor]] = {}
    for key, metric in _epoch_results(trainer).items():
        if not metric.is_tensor or not metric.meta.on_epoch or metric.has_reset:
            continue
        entry = {"value": metric.value.detach().cpu().clone()}
        if metric.meta.is_mean_reduction:
            entry["cumulated_batch_size"] = metric.cumulated_batch_size.detach().cpu().clone()
        saved[key] = entry
    return saved


def merge_epoch_metrics(trainer: L.Trainer, saved: dict[str, dict[str, torch.Tensor]]) -> dict[str, Any]:
    """Fold the saved accumulators into the ones of the first batches after a resume.

    A fresh accumulator holds the reduction of the resumed batches alone (``0 + v * n`` for a mean), so
    combining it with the saved one gives bit for bit the value of the uninterrupted epoch.

    Returns:
        The saved entries whose key has not been logged yet (merged at a later batch).
    """
    results = _epoch_results(trainer)
    left: dict[str, Any] = {}
    for key, entry in saved.items():
        metric = results.get(key)
        if metric is None or not metric.is_tensor:
            left[key] = entry
            continue
        value = entry["value"].to(metric.value.device)
        if metric.meta.is_max_reduction or metric.meta.is_min_reduction:
            metric.value = metric.meta.reduce_fx(value, metric.value)
        else:
            metric.value = value + metric.value
        if "cumulated_batch_size" in entry and metric.meta.is_mean_reduction:
            size = entry["cumulated_batch_size"].to(metric.cumulated_batch_size.device)
            metric.cumulated_batch_size = size + metric.cumulated_batch_size
    return left


class ResumeState(Callback):
    """Save the RNGs and the epoch's training accumulators in every checkpoint; restore them on resume.

    The generators are restored at ``on_train_start``, after everything a resumed run does before its
    first step (model construction, sanity check) and before the first batch it trains on. The loaded
    checkpoint's step also tells the CSV logger which rows the resumed run will write again.
    """

    def __init__(self) -> None:
        self._trainer: L.Trainer | None = None
        self._rng: dict[str, Any] | None = None
        self._metrics: dict[str, Any] = {}
        self._metrics_epoch = -1

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Keep the trainer: ``state_dict`` is called without it."""
        self._trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        """RNG states, the epoch, the global step and the accumulated epoch metrics."""
        trainer = self._trainer
        if trainer is None:
            return {}
        return {
            "rng": capture_rng(),
            "epoch": trainer.current_epoch,
            "global_step": trainer.global_step,
            "epoch_metrics": capture_epoch_metrics(trainer),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Hold the states until training starts; drop the CSV rows this checkpoint does not cover.

        Only when fitting: testing a checkpoint also loads the callbacks' states.
        """
        if not state_dict or self._trainer is None or self._trainer.state.fn != "fit":
            return
        self._rng = state_dict["rng"]
        self._metrics = dict(state_dict["epoch_metrics"])
        self._metrics_epoch = int(state_dict["epoch"])
        for logger in self._trainer.loggers:
            drop = getattr(logger, "drop_rows_from", None)
            if callable(drop):
                drop(int(state_dict["global_step"]))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Restore the generators saved in the checkpoint the run resumed from."""
        if self._rng is not None:
            restore_rng(self._rng)
            self._rng = None

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        """After the first batch of a run resumed mid-epoch, add the saved accumulators to its own."""
        if not self._metrics:
            return
        if trainer.current_epoch != self._metrics_epoch:
            self._metrics = {}
            return
        self._metrics = merge_epoch_metrics(trainer, self._metrics)
