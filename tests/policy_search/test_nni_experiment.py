"""A real NNI experiment (local training service, loopback port): trials succeed, a crash is FAILED.

Grid search over 3 trials of the proxy objective on the embedded sample: two on readable data (they
must SUCCEED with a numeric final result) and one whose validation split holds an unreadable image
(it must be FAILED with the error in its stderr while the other trials still run). The experiment and
every process it started are stopped in ``finally``.
"""

from __future__ import annotations

import shutil
import socket
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from policy_search.report import rank_trials, read_database, write_best_policy
from tests.policy_search.test_trial import write_tiny_checkpoints

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "datasets" / "sample" / "abdomen_ct"
FINAL_STATES = {"SUCCEEDED", "FAILED", "USER_CANCELED", "SYS_CANCELED", "EARLY_STOPPED"}
TIMEOUT_S = 420


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def broken_copy_of_sample(dst: Path) -> tuple[Path, Path]:
    """The CT sample with one validation image replaced by bytes no reader accepts."""
    shutil.copytree(SAMPLE, dst)
    victim = sorted((dst / "val" / "images").iterdir())[0]
    victim.write_bytes(b"this is not a png")
    return dst, victim


def descendants(experiment: object) -> list[psutil.Process]:
    """Processes started by the experiment's NNI manager (trials, dispatcher), by pid."""
    proc = getattr(experiment, "_proc", None)
    if proc is None:
        return []
    try:
        return psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def stop_everything(experiment: object, started: list[psutil.Process]) -> None:
    """Stop the experiment, then end any process it started that is still alive (by pid)."""
    started.extend(descendants(experiment))
    try:
        experiment.stop()  # type: ignore[attr-defined]
    finally:
        alive = [p for p in started if p.is_running()]
        for p in alive:
            p.terminate()
        _, still = psutil.wait_procs(alive, timeout=10)
        for p in still:
            p.kill()


def test_experiment_trials_succeed_and_crash_is_failed(tmp_path: Path) -> None:
    from nni.experiment import Experiment

    inpainting, jigsaw = write_tiny_checkpoints(tmp_path)
    bad_root, victim = broken_copy_of_sample(tmp_path / "broken_ct")
    good_roots = [str(SAMPLE), "datasets/sample/abdomen_ct"]  # absolute and relative to the code dir
    experiment = Experiment("local")
    cfg = experiment.config
    cfg.experiment_name = "pytest_policy_search"
    cfg.experiment_working_directory = str(tmp_path / "nni")
    cfg.search_space = {
        "aug_k": {"_type": "choice", "_value": [48]},
        "aug_n": {"_type": "choice", "_value": [6]},
        "data.init_args.root": {"_type": "choice", "_value": [good_roots[0], str(bad_root), good_roots[1]]},
    }
    cfg.trial_command = (
        f"{sys.executable} -m policy_search.trial --cfg configs/config_search_sample.yaml "
        f"--model.init_args.inpainting_checkpoint {inpainting} --model.init_args.jigsaw_checkpoint {jigsaw}"
    )
    cfg.trial_code_directory = str(REPO)
    cfg.trial_concurrency = 2
    cfg.trial_gpu_number = 0
    cfg.max_trial_number = 3
    cfg.max_experiment_duration = f"{TIMEOUT_S}s"
    cfg.tuner.name = "GridSearch"
    started: list[psutil.Process] = []
    try:
        experiment.start(free_loopback_port())
        deadline = time.monotonic() + TIMEOUT_S
        jobs = []
        while time.monotonic() < deadline:
            jobs = experiment.list_trial_jobs()
            if len(jobs) == 3 and all(j.status in FINAL_STATES for j in jobs):
                break
            started.extend(descendants(experiment))
            time.sleep(2)
        # list_trial_jobs() may pair a job with another job's parameters under concurrency, so the
        # check counts outcomes: the two good roots succeed, the broken one fails with its traceback.
        statuses = sorted(j.status for j in jobs)
        assert statuses == ["FAILED", "SUCCEEDED", "SUCCEEDED"], [(j.trialJobId, j.status) for j in jobs]
        for job in jobs:
            if job.status == "SUCCEEDED":
                assert isinstance(job.finalMetricData[0].data, float | int | str)
        failed = next(j for j in jobs if j.status == "FAILED")
        stderr = (Path(failed.logPath.split("://")[-1]) / "trial.stderr").read_text(
            encoding="utf-8", errors="replace"
        )
        assert victim.name in stderr and "Traceback" in stderr and str(bad_root) in stderr
        experiment_id = experiment.id
    finally:
        stop_everything(experiment, started)

    records, mode = read_database(experiment_id, str(tmp_path / "nni"))
    ranked = rank_trials(records, mode)
    assert mode == "minimize" and len(ranked) == 2
    assert all(r.status == "SUCCEEDED" and r.params["aug_k"] == 48 for r in ranked)
    assert ranked[0].value == pytest.approx(ranked[1].value)  # same policy and seed, same data
    policy = yaml.safe_load(
        write_best_policy(ranked[0], tmp_path / "best_policy.yaml", experiment_id).read_text()
    )
    assert policy == {"aug_k": 48, "aug_n": 6}
