"""SIGTERM stops a real ``run.py`` at a step boundary, ``last.ckpt`` saved; ``--resume last`` continues."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from tests.engine.conftest import REPO, tiny_args


def _ckpt_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.is_file():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_sigterm_saves_last_and_resume_continues(tmp_path):
    """Regression: SIGTERM was logged but the run went on until killed, saving nothing."""
    args = [*tiny_args(tmp_path, epochs=200), "--model.hd95_in_test", "false", "--last_every_n_steps", "1"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "run.py", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    checkpoints = tmp_path / "runs" / "demo" / "version_0" / "checkpoints"
    _wait_for(checkpoints / "last.ckpt", proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-3000:]
    assert "stopped by SIGTERM" in err and "--resume last" in err
    saved = _ckpt_step(checkpoints / "last.ckpt")
    assert saved > 0
    assert sorted(p.name for p in checkpoints.glob("last*")) == ["last.ckpt"]  # one last checkpoint
    # A short resume: the run continues from the saved step in the same run directory.
    resumed = subprocess.run(
        [sys.executable, "run.py", *args[:-2], "--resume", "last", "--trainer.max_steps", str(saved + 3)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _ckpt_step(checkpoints / "last.ckpt") == saved + 3
    assert not (tmp_path / "runs" / "demo" / "version_1").exists()
