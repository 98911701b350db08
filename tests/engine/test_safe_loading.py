"""A checkpoint from elsewhere runs no code: every entry point that loads a user-named file refuses it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.checkpoint_io import UnsafeCheckpointError, check_checkpoint, read_checkpoint, trust_checkpoints

REPO = Path(__file__).resolve().parents[2]


class _Payload:
    """Unpickling this object creates ``marker`` (what an attacker's os.system call would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def crafted_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    """A Lightning-looking checkpoint whose unpickling would create a marker file."""
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.ckpt"
    state = {"net.encoder.weight": torch.zeros(1)}
    torch.save({"state_dict": state, "hyper_parameters": {"model": "unet"}, "x": _Payload(marker)}, path)
    return path, marker


def test_read_checkpoint_refuses_before_running_code(tmp_path):
    path, marker = crafted_checkpoint(tmp_path)
    message = r"evil\.ckpt: refusing to load: .*io\.open.*--trust"
    with pytest.raises(UnsafeCheckpointError, match=message):
        read_checkpoint(path)
    with pytest.raises(UnsafeCheckpointError, match="io.open"):
        check_checkpoint(path)
    assert not marker.exists()


def test_trusting_runs_the_payload_so_it_is_opt_in(tmp_path):
    path, marker = crafted_checkpoint(tmp_path)
    trust_checkpoints(True)
    try:
        read_checkpoint(path)
    finally:
        trust_checkpoints(False)
    assert marker.exists()


def test_plain_state_dicts_and_missing_files(tmp_path):
    torch.save({"w": torch.ones(2)}, tmp_path / "ok.pt")
    assert torch.equal(read_checkpoint(tmp_path / "ok.pt")["w"], torch.ones(2))
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        read_checkpoint(tmp_path / "nope.ckpt")


TINY = ["--trainer.max_epochs", "1", "--data.image_size", "32", "--data.num_workers", "0"]
# (config, the option naming the file) for every entry point that loads a user-named file.
ENTRY_POINTS = [
    ("demo.yaml", ["--model.pretrained", "{ckpt}"]),
    ("kd_sample.yaml", ["--model.teacher_checkpoint", "{ckpt}"]),
    ("demo.yaml", ["--evaluate", "--ckpt", "{ckpt}"]),
    ("demo.yaml", ["--resume", "{ckpt}"]),
    ("byol_sample.yaml", ["--model.init_checkpoint", "{ckpt}"]),
    ("config_inpainting_sample.yaml", ["--model.encoder_weights", "{ckpt}"]),
    ("config_rotation_sample.yaml", ["--model.encoder_checkpoint", "{ckpt}"]),
    ("fewshot_sample.yaml", ["--model.weights_path", "{ckpt}"]),
    ("config_search_sample.yaml", ["--model.inpainting_checkpoint", "{ckpt}"]),
]


@pytest.mark.parametrize(("config", "option"), ENTRY_POINTS, ids=[" ".join(o[:-1]) for _, o in ENTRY_POINTS])
def test_every_entry_point_refuses_a_crafted_checkpoint(tmp_path, config, option):
    path, marker = crafted_checkpoint(tmp_path)
    args = [a.format(ckpt=path) for a in option]
    runs = str(tmp_path / "runs")
    cmd = [sys.executable, "run.py", "--cfg", f"configs/{config}", "--runs_dir", runs, *args]
    if config.startswith(("demo", "kd")):
        cmd += TINY
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("run.py: error: ")]
    assert len(errors) == 1, proc.stderr[-2000:]
    assert str(path) in errors[0] and "io.open" in errors[0] and "--trust_checkpoint" in errors[0]
    assert "Traceback" not in proc.stderr
    assert not marker.exists()


def test_safetensors_weights_load_as_pretrained(tmp_path):
    from safetensors.torch import save_file

    from models.networks.registry import create_model
    from models.transfer import load_pretrained

    source = create_model("unet", in_channels=1, num_classes=2, base_channel=4)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "w.safetensors"))
    target = create_model("unet", in_channels=1, num_classes=2, base_channel=4)
    load_pretrained(target, tmp_path / "w.safetensors", parts="all")
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_export_safetensors_writes_the_tested_weights(tiny):
    from safetensors import safe_open

    from run import main

    result = main(tiny("--export", "safetensors"))
    exported = Path(result["exported"])
    assert exported == Path(result["best_ckpt"]).with_suffix(".safetensors")
    state = torch.load(result["best_ckpt"], weights_only=True)["state_dict"]
    with safe_open(str(exported), framework="pt") as f:
        assert f.metadata()["task"] == "models.segmentation_module.SegmentationModule"
        assert set(f.keys()) == set(state)
        for key in state:
            assert torch.equal(f.get_tensor(key), state[key]), key
    # the exported file is a full pretrained initialisation: untrained from it, the test Dice is the same
    again = main(
        tiny(
            "--model.pretrained",
            str(exported),
            "--model.pretrained_parts",
            "all",
            "--model.optim.scheduler",
            "none",
            "--trainer.max_epochs",
            "0",
        )
    )
    assert again["best_ckpt"] is None
    assert again["test"]["dice"] == pytest.approx(result["test"]["dice"], abs=1e-6)


def test_export_rejects_unknown_formats_and_targets(tiny, tmp_path):
    from engine.export import export_safetensors
    from run import main

    with pytest.raises(
        ValueError, match=r"--export 'tflite': expected one of safetensors, onnx, torchscript"
    ):
        main(tiny("--export", "tflite"))
    with pytest.raises(ValueError, match=r"expected a file name ending in \.safetensors"):
        export_safetensors({"w": torch.zeros(1)}, tmp_path / "w.pt")
    with pytest.raises(ValueError, match="holds no tensors"):
        export_safetensors({"step": 3}, tmp_path / "w.safetensors")
    assert not (tmp_path / "w.safetensors").exists()
