"""Every shipped config parses (values, types, keys) and the sample ones instantiate."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from engine.cli import FrameworkCLI, translate_argv

from .conftest import REPO


def _is_run_config(path: Path) -> bool:
    """NNI experiment files (trialCommand, searchSpaceFile) are not run.py configs."""
    keys = set(yaml.safe_load(path.read_text()) or {})
    return not keys & {"trialCommand", "searchSpaceFile", "searchSpace"}


# Configs that need a dataset that is not shipped are parsed with a placeholder root.
CONFIGS = sorted(p.name for p in (REPO / "configs").glob("*.yaml") if _is_run_config(p))
FRAGMENTS = {"wandb.yaml"}


@pytest.mark.parametrize("name", [c for c in CONFIGS if c not in FRAGMENTS])
def test_config_parses(name, tmp_path):
    args = [
        "--cfg",
        str(REPO / "configs" / name),
        "--runs_dir",
        str(tmp_path),
        "--data.init_args.root",
        str(tmp_path),
    ]
    cli = FrameworkCLI(args=translate_argv(args), instantiate=False)
    assert cli.config.model.class_path and cli.config.data.class_path
    assert cli.config.data.init_args.num_classes >= 1


def test_fragment_stacks_on_a_config(tmp_path):
    args = ["--cfg", str(REPO / "configs" / "demo.yaml"), "--cfg", str(REPO / "configs" / "wandb.yaml")]
    cli = FrameworkCLI(args=translate_argv(args + ["--runs_dir", str(tmp_path)]), instantiate=False)
    assert cli.config.wandb.enabled is True and cli.config.trainer.max_epochs == 40


@pytest.mark.parametrize("name", ["demo.yaml", "demo_ct.yaml", "kd_sample.yaml"])
def test_sample_configs_instantiate(name, tmp_path):
    cli = FrameworkCLI(
        args=translate_argv(["--cfg", str(REPO / "configs" / name), "--runs_dir", str(tmp_path)])
    )
    assert cli.model.hparams.num_classes == cli.datamodule.num_classes  # linked, given once
    assert cli.model.hparams.in_channels == cli.datamodule.in_channels
