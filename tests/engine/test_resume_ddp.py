"""A killed run resumes where it stopped; two CPU processes (gloo DDP) train and test together."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import torch

from engine.cli import FrameworkCLI, translate_argv

from .conftest import REPO, tiny_args


class CaptureStart(L.Callback):
    """Record the trainer state right after a (resumed) fit has restored its checkpoint."""

    def on_train_start(self, trainer, pl_module):
        self.epoch = trainer.current_epoch
        self.step = trainer.global_step
        self.batches_done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        self.optimizer_state = copy.deepcopy(trainer.optimizers[0].state_dict())  # tensors update in place
        self.lr = trainer.optimizers[0].param_groups[0]["lr"]


def _load_when_ready(path: Path, step: int, timeout: float = 120.0) -> dict:
    start = time.time()
    while time.time() - start < timeout:
        if path.is_file():
            try:
                ckpt = torch.load(path, map_location="cpu", weights_only=False)
            except (RuntimeError, EOFError):  # file caught mid-write: read it again
                ckpt = None
            if ckpt is not None and ckpt["global_step"] >= step:
                return ckpt
        time.sleep(0.05)
    raise TimeoutError(f"{path} did not reach step {step} in {timeout}s")


def test_killed_run_resumes_with_saved_epoch_step_and_optimizer(tmp_path):
    args = tiny_args(
        tmp_path,
        "--last_every_n_steps",
        "1",
        "--trainer.limit_train_batches",
        "4",
        "--data.batch_size",
        "2",
        "--trainer.callbacks+=tests.engine.slow.SlowDown",
        epochs=40,
    )
    proc = subprocess.Popen(
        [sys.executable, "run.py", *args], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    last = tmp_path / "runs" / "demo" / "version_0" / "checkpoints" / "last.ckpt"
    try:
        _load_when_ready(last, step=6)  # epoch 1, second of 4 batches
    finally:
        proc.kill()
        proc.wait()
    saved = torch.load(last, map_location="cpu", weights_only=False)
    assert 0 < saved["global_step"] < 40 * 3  # killed before the end

    resumed_args = tiny_args(
        tmp_path,
        "--resume",
        "last",
        "--trainer.limit_train_batches",
        "4",
        "--data.batch_size",
        "2",
        epochs=40,
    )
    resumed_args[resumed_args.index("--trainer.max_epochs") + 1] = str(saved["epoch"] + 3)
    cli = FrameworkCLI(args=translate_argv(resumed_args))
    capture = CaptureStart()
    cli.trainer.callbacks.append(capture)
    cli.execute()

    progress = saved["loops"]["fit_loop"]["epoch_loop.batch_progress"]
    done_in_epoch = progress["current"]["completed"]
    epoch_finished = progress["is_last_batch"]  # a checkpoint from the epoch's last step starts the next one
    assert capture.epoch == saved["epoch"] + int(epoch_finished)
    assert capture.step == saved["global_step"]
    assert not epoch_finished and saved["global_step"] % 4 != 0, "the kill was meant to land mid-epoch"
    assert capture.batches_done == done_in_epoch  # the epoch continues after the batches already done
    expected = saved["optimizer_states"][0]["state"]
    assert expected.keys() == capture.optimizer_state["state"].keys()
    for key, state in expected.items():
        for name, value in state.items():
            assert torch.equal(
                torch.as_tensor(value), torch.as_tensor(capture.optimizer_state["state"][key][name])
            )
    assert capture.lr == saved["optimizer_states"][0]["param_groups"][0]["lr"]
    # the resumed run wrote into the same run directory and finished the requested epochs
    assert cli.trainer.log_dir == str(last.parent.parent)
    assert cli.trainer.current_epoch == saved["epoch"] + 3


def test_ddp_two_cpu_processes_train_and_gather_test_metrics(tmp_path):
    args = tiny_args(
        tmp_path,
        "--trainer.accelerator",
        "cpu",
        "--trainer.devices",
        "2",
        "--trainer.strategy",
        "ddp",
        "--data.batch_size",
        "2",
        epochs=2,
    )
    done = subprocess.run(
        [sys.executable, "run.py", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = tmp_path / "runs" / "demo" / "version_0"
    summary = json.loads((run_dir / "test_summary.json").read_text())
    assert summary["num_images"] == 3  # rows gathered from both ranks, padding duplicates removed
    metrics = (run_dir / "metrics.csv").read_text().splitlines()
    assert "val/dice" in metrics[0] and "train/loss" in metrics[0]


def test_resume_keeps_the_metrics_logged_before(tmp_path):
    from run import main

    first = main(tiny_args(tmp_path, epochs=2))
    metrics = Path(first["run_dir"]) / "metrics.csv"
    resumed = main(tiny_args(tmp_path, "--resume", "last", epochs=3))
    assert resumed["run_dir"] == first["run_dir"]
    header, *rows = metrics.read_text().splitlines()
    epoch_col = header.split(",").index("epoch")
    epochs = {int(r.split(",")[epoch_col]) for r in rows if r.split(",")[epoch_col]}
    assert {0, 1} <= epochs  # rows logged before the resume are still there
    assert 2 in epochs  # and the resumed epoch was appended
