"""``--export``: a checkpoint's weights (safetensors) or its network as a graph (ONNX, TorchScript).

A ``.safetensors`` file holds only tensors and a header of strings, so loading it cannot run code.
Every weight option (``model.pretrained``, ``teacher_checkpoint``, ...) reads it like a checkpoint.
``onnx`` and ``torchscript`` export a segmentation network with its output activation
(:mod:`engine.export_network`).

Two ways to call it: after a run (``--export FMT`` with training or ``--evaluate``: the tested
checkpoint is exported beside itself), or alone, ``python run.py --export FMT --ckpt CKPT --output
FILE [--cfg CONFIG]`` (no data, no trainer).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, NoReturn

import torch

from core.checkpoint_io import read_state_dict, trust_checkpoints
from datasets.atomic_io import atomic_path

FORMATS = ("safetensors", "onnx", "torchscript")
SUFFIXES = {"safetensors": ".safetensors", "onnx": ".onnx", "torchscript": ".pt"}


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
        fmt: The format (one of :data:`FORMATS`); ``onnx``/``torchscript`` write ``<ckpt>.onnx``/``.pt``.
        ckpt: The checkpoint that was tested (best or ``--ckpt``), or ``None`` (a task without fitting).
        model: The task module (its class is recorded in the header).
        run_dir: Where ``weights.safetensors`` goes when there is no checkpoint.

    Returns:
        The written file.

    Raises:
        ValueError: For an unknown format.
    """
    check_format(fmt)
    if fmt != "safetensors":
        if not ckpt:
            raise ValueError(f"--export {fmt}: this task wrote no checkpoint to export")
        from engine.export_network import export_network
        from engine.predict.checkpoints import load_prediction_model

        return Path(
            export_network(load_prediction_model(ckpt, {}), fmt, Path(ckpt).with_suffix(SUFFIXES[fmt]))[
                "path"
            ]
        )
    task = f"{type(model).__module__}.{type(model).__qualname__}"
    if ckpt:
        return export_safetensors(
            ckpt, Path(ckpt).with_suffix(".safetensors"), {"task": task, "source": ckpt}
        )
    return export_safetensors(model.state_dict(), Path(run_dir) / "weights.safetensors", {"task": task})


def is_export_call(argv: list[str]) -> bool:
    """Whether ``run.py``'s arguments ask for an export alone (``--export`` with ``--output``)."""
    flags = {a.partition("=")[0] for a in argv}
    return "--export" in flags and "--output" in flags and "--predict" not in flags


def build_export_parser() -> argparse.ArgumentParser:
    """The flags of ``run.py --export FMT --ckpt CKPT --output FILE``."""
    p = _Parser(prog="run.py --export", description="Export a checkpoint.", allow_abbrev=False)
    p.add_argument("--export", choices=FORMATS, required=True, help="Output format.")
    p.add_argument("--ckpt", required=True, help="Checkpoint written by run.py.")
    p.add_argument("--output", required=True, help="File to write (its suffix: .safetensors, .onnx, .pt).")
    p.add_argument(
        "--config", action="append", default=[], help="(--cfg) config of a checkpoint lacking one."
    )
    p.add_argument("--noisy_net", choices=["net1", "net2", "mean"], default=None, help="Noisy-label peer.")
    p.add_argument("--overwrite", action="store_true", help="Replace an existing output file.")
    p.add_argument("--trust_checkpoint", action="store_true", help="Load a checkpoint that needs pickle.")
    return p


def run_export(argv: list[str]) -> dict[str, Any]:
    """Export ``--ckpt`` as ``--export`` into ``--output`` (see :func:`build_export_parser`).

    Returns:
        ``{"exported": path, ...}`` (graph formats add ``verified`` and ``max_abs_diff``).

    Raises:
        FileNotFoundError: Missing checkpoint.
        FileExistsError: ``--output`` exists and ``--overwrite`` is not given.
        ValueError: Bad flags, a suffix that does not fit the format, or a non-segmentation checkpoint.
    """
    from engine.export_network import export_network
    from engine.predict.checkpoints import load_prediction_model
    from engine.predict.options import merge_configs

    ns = build_export_parser().parse_args(argv)
    out = Path(ns.output)
    if out.suffix != SUFFIXES[ns.export]:
        raise ValueError(f"--output {out}: --export {ns.export} writes a {SUFFIXES[ns.export]} file")
    if out.exists() and not ns.overwrite:
        raise FileExistsError(f"--output {out} exists; pass --overwrite to replace it")
    if not Path(ns.ckpt).is_file():
        raise FileNotFoundError(f"--ckpt {ns.ckpt} does not exist")
    trust_checkpoints(ns.trust_checkpoint)
    if ns.export == "safetensors":
        return {"exported": str(export_safetensors(ns.ckpt, out, {"source": ns.ckpt}))}
    model = load_prediction_model(ns.ckpt, merge_configs(ns.config), ns.noisy_net)
    result = export_network(model, ns.export, out)
    return {"exported": result.pop("path"), **result}


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are ``ValueError`` (one line from ``run.py``, exit code 2)."""

    def error(self, message: str) -> NoReturn:
        raise ValueError(f"--export: {message}")
