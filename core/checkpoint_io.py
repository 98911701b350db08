"""The one way the framework reads a checkpoint file: no code from the file runs unless trusted.

``torch.load(weights_only=True)`` unpickles only tensors, containers and plain values (plus the
globals allowed below), so a crafted ``.ckpt`` cannot call ``os.system`` while it loads. The
framework's own checkpoints hold only such values: task hyper-parameters are plain (``optim`` is
saved as a dict). A file that needs any other global fails before its code can run, with one line
naming the file and that global. ``--trust_checkpoint`` (``trust_checkpoints(True)``) lifts the
restriction for files the user trusts: it runs whatever code they contain.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

# Set by ``--trust_checkpoint``; the variable carries it into DDP children and loader workers.
TRUST_ENV = "SPSEG_TRUST_CHECKPOINT"

_UNSUPPORTED = re.compile(r"Unsupported global: GLOBAL ([\w.]+)|GLOBAL ([\w.]+) was not an allowed global")


class UnsafeCheckpointError(ValueError):
    """A checkpoint needs a global outside the allow-list (loading it would run code from the file)."""


def trust_checkpoints(enabled: bool) -> None:
    """Allow (True) or forbid (False) arbitrary pickles for every later load in this process tree."""
    if enabled:
        os.environ[TRUST_ENV] = "1"
    else:
        os.environ.pop(TRUST_ENV, None)


def checkpoints_trusted() -> bool:
    """Whether ``--trust_checkpoint`` is in force."""
    return os.environ.get(TRUST_ENV) == "1"


def allowed_globals() -> list[Any]:
    """Non-tensor types that the framework's own checkpoints may hold beyond torch's defaults.

    None today: every family saves plain hyper-parameters (tests/engine/test_safe_loading.py loads
    a checkpoint of each family with ``weights_only=True``). Add a type here, not a trust flag.
    """
    return []


@contextlib.contextmanager
def safe_loading() -> Iterator[bool]:
    """Context for Lightning's own loads (``ckpt_path=``): yields the ``weights_only`` to pass."""
    with torch.serialization.safe_globals(allowed_globals()):
        yield not checkpoints_trusted()


def unsafe_message(path: str | Path, name: str) -> str:
    """The one-line refusal for a checkpoint that needs the global ``name``."""
    return (
        f"{path}: refusing to load: unpickling needs {name}, which checkpoints of this framework never "
        "hold (it could run code from the file); if you trust the file, pass --trust_checkpoint"
    )


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> Any:
    """Load a ``torch.save`` / Lightning checkpoint file safely.

    Args:
        path: The file.
        map_location: Where tensors go (``cpu`` by default).

    Returns:
        The unpickled object (a dict for every checkpoint the framework writes).

    Raises:
        FileNotFoundError: If ``path`` is not a file.
        UnsafeCheckpointError: If the file needs a global outside the allow-list (and is not trusted).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path} (expected a local .ckpt/.pt/.pth file)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device=str(map_location))
    if checkpoints_trusted():
        return torch.load(path, map_location=map_location, weights_only=False)
    try:
        with torch.serialization.safe_globals(allowed_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = _UNSUPPORTED.search(str(err))
        name = next(g for g in found.groups() if g) if found else "a global outside the allow-list"
        raise UnsafeCheckpointError(unsafe_message(path, name)) from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read the tensors of a Lightning checkpoint, a ``torch.save`` state dict or a ``.safetensors`` file.

    Args:
        path: ``.ckpt`` (tensors under ``state_dict``), ``.pt/.pth`` (a state dict, optionally under
            ``state_dict``) or ``.safetensors``.

    Returns:
        The tensors by key (non-tensor entries dropped).

    Raises:
        FileNotFoundError: If ``path`` is not a file.
        UnsafeCheckpointError: If loading would run code from the file.
        ValueError: If the file holds no tensors.
    """
    obj = read_checkpoint(path)
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} holds no state dict of tensors (got {type(obj).__name__})")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def check_checkpoint(path: str | Path) -> None:
    """Fail now if ``path`` would need untrusted code to load (before Lightning loads it itself).

    Raises:
        FileNotFoundError: If ``path`` is not a file.
        UnsafeCheckpointError: As :func:`read_checkpoint`.
    """
    path = Path(path)
    if checkpoints_trusted() or path.suffix == ".safetensors":
        return
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path} (expected a local .ckpt/.pt/.pth file)")
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    allowed = {f"{g.__module__}.{g.__qualname__}" for g in allowed_globals()}
    bad = [name for name in unsafe if name not in allowed]
    if bad:
        raise UnsafeCheckpointError(unsafe_message(path, bad[0]))
