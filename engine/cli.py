"""The framework's LightningCLI: typed task contract, config stacking, run dirs, fit-then-test."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import lightning as L
from jsonargparse import ActionYesNo
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from core.checkpoint_io import check_checkpoint, safe_loading, trust_checkpoints
from datasets.preflight import preflight_datamodule
from engine.callbacks import default_callbacks
from engine.export import check_format, export_weights
from engine.loggers import OfflineWandbLogger, ResumableCSVLogger
from engine.overrides import apply_policy, reject_default_root_dir
from engine.parser import FrameworkParser, prefer_int_over_float, translate_argv
from engine.run_dirs import finished_run, resolve_resume
from models.task import TaskModule

# run.py hands LightningCLI the translated sys.argv, which it would warn about on every run.
warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended", category=UserWarning)

__all__ = ["FrameworkCLI", "translate_argv"]


class FrameworkCLI(LightningCLI):
    """LightningCLI configured for the framework (``run=False``; :meth:`execute` runs fit + test).

    ``run.py --predict`` and ``run.py --export FMT --output FILE`` do not come here: they need no
    trainer, model or data (see ``run.main``).
    """

    def __init__(self, args: list[str] | None = None, instantiate: bool = True) -> None:
        self._instantiate = instantiate
        super().__init__(
            model_class=TaskModule,
            datamodule_class=L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            parser_class=FrameworkParser,
            parser_kwargs={"allow_abbrev": False, "description": "Train and test a segmentation task."},
            save_config_kwargs={"overwrite": True},
            seed_everything_default=42,
            auto_configure_optimizers=False,
            run=False,
            args=args,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Run-level options and the data -> model links (values given once)."""
        parser.add_argument(
            "--name", type=str, default="default", help="Experiment name: runs/<name>/version_N."
        )
        parser.add_argument("--runs_dir", type=str, default="runs", help="Root folder of all runs.")
        # ActionYesNo with an optional value: "--evaluate", "--evaluate true" and "--no_evaluate" all work.
        parser.add_argument(
            "--evaluate", action=ActionYesNo, nargs="?", default=False, help="Only test --ckpt; no training."
        )
        self._add_checkpoint_options(parser)
        self._add_preflight_option(parser)
        parser.add_argument(
            "--aug_k",
            type=int | None,
            default=None,
            help="Superpixel policy k (autoSMIM's name): sets data.superpixels.params.n_segments.",
        )
        parser.add_argument(
            "--aug_n",
            type=int | None,
            default=None,
            help="Superpixel policy n (autoSMIM's name): sets model.n_masked.",
        )
        parser.add_argument(
            "--last_every_n_steps",
            type=int | None,
            default=None,
            help="Also refresh last.ckpt every N optimizer steps (so a killed run resumes mid-epoch).",
        )
        parser.add_argument(
            "--wandb.enabled", action=ActionYesNo, nargs="?", default=False, help="Also log to W&B."
        )
        parser.add_argument("--wandb.project", type=str, default="spseg", help="W&B project.")
        parser.add_argument(
            "--wandb.mode",
            type=str | None,
            default=None,
            help="online/offline/disabled; default $WANDB_MODE, else offline.",
        )
        prefer_int_over_float(parser)
        parser.link_arguments("data.init_args.num_classes", "model.init_args.num_classes")
        parser.link_arguments("data.init_args.in_channels", "model.init_args.in_channels")

    @staticmethod
    def _add_checkpoint_options(parser: LightningArgumentParser) -> None:
        """``--ckpt``, ``--trust_checkpoint``, ``--export`` and ``--resume``."""
        parser.add_argument("--ckpt", type=str | None, default=None, help="Checkpoint for --evaluate.")
        parser.add_argument(
            "--trust_checkpoint",
            action=ActionYesNo,
            nargs="?",
            default=False,
            help="Load checkpoints that need arbitrary pickled objects: RUNS CODE FROM THE FILES. Only for "
            "files you trust; the framework's own checkpoints never need it.",
        )
        parser.add_argument(
            "--export",
            type=str | None,
            default=None,
            help="'safetensors': also write the tested weights as <ckpt>.safetensors (no pickle; loads "
            "wherever a weights file is accepted).",
        )
        parser.add_argument(
            "--resume",
            type=str | None,
            default=None,
            help="'last' (newest last.ckpt of this experiment), a run dir, or a .ckpt file.",
        )
        parser.add_argument(
            "--retest", action=ActionYesNo, nargs="?", default=False, help="Test a finished run again."
        )

    @staticmethod
    def _add_preflight_option(parser: LightningArgumentParser) -> None:
        """``--skip_checks``: start without the data pre-flight (:mod:`datasets.preflight`)."""
        parser.add_argument(
            "--skip_checks",
            action=ActionYesNo,
            nargs="?",
            default=False,
            help="Skip the data pre-flight that reads every sample of every split before training.",
        )

    @property
    def experiment_dir(self) -> Path:
        """``<runs_dir>/<name>``: the folder of this experiment's ``version_N`` runs."""
        return Path(self.config["runs_dir"]) / self.config["name"]

    def before_instantiate_classes(self) -> None:
        """Apply the (k, n) policy names and resolve ``--resume`` to a checkpoint and run version."""
        reject_default_root_dir(self.config)
        check_format(self.config["export"])
        if self.config["evaluate"] and not self.config["ckpt"]:
            raise ValueError("--evaluate needs --ckpt PATH (a checkpoint written by a previous run)")
        trust_checkpoints(bool(self.config["trust_checkpoint"]))
        apply_policy(self.config, self.config.get("aug_k"), self.config.get("aug_n"))
        self.resume_ckpt, self.resume_version = resolve_resume(self.config.get("resume"), self.experiment_dir)
        for path in (self.resume_ckpt, self.config["ckpt"] if self.config["evaluate"] else None):
            if path is not None:
                check_checkpoint(path)

    def instantiate_classes(self) -> None:
        """Instantiate data, model and trainer unless built with ``instantiate=False`` (parse only)."""
        if not self._instantiate:
            return
        try:
            super().instantiate_classes()
        except ValueError as err:
            # jsonargparse wraps errors raised in __init__ (missing file, bad value) in a generic
            # "Does not validate against any of the Union subtypes", once per nesting level (a
            # settings block inside a data module); surface the original one.
            cause: BaseException = err
            while "Union subtypes" in str(cause) and isinstance(cause.__cause__, Exception):
                cause = cause.__cause__
            if cause is not err:
                raise cause from err
            raise

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        """Add the CSV (+ optional W&B) loggers and default checkpoint / LR callbacks."""
        trainer_cfg = self._get(self.config_init, "trainer", default={})
        if trainer_cfg.get("logger") in (None, True):
            kwargs["logger"] = self._default_loggers()
        configured = list(trainer_cfg.get("callbacks") or [])
        kwargs["callbacks"] = default_callbacks(
            self.model, configured, self.config["last_every_n_steps"], bool(trainer_cfg.get("fast_dev_run"))
        )
        # Without a logger (fast_dev_run, logger: false) Lightning writes under default_root_dir: keep
        # that inside the experiment's folder, never the working directory.
        kwargs["default_root_dir"] = str(self.experiment_dir)
        return super().instantiate_trainer(**kwargs)

    def _default_loggers(self) -> list[Any]:
        loggers: list[Any] = [
            ResumableCSVLogger(
                save_dir=self.config["runs_dir"], name=self.config["name"], version=self.resume_version
            )
        ]
        if self.config["wandb"]["enabled"]:
            loggers.append(
                OfflineWandbLogger(
                    project=self.config["wandb"]["project"],
                    name=self.config["name"],
                    save_dir=self.config["runs_dir"],
                    mode=self.config["wandb"]["mode"],
                )
            )
        return loggers

    def execute(self) -> dict[str, Any]:
        """Fit (resuming when asked) then test the best checkpoint, or test ``--ckpt`` with ``--evaluate``."""
        trainer, model, data = self.trainer, self.model, self.datamodule
        done = None if self.config["evaluate"] or self.config["retest"] else self.resume_ckpt
        if (finished := finished_run(done, trainer.max_epochs, trainer.max_steps)) is not None:
            return finished
        # Every split's files are read once before fit, so a bad test mask fails before training.
        skip, progress = bool(self.config.get("skip_checks")), trainer.progress_bar_callback is not None
        preflight_datamodule(data, self.config["runs_dir"], skip=skip, progress=progress)
        best: str | None = None
        if self.config["evaluate"]:  # --ckpt was checked before instantiation (it exists and is safe)
            best = self.config["ckpt"]
        elif model.needs_fit:
            with safe_loading() as weights_only:
                trainer.fit(model, datamodule=data, ckpt_path=self.resume_ckpt, weights_only=weights_only)
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else None
            best = best or None
        test: dict[str, Any] = {}
        if model.has_test:
            with safe_loading() as weights_only:
                trainer.test(model, datamodule=data, ckpt_path=best, weights_only=weights_only)
            test = model.test_summary.get("mean", {})
        result = {"run_dir": trainer.log_dir, "best_ckpt": best, "test": test}
        if self.config["export"] and trainer.is_global_zero:
            result["exported"] = str(export_weights(self.config["export"], best, model, trainer.log_dir))
        return result
