"""Run directories: ``<runs_dir>/<name>/version_N`` and finding the checkpoint to resume from."""

from __future__ import annotations

import glob
import json
import os
import sys
from pathlib import Path

from core.checkpoint_io import read_checkpoint


def resolve_resume(resume: str | None, experiment_dir: Path) -> tuple[str | None, str | None]:
    """Find the checkpoint to resume from and the logger version to continue writing into.

    Args:
        resume: ``None``, ``"last"``, a run directory or a checkpoint file.
        experiment_dir: ``<runs_dir>/<name>``, searched for ``version_*/checkpoints/last.ckpt``.

    Returns:
        ``(ckpt_path, version)``, both ``None`` when not resuming.

    Raises:
        FileNotFoundError: When nothing resumable exists where ``resume`` points.
    """
    if not resume:
        return None, None
    if resume == "last":
        found = glob.glob(str(experiment_dir / "version_*" / "checkpoints" / "last.ckpt"))
        if not found:
            raise FileNotFoundError(
                f"--resume last: no version_*/checkpoints/last.ckpt under {experiment_dir}"
            )
        ckpt = Path(max(found, key=os.path.getmtime))
    elif Path(resume).is_dir():
        ckpt = Path(resume) / "checkpoints" / "last.ckpt"
    else:
        ckpt = Path(resume)
    if not ckpt.is_file():
        raise FileNotFoundError(f"--resume {resume}: checkpoint {ckpt} does not exist")
    run_dir = ckpt.parent.parent
    version = run_dir.name if run_dir.parent.resolve() == experiment_dir.resolve() else None
    return str(ckpt), version


def remove_empty_run_dir(run_dir: str | os.PathLike | None) -> bool:
    """Remove a run directory left by a start that failed, if it holds no file (loses no data).

    Args:
        run_dir: The run's ``version_N`` folder (``None``: nothing to do).

    Returns:
        Whether the folder was removed.
    """
    if run_dir is None or not Path(run_dir).is_dir():
        return False
    if any(p.is_file() or p.is_symlink() for p in Path(run_dir).rglob("*")):
        return False
    for sub in sorted(Path(run_dir).rglob("*"), key=lambda p: len(p.parts), reverse=True):
        sub.rmdir()
    Path(run_dir).rmdir()
    return True


def finished_run(ckpt_path: str | None, max_epochs: int | None, max_steps: int) -> dict | None:
    """What a finished run reports, if ``--resume`` points at one; None if there is work left.

    A run is finished when it has been tested after its last checkpoint (``test_summary.json`` is
    newer) and the checkpoint already reached ``max_epochs`` or ``max_steps``: fitting would do nothing.
    A larger ``--trainer.max_epochs`` makes it unfinished again (the run trains on, then tests).

    Args:
        ckpt_path: The checkpoint ``--resume`` resolved to (None: not resuming).
        max_epochs: The trainer's epoch limit (None or -1: none).
        max_steps: The trainer's step limit (-1: none).

    Returns:
        ``{"run_dir", "best_ckpt", "test", "finished": True}`` (``test``: the saved summary's means),
        or None.
    """
    if ckpt_path is None:
        return None
    ckpt = Path(ckpt_path)
    run_dir = ckpt.parent.parent
    summary = run_dir / "test_summary.json"
    if not summary.is_file() or summary.stat().st_mtime < ckpt.stat().st_mtime:
        return None
    state = read_checkpoint(ckpt)
    epochs_done = int(state["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
    steps_done = int(state["global_step"])
    if not (
        (max_epochs is not None and max_epochs >= 0 and epochs_done >= max_epochs)
        or (max_steps is not None and max_steps >= 0 and steps_done >= max_steps)
    ):
        return None
    print(
        f"run.py: {run_dir} is finished ({epochs_done} epochs, {steps_done} steps, tested): nothing to do; "
        "add --retest to test it again, or raise --trainer.max_epochs to train on",
        file=sys.stderr,
    )
    best = _best_model_path(state)
    test = json.loads(summary.read_text()).get("mean", {})
    return {"run_dir": str(run_dir), "best_ckpt": best, "test": test, "finished": True}


def _best_model_path(state: dict) -> str | None:
    for key, value in state.get("callbacks", {}).items():
        if key.startswith("ModelCheckpoint") and value.get("best_model_path"):
            return str(value["best_model_path"])
    return None
