"""Trial parameter mapping, the proxy module on a fixed batch, and standalone proxy runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning as L
import pytest
import torch

import run
from policy_search.proxy_ops import evaluate_batch, load_frozen, superpixel_counts
from policy_search.trial import budget_of, main, parameter_overrides
from pretext.inpainting import SuperpixelInpainting
from pretext.jigsaw import JigsawProbe

SEARCH_SAMPLE = "configs/config_search_sample.yaml"


def save_lightning_checkpoint(module: L.LightningModule, path: Path) -> Path:
    """Write a checkpoint ``load_from_checkpoint`` reads (state dict + saved hyper-parameters)."""
    torch.save(
        {
            "state_dict": module.state_dict(),
            "hyper_parameters": dict(module.hparams),
            "pytorch-lightning_version": L.__version__,
        },
        path,
    )
    return path


def write_tiny_checkpoints(folder: Path) -> tuple[Path, Path]:
    """Inpainting + jigsaw checkpoints (ResNet-18, 1 channel) after a few optimisation steps on noise."""
    torch.manual_seed(0)
    inpainting = SuperpixelInpainting(
        in_channels=1, encoder_name="resnet18", decoder_channels=(32, 16, 8, 8, 8), n_masked=4
    )
    jigsaw = JigsawProbe(in_channels=1, encoder_name="resnet18", tile_features=16, freeze_encoder=False)
    image = torch.rand(2, 1, 32, 32) * 2 - 1
    mask = (torch.rand(2, 1, 32, 32) > 0.7).float()
    for model, loss_fn in (
        (inpainting, lambda m: ((m(image * (1 - mask), mask) - image * mask) ** 2).mean()),
        (jigsaw, lambda m: m(torch.rand(2, 4, 1, 16, 16)).logsumexp(1).mean()),
    ):
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        for _ in range(2):
            optimizer.zero_grad()
            loss_fn(model).backward()
            optimizer.step()
    return (
        save_lightning_checkpoint(inpainting, folder / "inpainting.ckpt"),
        save_lightning_checkpoint(jigsaw, folder / "jigsaw.ckpt"),
    )


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_tiny_checkpoints(tmp_path_factory.mktemp("ckpt"))


def search_argv(checkpoints: tuple[Path, Path], runs_dir: Path, *extra: str) -> list[str]:
    return [
        "--cfg",
        SEARCH_SAMPLE,
        "--model.init_args.inpainting_checkpoint",
        str(checkpoints[0]),
        "--model.init_args.jigsaw_checkpoint",
        str(checkpoints[1]),
        "--runs_dir",
        str(runs_dir),
        *extra,
    ]


# --- parameter names -> overrides -------------------------------------------------------------------


def test_policy_and_dotted_names_map_by_name() -> None:
    params = {
        "aug_k": 512,
        "aug_n": 128.0,
        "model.init_args.lr": 0.001,
        "data.init_args.superpixels.params": {"n_segments": 64},
        "model.init_args.penalise_half_k": False,
    }
    assert parameter_overrides(params) == [
        "--aug_k",
        "512",
        "--aug_n",
        "128",
        "--model.init_args.lr",
        "0.001",
        "--data.init_args.superpixels.params",
        '{"n_segments": 64}',
        "--model.init_args.penalise_half_k",
        "false",
    ]
    assert parameter_overrides(None) == [] and parameter_overrides({}) == []


@pytest.mark.parametrize("name", ["lr", "aug_m", "model.", ".lr", "TRIAL_BUDGET"])
def test_unknown_parameter_name_is_a_clear_error(name: str) -> None:
    with pytest.raises(ValueError, match=f"unknown NNI parameter '{name}'.*aug_k, aug_n"):
        parameter_overrides({name: 1})


def test_policy_values_must_be_whole_numbers() -> None:
    with pytest.raises(ValueError, match="aug_n.*whole number"):
        parameter_overrides({"aug_n": 12.5})


def test_budget_from_bohb_or_parameter() -> None:
    assert budget_of({"TRIAL_BUDGET": 2.2, "aug_k": 3}) == 3
    assert budget_of({"budget": 4}) == 4
    assert budget_of({"aug_k": 3}) is None
    assert parameter_overrides({"TRIAL_BUDGET": 3, "aug_k": 40}, allow_budget=True) == ["--aug_k", "40"]
    with pytest.raises(ValueError, match="TRIAL_BUDGET"):
        budget_of({"TRIAL_BUDGET": 0})


# --- the objective on a fixed batch -------------------------------------------------------------------


def test_same_policy_and_seed_give_same_losses_other_n_differs(checkpoints: tuple[Path, Path]) -> None:
    inpainting = load_frozen("pretext.inpainting.SuperpixelInpainting", str(checkpoints[0]))
    jigsaw = load_frozen(
        "pretext.jigsaw.JigsawProbe", str(checkpoints[1]), encoder_checkpoint=None, freeze_encoder=False
    )
    generator = torch.Generator().manual_seed(3)
    blocks = torch.arange(64).reshape(8, 8).repeat_interleave(8, 0).repeat_interleave(8, 1)  # 64 squares
    batch = {
        "image": torch.rand(2, 1, 64, 64, generator=generator) * 2 - 1,
        "superpixels": torch.stack([blocks, blocks.flip(0)]).long(),
        "index": torch.tensor([4, 9]),
    }
    assert superpixel_counts(batch["superpixels"]) == [64, 64]
    first = evaluate_batch(inpainting, jigsaw, batch, n=8, seed=1)
    again = evaluate_batch(inpainting, jigsaw, batch, n=8, seed=1)
    other = evaluate_batch(inpainting, jigsaw, batch, n=24, seed=1)
    assert first == again
    assert first.masked_fraction == pytest.approx(8 / 64) and other.masked_fraction == pytest.approx(24 / 64)
    assert other.inpainting != first.inpainting and other.jigsaw != first.jigsaw


def test_missing_checkpoint_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="prepare_sample"):
        load_frozen("pretext.jigsaw.JigsawProbe", str(tmp_path / "nope.ckpt"))


# --- standalone runs -----------------------------------------------------------------------------------


def test_trial_main_standalone_reports_the_run_objective(
    checkpoints: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NNI_PLATFORM", raising=False)
    monkeypatch.delenv("NNI_OUTPUT_DIR", raising=False)
    value = main(search_argv(checkpoints, tmp_path, "--aug_k", "48", "--aug_n", "6"))
    summary = json.loads(next(tmp_path.glob("policy_search_sample/version_*/test_summary.json")).read_text())
    test = summary["mean"]
    assert test["penalised"] == 0.0 and math.isfinite(value) and value == pytest.approx(test["objective"])
    assert test["objective"] == pytest.approx(test["norm_loss_jigsaw"] - test["norm_loss_inpainting"])
    # 6 validation slices in batches of 2: NormLoss of 3 values lies in [1/3, 1/sqrt(3)]
    assert 1 / 3 - 1e-9 <= test["norm_loss_inpainting"] <= 3**-0.5 + 1e-9
    assert summary["k"] == 48 and summary["n"] == 6 and summary["num_batches"] == 3


def test_half_k_policy_is_penalised_not_crashed(
    checkpoints: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    result = run.main(search_argv(checkpoints, tmp_path, "--aug_k", "40", "--aug_n", "21"))
    assert result["test"]["objective"] == 10.0 and result["test"]["penalised"] == 1.0
    assert "n > k/2" in caplog.text


def test_n_at_least_real_count_is_penalised(checkpoints: tuple[Path, Path], tmp_path: Path) -> None:
    result = run.main(
        search_argv(
            checkpoints,
            tmp_path,
            "--aug_k",
            "16",
            "--aug_n",
            "40",
            "--model.init_args.penalise_half_k",
            "false",
        )
    )
    assert result["test"]["objective"] == 10.0
    summary = json.loads((Path(result["run_dir"]) / "test_summary.json").read_text())
    assert summary["penalty_rule"] == "real_count" and "real superpixels" in summary["penalty_reason"]
