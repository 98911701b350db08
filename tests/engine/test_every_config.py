"""Every shipped config instantiates and runs one ``fast_dev_run`` step (train, val, test).

Configs on the embedded sample run as shipped; the others run on a tiny fixture in their layout
(``every_config_fixtures.py``). Only sizes, workers and the device are overridden, so the data, model,
loss, optimizer, callbacks and checkpoint transfers each config names are the ones exercised.
"""

from __future__ import annotations

import pytest
import yaml

from run import main

from .every_config_fixtures import CONFIG_DIR, FIXTURES, FRAGMENTS, NNI_FILES

SHIPPED = sorted(p.name for p in CONFIG_DIR.glob("*.yaml"))
RUN_CONFIGS = [name for name in SHIPPED if name not in FRAGMENTS | NNI_FILES]
# One step on the CPU, in the main process; Lightning's precision plugins for GPUs do not run here.
FAST = [
    "--trainer.fast_dev_run", "1", "--trainer.accelerator", "cpu", "--trainer.devices", "1",
    "--trainer.strategy", "auto", "--trainer.precision", "32-true", "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false", "--data.num_workers", "0",
]  # fmt: skip
SEGMENTATION_DATA = [
    "--data.batch_size", "2", "--data.persistent_workers", "false", "--data.pin_memory", "false",
]  # fmt: skip
SMALL = ["--data.image_size", "64"]
FEWSHOT_DATA = ["--data.image_size", "32", "--data.episodes_per_epoch", "2"]
# Configs whose transforms pin the training size: run at their own size.
OWN_SIZE = {"config_inpainting.yaml", "acdc.yaml"}


def _overrides(name: str) -> list[str]:
    """Speed-only overrides for ``name`` (by the data module its config uses)."""
    text = (CONFIG_DIR / name).read_text()
    is_fewshot = "FewShotDataModule" in text or "fewshot_" in name
    extra = FEWSHOT_DATA if is_fewshot else SEGMENTATION_DATA + ([] if name in OWN_SIZE else SMALL)
    if "pretext.byol.BYOL" in text:
        extra = extra + ["--model.crop_size", "32"]
    return FAST + extra


def test_the_nni_files_are_experiments_and_the_fragments_stack():
    for name in NNI_FILES:
        assert "trialCommand" in yaml.safe_load((CONFIG_DIR / name).read_text()), name
    assert set(SHIPPED) >= FRAGMENTS


def test_every_config_has_a_fixture():
    missing = sorted(set(RUN_CONFIGS) - set(FIXTURES))
    stale = sorted(set(FIXTURES) - set(RUN_CONFIGS))
    assert not missing, f"configs without a fixture in tests/engine/every_config_fixtures.py: {missing}"
    assert not stale, f"fixtures for configs that no longer exist: {stale}"


@pytest.mark.parametrize("name", RUN_CONFIGS)
def test_config_runs_one_step(name, tmp_path):
    if name not in FIXTURES:
        pytest.fail(f"{name} has no fixture in tests/engine/every_config_fixtures.py")
    data_args = FIXTURES[name](tmp_path)
    runs = tmp_path / "runs"
    result = main(["--cfg", str(CONFIG_DIR / name), "--runs_dir", str(runs), *data_args, *_overrides(name)])
    text = (CONFIG_DIR / name).read_text()
    tested = "pretext.byol.BYOL" not in text and not name.startswith("byol")  # BYOL has no test stage
    assert bool(result["test"]) == tested, result["test"]
    for key, value in result["test"].items():
        # NaN != NaN. HD95 is NaN by definition when a side is empty (after one step a model may predict
        # nothing; models.metrics flags it); any other NaN is a bug.
        assert value == value or key.startswith("hd95"), f"{name}: test metric {key} is NaN"
