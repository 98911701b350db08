"""Config stacking and data -> model links (every config's run is in test_every_config.py)."""

from __future__ import annotations

import pytest

from engine.cli import FrameworkCLI, translate_argv

from .conftest import REPO


def test_fragment_stacks_on_a_config(tmp_path):
    args = ["--cfg", str(REPO / "configs" / "demo.yaml"), "--cfg", str(REPO / "configs" / "wandb.yaml")]
    cli = FrameworkCLI(args=translate_argv(args + ["--runs_dir", str(tmp_path)]), instantiate=False)
    assert cli.config.wandb.enabled is True and cli.config.trainer.max_epochs == 40


@pytest.mark.parametrize("name", ["demo.yaml", "demo_ct.yaml", "kd_sample.yaml"])
def test_data_options_link_into_the_model(name, tmp_path):
    cli = FrameworkCLI(
        args=translate_argv(["--cfg", str(REPO / "configs" / name), "--runs_dir", str(tmp_path)])
    )
    assert cli.model.hparams.num_classes == cli.datamodule.num_classes  # linked, given once
    assert cli.model.hparams.in_channels == cli.datamodule.in_channels
