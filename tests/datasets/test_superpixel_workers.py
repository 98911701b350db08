"""Regression: `source: cpu` maps computed in forked loader workers after torch ran OpenMP in the parent.

With numba's default OpenMP threading layer the first validation loader of a run hung forever.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import torch
from datasets.datamodule import SegmentationDataModule
from datasets.superpixels.config import SuperpixelConfig
torch.randn(256, 256) @ torch.randn(256, 256)            # torch uses OpenMP in the parent first
conf = SuperpixelConfig(source="cpu", backend="numba", params={"n_segments": 64, "compactness": 0.1})
dm = SegmentationDataModule(root="datasets/sample/abdomen_ct", in_channels=1, num_classes=5, image_size=64,
                            batch_size=4, num_workers=2, superpixels=conf)
dm.setup("fit")
for loader in (dm.train_dataloader(), dm.val_dataloader()):
    for batch in loader:
        assert batch["superpixels"].shape[-2:] == (64, 64)
print("ok")
"""


def test_loader_workers_compute_superpixels_without_hanging():
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")


def test_user_choice_of_threading_layer_is_respected():
    code = "import datasets.superpixels, numba; print(numba.config.THREADING_LAYER)"
    env_out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env={"NUMBA_THREADING_LAYER": "omp", "PATH": "/usr/bin:/bin"},
    ).stdout.strip()
    default_out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert env_out == "omp" and default_out == "workqueue"
