"""``run.py --export onnx|torchscript``: the exported graph gives PyTorch's probabilities (sample images)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from core.errors import run_entry_point
from datasets.image_io import read_image
from datasets.preprocess import eval_tensor
from engine.predict.checkpoints import load_prediction_model
from run import _run_and_print, main
from tests.engine.conftest import REPO, tiny_args

SAMPLE_IMAGES = sorted((REPO / "datasets" / "sample" / "nuclei" / "test" / "images").iterdir())


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> str:
    """A tiny nuclei U-Net checkpoint (32 px, one epoch)."""
    tmp = tmp_path_factory.mktemp("export_train")
    return main([*tiny_args(tmp), "--model.hd95_in_test", "false"])["best_ckpt"]


def sample_batch(n: int, channels: int = 1) -> torch.Tensor:
    """The first ``n`` sample test images, preprocessed as at test (32 px, [-1, 1]; demo: grey)."""
    return torch.stack([eval_tensor(read_image(p, channels), 32) for p in SAMPLE_IMAGES[:n]])


def reference(ckpt: str, x: torch.Tensor) -> torch.Tensor:
    module = load_prediction_model(ckpt, {}).module
    with torch.no_grad():
        return module.predict_log_probs(x).exp()


def test_onnx_matches_pytorch_on_sample_images(ckpt, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (a test extra)")
    onnx = pytest.importorskip("onnx", reason="onnx not installed (a test extra)")
    out = tmp_path / "unet.onnx"
    result = main(["--export", "onnx", "--ckpt", ckpt, "--output", str(out)])
    assert result["exported"] == str(out) and result["verified"] and result["max_abs_diff"] <= 1e-4
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for n in (1, 3):  # dynamic batch
        x = sample_batch(n)
        got = torch.from_numpy(session.run(["probabilities"], {"image": x.numpy()})[0])
        torch.testing.assert_close(got, reference(ckpt, x), atol=1e-4, rtol=0)
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["image_size"]) == [32, 32] and meta["in_channels"] == "1"
    assert meta["task"] == "models.segmentation_module.SegmentationModule" and meta["num_classes"] == "2"


def test_torchscript_matches_pytorch_and_carries_preprocessing(ckpt, tmp_path):
    out = tmp_path / "unet.pt"
    assert main(["--export", "torchscript", "--ckpt", ckpt, "--output", str(out)])["verified"]
    extra = {"spseg.json": ""}
    loaded = torch.jit.load(str(out), map_location="cpu", _extra_files=extra)
    x = sample_batch(3)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), reference(ckpt, x), atol=1e-4, rtol=0)
    meta = json.loads(extra["spseg.json"])
    assert json.loads(meta["normalisation"]) == {"mean": 0.5, "std": 0.5, "input_range": [0, 1]}
    assert json.loads(meta["inference"])["mode"] == "resize"


def test_export_after_evaluate_writes_beside_the_checkpoint(ckpt, tmp_path):
    runs = str(tmp_path / "runs")
    args = [*tiny_args(tmp_path), "--runs_dir", runs, "--evaluate", "--ckpt", ckpt, "--export", "torchscript"]
    result = main([*args, "--model.hd95_in_test", "false"])
    assert result["exported"] == str(Path(ckpt).with_suffix(".pt")) and Path(result["exported"]).is_file()


def test_export_refuses_bad_requests_in_one_line(ckpt, tmp_path, capsys):
    existing = tmp_path / "m.pt"
    existing.write_bytes(b"keep me")
    cases = [
        (["--export", "onnx", "--ckpt", ckpt, "--output", str(tmp_path / "m.pt")], "writes a .onnx file"),
        (["--export", "torchscript", "--ckpt", ckpt, "--output", str(existing)], "pass --overwrite"),
        (["--export", "torchscript", "--ckpt", str(tmp_path / "no.ckpt"), "--output", str(tmp_path / "n.pt")],
         "no.ckpt does not exist"),
        (["--export", "tflite", "--ckpt", ckpt, "--output", str(tmp_path / "m.tflite")], "invalid choice"),
    ]  # fmt: skip
    for argv, message in cases:
        assert run_entry_point("run.py", _run_and_print, argv) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and err.count("\n") == 1
    assert existing.read_bytes() == b"keep me"  # never overwritten without --overwrite
