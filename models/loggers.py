"""W&B logger that is offline unless the user says otherwise."""

from __future__ import annotations

import os
from typing import Any

from lightning.pytorch.loggers import WandbLogger


def resolve_wandb_mode(mode: str | None) -> str:
    """Pick the W&B mode: explicit ``mode`` > ``$WANDB_MODE`` > ``offline``.

    Raises:
        ValueError: For a mode W&B does not know.
    """
    chosen = mode or os.environ.get("WANDB_MODE") or "offline"
    if chosen not in ("online", "offline", "disabled"):
        raise ValueError(f"W&B mode must be online, offline or disabled, got {chosen!r}")
    return chosen


class OfflineWandbLogger(WandbLogger):
    """``WandbLogger`` whose default is offline (no account, no network needed).

    Args:
        project: W&B project name.
        name: Run name.
        save_dir: Where the offline run files go (``wandb sync`` uploads them later).
        mode: ``online``, ``offline`` or ``disabled``; ``None`` reads ``$WANDB_MODE``, else offline.
        **kwargs: Passed to :class:`lightning.pytorch.loggers.WandbLogger`.
    """

    def __init__(
        self,
        project: str = "spseg",
        name: str | None = None,
        save_dir: str = "runs",
        mode: str | None = None,
        **kwargs: Any,
    ) -> None:
        resolved = resolve_wandb_mode(mode)
        os.makedirs(save_dir, exist_ok=True)
        super().__init__(
            project=project,
            name=name,
            save_dir=save_dir,
            offline=resolved == "offline",
            mode=resolved,
            **kwargs,
        )
