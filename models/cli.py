"""The framework's LightningCLI: config stacking, strict keys with suggestions, run dirs, fit-then-test."""

from __future__ import annotations

import difflib
import glob
import os
import re
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from jsonargparse import ActionYesNo, Namespace
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from models.config_stack import expand_config_args
from models.loggers import OfflineWandbLogger, ResumableCSVLogger

# run.py hands LightningCLI the translated sys.argv, which it would warn about on every run.
warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended", category=UserWarning)

ARG_ALIASES = {"--cfg": "--config", "--seed": "--seed_everything"}


def translate_argv(argv: list[str]) -> list[str]:
    """Map the framework's short flags onto LightningCLI's (``--cfg`` -> ``--config``, ``--seed``).

    Config files are expanded with their ``base:`` files first (see :mod:`models.config_stack`).
    """
    out = []
    for arg in argv:
        head, sep, tail = arg.partition("=")
        out.append(ARG_ALIASES.get(head, head) + sep + tail)
    return expand_config_args(out)


def _flat_keys(namespace: Any, prefix: str = "") -> list[str]:
    keys = []
    for key, value in vars(namespace).items() if isinstance(namespace, Namespace) else []:
        full = f"{prefix}{key}"
        keys.append(full)
        keys.extend(_flat_keys(value, f"{full}."))
    return keys


class FrameworkParser(LightningArgumentParser):
    """Argument parser that adds the closest valid key to 'unknown key' errors."""

    def error(self, message: str, ex: Exception | None = None) -> None:  # type: ignore[override]
        """Report a parse error, suggesting the closest valid key for a typo."""
        bad = re.findall(r"(?:unrecognized arguments: |does not accept option |Option )'?-*([\w.]+)", message)
        if bad:
            try:
                valid = _flat_keys(self.get_defaults(skip_validation=True))
            except Exception:  # noqa: BLE001 - building suggestions must never hide the real error
                valid = []
            hints = []
            for key in bad:
                candidates = [v for v in valid if v.split(".")[-1] != key] + valid
                close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
                if not close:
                    close = difflib.get_close_matches(
                        key.split(".")[-1], [v.split(".")[-1] for v in valid], n=1
                    )
                if close:
                    hints.append(f"unknown key {key!r}: did you mean {close[0]!r}?")
            if hints:
                message = f"{message}\n" + "\n".join(hints)
        super().error(message, ex)


class FrameworkCLI(LightningCLI):
    """LightningCLI configured for the framework (``run=False``; :meth:`execute` runs fit + test)."""

    def __init__(self, args: list[str] | None = None, instantiate: bool = True) -> None:
        self._instantiate = instantiate
        super().__init__(
            model_class=L.LightningModule,
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
        parser.add_argument("--ckpt", type=str | None, default=None, help="Checkpoint for --evaluate.")
        parser.add_argument(
            "--resume",
            type=str | None,
            default=None,
            help="'last' (newest last.ckpt of this experiment), a run dir, or a .ckpt file.",
        )
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
        parser.link_arguments("data.init_args.num_classes", "model.init_args.num_classes")
        parser.link_arguments("data.init_args.in_channels", "model.init_args.in_channels")

    def before_instantiate_classes(self) -> None:
        """Apply the (k, n) policy names and resolve ``--resume`` to a checkpoint and run version."""
        apply_policy(self.config, self.config.get("aug_k"), self.config.get("aug_n"))
        self.resume_ckpt, self.resume_version = resolve_resume(
            self.config.get("resume"), Path(self.config["runs_dir"]) / self.config["name"]
        )

    def instantiate_classes(self) -> None:
        """Instantiate data, model and trainer unless built with ``instantiate=False`` (parse only)."""
        if not self._instantiate:
            return
        try:
            super().instantiate_classes()
        except ValueError as err:
            # jsonargparse wraps errors raised in __init__ (missing file, bad value) in a generic
            # "Does not validate against any of the Union subtypes"; surface the original one.
            if isinstance(err.__cause__, Exception) and "Union subtypes" in str(err):
                raise err.__cause__ from err
            raise

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        """Add the CSV (+ optional W&B) loggers and default checkpoint / LR callbacks."""
        trainer_cfg = self._get(self.config_init, "trainer", default={})
        if trainer_cfg.get("logger") in (None, True):
            kwargs["logger"] = self._default_loggers()
        callbacks = list(trainer_cfg.get("callbacks") or [])
        if not any(isinstance(c, ModelCheckpoint) for c in callbacks):
            monitor, mode = getattr(self.model, "monitor", ("val/loss", "min"))
            callbacks.append(
                ModelCheckpoint(
                    monitor=monitor,
                    mode=mode,
                    save_last=True,
                    filename="best-{epoch:03d}",
                    auto_insert_metric_name=False,
                )
            )
        if self.config["last_every_n_steps"]:
            callbacks.append(
                ModelCheckpoint(
                    save_top_k=0, save_last=True, every_n_train_steps=self.config["last_every_n_steps"]
                )
            )
        if not any(isinstance(c, LearningRateMonitor) for c in callbacks):
            callbacks.append(LearningRateMonitor(logging_interval="epoch"))
        kwargs["callbacks"] = callbacks
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
        best: str | None = None
        if self.config["evaluate"]:
            if not self.config["ckpt"]:
                raise ValueError("--evaluate needs --ckpt PATH (a checkpoint written by a previous run)")
            if not Path(self.config["ckpt"]).is_file():
                raise FileNotFoundError(f"--ckpt {self.config['ckpt']} does not exist")
            best = self.config["ckpt"]
        elif getattr(model, "needs_fit", True):
            trainer.fit(model, datamodule=data, ckpt_path=self.resume_ckpt)
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else None
            best = best or None
        test: dict[str, Any] = {}
        if getattr(model, "has_test", True):
            trainer.test(model, datamodule=data, ckpt_path=best, weights_only=False)
            test = getattr(model, "test_summary", {}).get("mean", {})
        return {"run_dir": trainer.log_dir, "best_ckpt": best, "test": test}


def apply_policy(config: Namespace, aug_k: int | None, aug_n: int | None) -> None:
    """Write autoSMIM's policy names into the keys they stand for.

    Raises:
        ValueError: When the config has no superpixel section (``aug_k``) or the model takes no
            ``n_masked`` (``aug_n``), or a value is below 1.
    """
    if aug_k is not None:
        if aug_k < 1:
            raise ValueError(f"aug_k must be >= 1, got {aug_k}")
        superpixels = config["data"]["init_args"].get("superpixels")
        if superpixels is None:
            raise ValueError(
                "aug_k sets data.init_args.superpixels.params.n_segments, but the config has no "
                "data.init_args.superpixels section"
            )
        params = dict(superpixels["params"] or {})
        params["n_segments"] = aug_k
        superpixels["params"] = params
    if aug_n is not None:
        if aug_n < 1:
            raise ValueError(f"aug_n must be >= 1, got {aug_n}")
        if "n_masked" not in config["model"]["init_args"]:
            raise ValueError(
                f"aug_n sets model.init_args.n_masked, which {config['model']['class_path']} lacks"
            )
        config["model"]["init_args"]["n_masked"] = aug_n


def resolve_resume(resume: str | None, experiment_dir: Path) -> tuple[str | None, str | None]:
    """Find the checkpoint to resume from and the logger version to continue writing into.

    Args:
        resume: ``None``, ``"last"``, a run directory or a checkpoint file.
        experiment_dir: ``<runs_dir>/<name>``, searched for ``version_*/checkpoints/last.ckpt``.

    Returns:
        ``(ckpt_path, version)``, both ``None`` when not resuming.

    Raises:
        FileNotFoundError: When nothing resumable exists where ``resume`` points.
    """
    if not resume:
        return None, None
    if resume == "last":
        found = glob.glob(str(experiment_dir / "version_*" / "checkpoints" / "last.ckpt"))
        if not found:
            raise FileNotFoundError(
                f"--resume last: no version_*/checkpoints/last.ckpt under {experiment_dir}"
            )
        ckpt = Path(max(found, key=os.path.getmtime))
    elif Path(resume).is_dir():
        ckpt = Path(resume) / "checkpoints" / "last.ckpt"
    else:
        ckpt = Path(resume)
    if not ckpt.is_file():
        raise FileNotFoundError(f"--resume {resume}: checkpoint {ckpt} does not exist")
    run_dir = ckpt.parent.parent
    version = run_dir.name if run_dir.parent.resolve() == experiment_dir.resolve() else None
    return str(ckpt), version
