"""Sharing weights without pickle: ``--export safetensors`` writes a checkpoint's tensors.

A ``.safetensors`` file holds only tensors and a header of strings, so loading it cannot run code.
Every weight option (``model.pretrained``, ``teacher_checkpoint``, ...) reads it like a checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from core.checkpoint_io import read_state_dict
from datasets.atomic_io import atomic_path

FORMATS = ("safetensors",)


def check_format(fmt: str | None) -> None:
    """Fail early for an ``--export`` value the framework cannot write (``None``: no export).

    Raises:
        ValueError: Naming the value and the formats there are.
    """
    if fmt is not None and fmt not in FORMATS:
        raise ValueError(f"--export {fmt!r}: expected one of {', '.join(FORMATS)}")


def export_safetensors(
    source: str | Path | dict[str, Any], out: str | Path, metadata: dict[str, Any] | None = None
) -> Path:
    """Write a checkpoint's tensors (its ``state_dict``) as a ``.safetensors`` file.

    Args:
        source: A checkpoint file (read safely, see :func:`core.checkpoint_io.read_state_dict`) or a
            state dict.
        out: The file to write, ending in ``.safetensors``; written atomically.
        metadata: Values stored as strings in the file's header (task class, source checkpoint).

    Returns:
        The written path.

    Raises:
        ValueError: If ``out`` does not end in ``.safetensors`` or the source holds no tensors.
    """
    from safetensors.torch import save_file

    out = Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"export target {out}: expected a file name ending in .safetensors")
    state = read_state_dict(source) if isinstance(source, str | Path) else source
    # clone(): safetensors refuses tensors that share memory (tied or aliased weights).
    tensors = {
        k: v.detach().cpu().contiguous().clone() for k, v in state.items() if isinstance(v, torch.Tensor)
    }
    if not tensors:
        raise ValueError("the state dict holds no tensors to export")
    header = {str(k): str(v) for k, v in (metadata or {}).items()}
    with atomic_path(out, keep_suffix=True) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    return out


def export_weights(fmt: str, ckpt: str | None, model: torch.nn.Module, run_dir: str | Path) -> Path:
    """Export the tested weights: ``ckpt``'s tensors beside it, else the model's into ``run_dir``.

    Args:
        fmt: The format (one of :data:`FORMATS`).
        ckpt: The checkpoint that was tested (best or ``--ckpt``), or ``None`` (a task without fitting).
        model: The task module (its class is recorded in the header).
        run_dir: Where ``weights.safetensors`` goes when there is no checkpoint.

    Returns:
        The written file.

    Raises:
        ValueError: For an unknown format.
    """
    check_format(fmt)
    task = f"{type(model).__module__}.{type(model).__qualname__}"
    if ckpt:
        return export_safetensors(
            ckpt, Path(ckpt).with_suffix(".safetensors"), {"task": task, "source": ckpt}
        )
    return export_safetensors(model.state_dict(), Path(run_dir) / "weights.safetensors", {"task": task})
