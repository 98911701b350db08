"""Run directories: ``<runs_dir>/<name>/version_N`` and finding the checkpoint to resume from."""

from __future__ import annotations

import glob
import os
from pathlib import Path


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
