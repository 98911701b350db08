"""Prediction from checkpoints of each family, refusals, ensembles, DICOM input, one preprocessing."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from datasets.image_io import read_image
from datasets.preprocess import eval_tensor
from datasets.records import SampleRecord
from datasets.segmentation_dataset import SegmentationDataset
from datasets.transforms import build_transforms
from engine.predict import parse_predict_args, run_prediction
from engine.predict.checkpoints import PredictionModel, check_ensemble, load_prediction_model
from engine.predict.runner import Predictor
from models.noisy import NoisyLabelSegmentation
from models.segmentation_module import SegmentationModule
from tests.engine.conftest import REPO
from tests.fewshot.test_volumes import _write_dicom_series

NUCLEI = REPO / "datasets" / "sample" / "nuclei" / "test"
TINY = {"model": "unet", "model_kwargs": {"base_channel": 4}, "in_channels": 1}


def save_checkpoint(path: Path, module, class_path: str | None, image_size: int | None = 32) -> str:
    hparams = {k: v for k, v in dict(module.hparams).items()}
    if class_path is not None:
        hparams["_class_path"] = class_path
    ckpt = {"state_dict": module.state_dict(), "hyper_parameters": hparams}
    if image_size is not None:
        ckpt["datamodule_hyper_parameters"] = {"image_size": image_size, "in_channels": 1}
    torch.save(ckpt, path)
    return str(path)


def supervised(tmp_path: Path, num_classes: int = 2, name: str = "sup.ckpt") -> str:
    torch.manual_seed(0)
    module = SegmentationModule(**TINY, num_classes=num_classes)
    return save_checkpoint(tmp_path / name, module, "models.segmentation_module.SegmentationModule")


def test_pretext_and_fewshot_checkpoints_are_refused_in_one_line(tmp_path):
    for class_path, text in [
        ("pretext.inpainting.SuperpixelInpainting", "this checkpoint is a pretext model; fine-tune it first"),
        ("pretext.rotation.RotationProbe", "this checkpoint is a pretext model; fine-tune it first"),
        ("pretext.byol.BYOL", "this checkpoint is a pretext model; fine-tune it first"),
        ("models.fewshot.module.ALPNetModule", "few-shot model"),
    ]:
        path = tmp_path / "x.ckpt"
        torch.save({"state_dict": {}, "hyper_parameters": {"_class_path": class_path}}, path)
        with pytest.raises(ValueError) as err:
            load_prediction_model(str(path), {})
        message = str(err.value).replace(f" ({class_path})", "")
        assert text in message and "\n" not in message and str(path) in message


def test_noisy_label_checkpoint_predicts_with_either_peer_or_their_mean(tmp_path):
    torch.manual_seed(0)
    module = NoisyLabelSegmentation(method="jocor", **TINY, num_classes=2).eval()
    path = save_checkpoint(tmp_path / "noisy.ckpt", module, "models.noisy.module.NoisyLabelSegmentation")
    image = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        peers = [net(image).log_softmax(1) for net in module.nets]
        mean = torch.stack([p.exp() for p in peers]).mean(0).log()
        for choice, expected in [("net1", peers[0]), ("net2", peers[1]), ("mean", mean)]:
            loaded = load_prediction_model(path, {}, noisy_net=choice)
            torch.testing.assert_close(loaded.module.predict_log_probs(image), expected, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="--noisy_net net2 applies to noisy-label checkpoints"):
        load_prediction_model(supervised(tmp_path), {}, noisy_net="net2")


def test_ensemble_members_must_agree_on_classes(tmp_path):
    models = [load_prediction_model(supervised(tmp_path, k, f"k{k}.ckpt"), {}) for k in (2, 3)]
    with pytest.raises(
        ValueError, match=r"k2\.ckpt has num_classes=2 but --ckpt .*k3\.ckpt has num_classes=3"
    ):
        check_ensemble(models)
    out = tmp_path / "out"
    args = ["--predict", "--no_progress", "--input", str(NUCLEI / "images"), "--output", str(out)]
    with pytest.raises(ValueError, match="num_classes=2 but"):
        run_prediction(parse_predict_args([*args, "--ckpt", models[0].path, "--ckpt", models[1].path]))
    with pytest.raises(ValueError, match="--palette binary needs a 2-class model, this one has 3"):
        run_prediction(parse_predict_args([*args, "--ckpt", models[1].path, "--palette", "binary"]))


def test_checkpoint_without_its_config_needs_cfg(tmp_path):
    torch.manual_seed(0)
    module = SegmentationModule(**TINY, num_classes=2)
    bare = save_checkpoint(tmp_path / "bare.ckpt", module, None, image_size=None)
    with pytest.raises(ValueError, match="does not name its task class.*pass --cfg"):
        load_prediction_model(bare, {})
    config = {
        "model": {"class_path": "models.segmentation_module.SegmentationModule", "init_args": TINY},
        "data": {"init_args": {"image_size": 32}},
    }
    loaded = load_prediction_model(bare, config)
    assert loaded.image_size == (32, 32) and loaded.in_channels == 1
    with pytest.raises(ValueError, match="does not record the training image size"):
        load_prediction_model(bare, {"model": config["model"]})


def test_prediction_preprocessing_is_the_test_stage_preprocessing():
    record = SampleRecord("r0_c1", NUCLEI / "images" / "r0_c1.png", NUCLEI / "masks" / "r0_c1.png")
    dataset = SegmentationDataset([record], 2, 1, build_transforms(None, 48, "test"), "test")
    expected = dataset[0]["image"]
    torch.testing.assert_close(eval_tensor(read_image(record.image, 1), 48), expected, rtol=0, atol=0)


def test_dicom_series_and_multichannel_volumes(tmp_path):
    path = supervised(tmp_path)
    series = tmp_path / "series"
    series.mkdir()
    arr = np.random.default_rng(0).integers(-200, 300, size=(4, 20, 24))  # [z, y, x]
    _write_dicom_series(series, arr, (0.8, 0.9, 2.5), (10.0, -20.0, 30.0))
    out = tmp_path / "out"
    run_prediction(
        parse_predict_args(["--ckpt", path, "--input", str(series), "--output", str(out), "--amp"])
    )
    pred = nib.load(str(out / "series.nii.gz"))
    assert pred.shape == (24, 20, 4) and nib.aff2axcodes(pred.affine) == ("L", "P", "S")
    np.testing.assert_allclose(pred.affine[:3, 3], [-10.0, 20.0, 30.0], atol=1e-4)
    assert pred.header.get_zooms()[:3] == pytest.approx((0.8, 0.9, 2.5), abs=1e-4)
    two = tmp_path / "two"
    two.mkdir()
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 3, 2), np.float32), np.eye(4)), str(two / "v.nii.gz"))
    with pytest.raises(ValueError, match=r"v\.nii\.gz has 2 channels but the model takes 1"):
        run_prediction(
            parse_predict_args(["--ckpt", path, "--input", str(two), "--output", str(tmp_path / "o2")])
        )


def test_predictor_sliding_mode_on_a_large_image_matches_its_size(tmp_path):
    loaded: PredictionModel = load_prediction_model(supervised(tmp_path), {})
    image = np.random.default_rng(0).random((75, 130, 1), dtype=np.float32)
    for mode in ("resize", "sliding"):
        (log_probs,) = Predictor([loaded], tta="flip", mode=mode, batch_size=3).predict([image])
        assert log_probs.shape == (2, 75, 130)
        torch.testing.assert_close(log_probs.exp().sum(0), torch.ones(75, 130), atol=1e-4, rtol=0)
