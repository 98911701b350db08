"""Exact resume: a run SIGKILLed mid-epoch and resumed ends as the uninterrupted run, to the last digit.

Each end-to-end case trains an uninterrupted reference and, beside it, the same run slowed down and
killed (SIGKILL, no chance to save) once ``last.ckpt`` holds a step inside the second epoch; the
killed run is then resumed with ``--resume last`` and both run directories are compared: metrics.csv
text, test_summary.json, test_per_image.csv, the checkpoint files and their weights.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.engine.conftest import REPO, tiny_args

ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
SLOW = ["--trainer.callbacks+=tests.engine.slow.SlowDown", "--trainer.callbacks.init_args.seconds", "0.2"]


def supervised(root: Path) -> list[str]:
    """demo.yaml (U-Net, nuclei sample, one loader worker): 10 training images = 5 steps per epoch."""
    return tiny_args(
        root,
        "--data.batch_size", "2",
        "--data.num_workers", "1",  # batches come from a worker process, prepared ahead
        "--model.optim.lr", "0.01",
        "--model.hd95_in_test", "false",
        "--last_every_n_steps", "1",
        epochs=2,
    )  # fmt: skip


def inpainting(root: Path) -> list[str]:
    """The MIM pretext (abdominal CT sample, superpixels computed by the loader): 4 steps per epoch."""
    return [
        "--cfg", str(REPO / "configs" / "config_inpainting_sample.yaml"),
        "--runs_dir", str(root / "runs"),
        "--trainer.max_epochs", "2",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--data.image_size", "32",
        "--data.batch_size", "4",
        "--data.num_workers", "0",
        "--data.train_transforms", '[{"name": "HorizontalFlip", "p": 0.5}, {"name": "Rotate", "limit": 15}]',
        "--model.encoder_name", "resnet18",
        "--aug_k", "32",
        "--aug_n", "4",
        "--last_every_n_steps", "1",
    ]  # fmt: skip


def noisy(root: Path) -> list[str]:
    """Superpixel-guided JoCoR (nuclei sample, numba superpixels in the loader): 5 steps per epoch."""
    return [
        "--cfg", str(REPO / "configs" / "noisy_sample.yaml"),
        "--runs_dir", str(root / "runs"),
        "--trainer.max_epochs", "2",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--data.image_size", "32",
        "--data.batch_size", "2",
        "--model.model_kwargs", '{"base_channel": 4}',
        "--model.hd95_in_test", "false",
        "--last_every_n_steps", "1",
    ]  # fmt: skip


FAMILIES = {"supervised": (supervised, 5), "inpainting": (inpainting, 4), "noisy": (noisy, 5)}


def _popen(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "run.py", *args],
        cwd=REPO,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run_dir(root: Path) -> Path:
    (found,) = root.glob("runs/*/version_0")
    return found


def _saved_step(path: Path) -> int:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])
    except (FileNotFoundError, RuntimeError, EOFError):
        return -1


def _kill_when_saved(proc: subprocess.Popen, root: Path, step: int, timeout: float = 120.0) -> dict:
    """SIGKILL ``proc`` once its ``last.ckpt`` holds ``step`` or later; the checkpoint it leaves."""
    deadline = time.monotonic() + timeout
    while True:
        found = list(root.glob("runs/*/version_0/checkpoints/last.ckpt"))
        if found and _saved_step(found[0]) >= step:
            break
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"last.ckpt never reached step {step}"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return torch.load(found[0], map_location="cpu", weights_only=True)


def _assert_same_runs(reference: Path, resumed: Path) -> None:
    for name in ("metrics.csv", "test_summary.json", "test_per_image.csv"):
        assert (resumed / name).read_text() == (reference / name).read_text(), name
    names = sorted(p.name for p in (reference / "checkpoints").iterdir())
    assert sorted(p.name for p in (resumed / "checkpoints").iterdir()) == names
    for name in names:
        ours = torch.load(resumed / "checkpoints" / name, map_location="cpu", weights_only=True)
        theirs = torch.load(reference / "checkpoints" / name, map_location="cpu", weights_only=True)
        assert ours["global_step"] == theirs["global_step"], name
        assert ours["state_dict"].keys() == theirs["state_dict"].keys()
        for key, value in theirs["state_dict"].items():
            assert torch.equal(ours["state_dict"][key], value), f"{name}: {key}"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_sigkilled_run_resumes_exactly(tmp_path, family):
    """Regression: the loader restarted the epoch, RNGs and epoch means were lost, rows went missing."""
    make_args, steps_per_epoch = FAMILIES[family]
    reference = _popen(make_args(tmp_path / "reference"))
    killed = _popen([*make_args(tmp_path / "killed"), *SLOW])
    saved = _kill_when_saved(killed, tmp_path / "killed", step=steps_per_epoch + 2)
    progress = saved["loops"]["fit_loop"]["epoch_loop.batch_progress"]
    assert saved["global_step"] % steps_per_epoch != 0 and not progress["is_last_batch"], "not mid-epoch"
    assert saved["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [
        {"epoch": 1, "batches": saved["global_step"] - steps_per_epoch}
    ]
    resumed = subprocess.run(
        [sys.executable, "run.py", *make_args(tmp_path / "killed"), "--resume", "last"],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "not resumable" not in resumed.stderr
    _, err = reference.communicate(timeout=300)
    assert reference.returncode == 0, err[-3000:]
    _assert_same_runs(_run_dir(tmp_path / "reference"), _run_dir(tmp_path / "killed"))
    last = torch.load(_run_dir(tmp_path / "killed") / "checkpoints" / "last.ckpt", weights_only=True)
    # the final state, also after an epoch that did not improve the best checkpoint
    assert last["global_step"] == 2 * steps_per_epoch


def test_finished_run_is_not_tested_again_unless_asked(tmp_path, capsys):
    """Regression: ``--resume last`` on a finished run re-tested it and appended a second test row."""
    from run import main

    args = tiny_args(tmp_path, "--model.hd95_in_test", "false", epochs=2)
    first = main(args)
    run_dir = Path(first["run_dir"])
    metrics = (run_dir / "metrics.csv").read_text()
    summary = (run_dir / "test_summary.json").read_text()

    again = main([*args, "--resume", "last"])
    assert again["finished"] and again["run_dir"] == str(run_dir)
    assert again["test"] == json.loads(summary)["mean"]
    assert "is finished" in capsys.readouterr().err
    assert (run_dir / "metrics.csv").read_text() == metrics  # nothing ran, nothing appended

    retested = main([*args, "--resume", "last", "--retest"])
    assert "finished" not in retested and retested["test"] == first["test"]
    assert (run_dir / "metrics.csv").read_text() == metrics  # the test row replaced, not duplicated
    assert not (run_dir.parent / "version_1").exists()

    more = main([*args, "--trainer.max_epochs", "3", "--resume", "last"])  # more epochs: not finished
    assert "finished" not in more
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert sum(",test/" in r or r.split(",")[0] == "3" for r in rows[1:]) == 1  # one test row, epoch 3


class _Indices(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 10

    def __getitem__(self, item: tuple[int, int] | int) -> int:
        return item[0] if isinstance(item, tuple) else item


def _loader(num_workers: int, sampler: torch.utils.data.Sampler | None = None):
    from datasets.samplers import EpochShuffleSampler, ResumableDataLoader

    sampler = sampler if sampler is not None else EpochShuffleSampler(10, seed=3)
    return ResumableDataLoader(_Indices(), batch_size=2, sampler=sampler, num_workers=num_workers)


def _epoch(loader, epoch: int) -> list[list[int]]:
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    return [batch.tolist() for batch in loader]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_loader_continues_after_the_batches_it_handed_out(num_workers):
    """The state counts batches that left the loader, not those workers prepared ahead."""
    full = _epoch(_loader(0), 1)
    loader = _loader(num_workers)
    loader.sampler.set_epoch(1)
    iterator = iter(loader)
    first = [next(iterator).tolist() for _ in range(2)]
    state = loader.state_dict()
    assert state == {"epoch": 1, "batches": 2}
    del iterator
    resumed = _loader(num_workers)
    resumed.load_state_dict(state)
    assert first + _epoch(resumed, 1) == full
    assert resumed.state_dict() == {"epoch": 1, "batches": 5}
    resumed.load_state_dict(state)  # the saved epoch had ended: another epoch starts from its beginning
    assert _epoch(resumed, 2) == _epoch(_loader(0), 2)


def test_loader_with_a_substituted_sampler_skips_by_drawing():
    sequential = torch.utils.data.SequentialSampler(range(10))
    loader = _loader(0, sequential)
    loader.load_state_dict({"epoch": 0, "batches": 3})
    assert [b.tolist() for b in loader] == [[6, 7], [8, 9]]
    assert [b.tolist() for b in loader] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]


def test_rng_states_survive_a_weights_only_checkpoint(tmp_path):
    """Regression: no RNG was saved, so a resumed run drew other random numbers."""
    import random

    import numpy as np

    from engine.rng_state import capture_rng, restore_rng

    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    torch.save(capture_rng(), tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    restore_rng(torch.load(tmp_path / "rng.pt", weights_only=True))
    drawn = (random.random(), np.random.rand(), torch.rand(3))
    assert drawn[:2] == expected[:2] and torch.equal(drawn[2], expected[2])


def test_csv_rows_are_written_at_once_and_resume_drops_the_ones_logged_again(tmp_path):
    """Regression: rows waited in memory for 100 steps, so a killed run lost them."""
    import csv

    from engine.loggers import ResumableCSVLogger

    logger = ResumableCSVLogger(save_dir=str(tmp_path), name="x", version=0)
    logger.log_metrics({"a": 1.0}, step=0)
    path = Path(logger.log_dir) / "metrics.csv"
    assert path.read_text().splitlines()[1:] == ["1.0,0"]  # on disk before any flush or finalize
    logger.log_metrics({"a": 2.0}, step=3)
    logger.log_metrics({"b": 3.0}, step=5)
    with open(path, "a") as handle:
        handle.write(",4.")  # a row cut short by the kill
    resumed = ResumableCSVLogger(save_dir=str(tmp_path), name="x", version=0)
    assert resumed.drop_rows_from(5) == 1
    resumed.log_metrics({"b": 4.0}, step=5)
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    expected = [("1.0", "", "0"), ("2.0", "", "3"), ("", "4.0", "5")]
    assert [(r["a"], r["b"], r["step"]) for r in rows] == expected


def test_a_new_metrics_key_rewrites_the_csv_atomically(tmp_path, monkeypatch):
    """Regression: Lightning rewrote metrics.csv in place for a new key; a kill then could empty it."""
    from engine.loggers import ResumableCSVLogger

    logger = ResumableCSVLogger(save_dir=str(tmp_path), name="x", version=0)
    logger.log_metrics({"a": 1.0}, step=0)
    path = Path(logger.log_dir) / "metrics.csv"
    before = path.read_text()

    def killed(*args):
        raise KeyboardInterrupt  # the process dies before the rename

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        logger.log_metrics({"b": 2.0}, step=1)
    assert path.read_text() == before  # the old file is whole
