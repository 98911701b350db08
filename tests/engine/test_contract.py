"""The task contract as the engine reads it: monitor, fit/test flags, Lightning's own flags, results."""

from __future__ import annotations

import csv
import importlib
import inspect
import json
import pkgutil
from pathlib import Path

import pytest

from engine.cli import FrameworkCLI, translate_argv
from models.task import Monitor, TaskModule
from run import main


def _task_classes() -> list[type]:
    found = []
    for package in ("models", "pretext", "policy_search"):
        for info in pkgutil.walk_packages(importlib.import_module(package).__path__, f"{package}."):
            module = importlib.import_module(info.name)
            found += [c for _, c in inspect.getmembers(module, inspect.isclass) if c.__module__ == info.name]
    import lightning as L

    return [c for c in found if issubclass(c, L.LightningModule)]


def test_every_lightning_module_of_the_framework_is_a_task():
    classes = _task_classes()
    names = {c.__name__ for c in classes}
    assert {"SegmentationModule", "NoisyLabelSegmentation", "ALPNetModule", "SuperpixelInpainting"} <= names
    assert {"BYOL", "RotationProbe", "JigsawProbe", "ColorizationProbe", "PolicyProxyObjective"} <= names
    for cls in classes:
        assert issubclass(cls, TaskModule), cls
        assert isinstance(cls.monitor, Monitor) and cls.monitor.mode in ("min", "max")
        if cls is not TaskModule and cls.__name__ != "PolicyProxyObjective":  # the proxy trains nothing
            assert "configure_optimizers" not in vars(cls), cls


def test_supervised_checkpoint_monitors_val_dice_without_a_configured_callback(tiny):
    cli = FrameworkCLI(args=translate_argv(tiny("--trainer.callbacks", "[]")))
    assert cli.trainer.checkpoint_callback.monitor == "val/dice"
    assert cli.trainer.checkpoint_callback.mode == "max"


def test_integer_limit_flags_mean_batches(tiny):
    cli = FrameworkCLI(args=translate_argv(tiny("--trainer.limit_val_batches", "1")))
    assert cli.config.trainer.limit_val_batches == 1 and isinstance(cli.config.trainer.limit_val_batches, int)
    frac = FrameworkCLI(args=translate_argv(tiny("--trainer.limit_train_batches", "0.5")), instantiate=False)
    assert frac.config.trainer.limit_train_batches == 0.5


def test_limit_val_batches_1_runs_exactly_one_validation_batch(tiny):
    cli = FrameworkCLI(
        args=translate_argv(tiny("--trainer.limit_val_batches", "1", "--data.batch_size", "1", epochs=1))
    )
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.trainer.num_val_batches == [1]


def test_default_root_dir_is_rejected_with_a_pointer_to_runs_dir(tiny, tmp_path):
    with pytest.raises(ValueError, match="default_root_dir.*set --runs_dir"):
        FrameworkCLI(args=translate_argv(tiny("--trainer.default_root_dir", str(tmp_path / "x"))))


def test_results_are_written_once_as_csv_and_json(tiny):
    result = main(tiny())
    run_dir = Path(result["run_dir"])
    summary = json.loads((run_dir / "test_summary.json").read_text())
    with (run_dir / "test_per_image.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == summary["num_images"] == 3
    dice = [float(r["dice"]) for r in rows]
    assert summary["mean"]["dice"] == pytest.approx(sum(dice) / len(dice))
    # NaN-aware: HD95 is NaN (flagged) when a tiny model predicts nothing.
    assert result["test"] == pytest.approx(summary["mean"], nan_ok=True)


def test_noisy_module_forwards_the_epoch_to_the_data(tmp_path):
    from models.noisy.module import NoisyLabelSegmentation

    class FakeData:
        epochs: list[int] = []

        def set_epoch(self, epoch: int) -> None:
            self.epochs.append(epoch)

    class FakeTrainer:
        datamodule = FakeData()
        current_epoch = 3

    module = NoisyLabelSegmentation(model="unet", model_kwargs={"base_channel": 4}, method="plain")
    module._trainer = FakeTrainer()  # what Lightning attaches
    module.on_train_epoch_start()
    assert FakeData.epochs == [3]


def test_a_task_built_inside_another_keeps_its_own_hyperparameters():
    # LightningCLI instantiates the outer task inside a context holding ITS hyper-parameters; a task
    # loaded in its __init__ (the search proxy's frozen models) used to take those instead of its own.
    from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters_context

    from pretext.rotation import RotationProbe

    outer = {"_class_path": "policy_search.proxy_module.PolicyProxyObjective", "n_masked": 6}
    cli = "lightning.pytorch.cli.instantiate_module"
    with _given_hyperparameters_context(hparams=outer, instantiator=cli):
        inner = RotationProbe(in_channels=1, encoder_name="resnet18", freeze_encoder=False)
    assert inner.hparams.encoder_name == "resnet18" and "n_masked" not in inner.hparams
    own = {"_class_path": "pretext.rotation.RotationProbe", **dict(inner.hparams)}
    with _given_hyperparameters_context(hparams=own, instantiator=cli):
        same = RotationProbe(in_channels=1, encoder_name="resnet18", freeze_encoder=False)
    assert same.hparams["_class_path"] == "pretext.rotation.RotationProbe"  # the CLI's own record kept
