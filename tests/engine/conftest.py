"""Shared helpers for end-to-end tests of run.py (tiny models on the embedded sample)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def tiny_args(tmp_path: Path, *extra: str, epochs: int = 1) -> list[str]:
    """Arguments of a seconds-long run: demo config, 32x32 images, a 4-channel U-Net."""
    return [
        "--cfg",
        str(REPO / "configs" / "demo.yaml"),
        "--runs_dir",
        str(tmp_path / "runs"),
        "--data.root",
        str(REPO / "datasets" / "sample" / "nuclei"),
        "--data.image_size",
        "32",
        "--data.num_workers",
        "0",
        "--model.model_kwargs",
        '{"base_channel": 4}',
        "--model.optim.warmup",
        "0",
        "--trainer.max_epochs",
        str(epochs),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        *extra,
    ]


@pytest.fixture()
def tiny(tmp_path: Path):
    """Factory for tiny run arguments inside this test's tmp_path."""
    return lambda *extra, epochs=1: tiny_args(tmp_path, *extra, epochs=epochs)
