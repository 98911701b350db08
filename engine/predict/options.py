"""The flags of ``run.py --predict`` and their checks."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NoReturn

import yaml

from core.config_stack import load_config_stack

PREDICT_FLAG = "--predict"


@dataclass
class PredictOptions:
    """What one prediction run does (see ``python run.py --predict --help``)."""

    ckpts: list[str]
    input: str
    output: str
    config: dict[str, Any] = field(default_factory=dict)
    palette: str = "index"
    save_probs: bool = False
    overlay: bool = False
    overlay_every: int = 10
    tta: str = "none"
    mode: str | None = None
    overlap: float | None = None
    window: list[float] | None = None
    slice_axis: int | None = None
    view: str | None = None
    batch_size: int = 4
    device: str = "auto"
    amp: bool = False
    noisy_net: str | None = None
    overwrite: bool = False
    trust_checkpoint: bool = False
    progress: bool = True
    support: str | None = None
    support_label: str | None = None
    organs: list[str] | None = None
    label_map: str | None = None
    query_range: dict[str, tuple[int, int] | None] = field(default_factory=dict)
    support_window: list[float] | None = None
    no_clip: bool = False


def is_predict_call(argv: list[str]) -> bool:
    """Whether ``run.py``'s arguments ask for prediction (``--predict`` anywhere)."""
    return PREDICT_FLAG in argv


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are ``ValueError`` (one line from ``run.py``, exit code 2)."""

    def error(self, message: str) -> NoReturn:
        raise ValueError(f"--predict: {message}")


def build_parser() -> argparse.ArgumentParser:
    """The parser of the prediction flags."""
    p = _Parser(
        prog="run.py --predict", description="Predict masks for new images and volumes.", allow_abbrev=False
    )
    p.add_argument("--predict", action="store_true", help="Predict instead of training.")
    p.add_argument("--ckpt", action="append", required=True, help="Checkpoint; repeat to ensemble.")
    p.add_argument("--input", required=True, help="Image, image folder, NIfTI file/folder or DICOM folder.")
    p.add_argument("--output", required=True, help="Folder of the outputs (created).")
    p.add_argument("--config", action="append", default=[], help="(--cfg) config of checkpoints lacking one.")
    p.add_argument(
        "--palette", choices=["index", "binary"], default="index", help="PNG values 0..C-1 or 0/255."
    )
    p.add_argument("--save_probs", action="store_true", help="Also write class probabilities.")
    p.add_argument("--overlay", action="store_true", help="Also write overlay PNGs.")
    p.add_argument("--overlay_every", type=int, default=10, help="Overlay every N-th slice of a volume.")
    p.add_argument("--tta", choices=["none", "flip"], default="none", help="Flip test-time augmentation.")
    p.add_argument("--mode", choices=["resize", "sliding"], default=None, help="Default: the checkpoint's.")
    p.add_argument("--overlap", type=float, default=None, help="Sliding-window overlap in [0, 1).")
    p.add_argument(
        "--window", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"), help="Volume window."
    )
    p.add_argument("--slice_axis", type=int, choices=[0, 1, 2], default=None, help="Volume slicing axis.")
    p.add_argument("--view", choices=["radiological", "array"], default=None, help="Volume slice view.")
    p.add_argument("--batch_size", type=int, default=4, help="Images (or windows, slices) per forward pass.")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--amp", action="store_true", help="Mixed precision (float16 on CUDA, bfloat16 on CPU).")
    p.add_argument("--noisy_net", choices=["net1", "net2", "mean"], default=None, help="Noisy-label peer.")
    p.add_argument("--overwrite", action="store_true", help="Replace existing output files.")
    p.add_argument("--trust_checkpoint", action="store_true", help="Allow pickled code in checkpoints.")
    p.add_argument("--no_progress", action="store_true", help="No progress bar.")
    fewshot = p.add_argument_group("few-shot checkpoints (ALPNet)")
    fewshot.add_argument("--support", default=None, help="Support image, NIfTI file or DICOM series.")
    fewshot.add_argument("--support_label", default=None, help="Its mask (2D) or label volume (NIfTI/DICOM).")
    fewshot.add_argument("--organs", nargs="+", default=None, help="Classes to segment (default: every id).")
    fewshot.add_argument("--label_map", default=None, help="Organ ids: a registered map or a JSON file.")
    fewshot.add_argument(
        "--query_range",
        action="append",
        default=[],
        metavar="ORGAN=Z0:Z1|all",
        help="Query slices of a class.",
    )
    fewshot.add_argument(
        "--support_window", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"), help="Support window."
    )
    fewshot.add_argument("--no_clip", action="store_true", help="Volumes without a window keep raw values.")
    return p


def parse_query_ranges(values: list[str]) -> dict[str, tuple[int, int] | None]:
    """``ORGAN=Z0:Z1`` (inclusive slices) or ``ORGAN=all`` per value.

    Raises:
        ValueError: For a malformed value, a reversed or negative range, or an organ given twice.
    """
    out: dict[str, tuple[int, int] | None] = {}
    for value in values:
        name, sep, spec = value.partition("=")
        if not sep or not name or name in out:
            raise ValueError(f"--query_range {value!r}: expected ORGAN=Z0:Z1 or ORGAN=all, once per organ")
        if spec == "all":
            out[name] = None
            continue
        try:
            z0, z1 = (int(v) for v in spec.split(":"))
        except ValueError:
            raise ValueError(f"--query_range {value!r}: expected ORGAN=Z0:Z1 with integers") from None
        if not 0 <= z0 <= z1:
            raise ValueError(f"--query_range {value!r}: expected 0 <= Z0 <= Z1")
        out[name] = (z0, z1)
    return out


def merge_configs(values: list[str]) -> dict[str, Any]:
    """Deep-merge ``--config`` values: files (with their bases) or inline YAML from ``translate_argv``."""
    merged: dict[str, Any] = {}
    for value in values:
        data = load_config_stack([value]) if _is_file(value) else yaml.safe_load(value)
        if not isinstance(data, dict):
            raise ValueError(f"--cfg {value[:80]!r} is not a YAML mapping or an existing config file")
        _deep_update(merged, data)
    return merged


def _is_file(value: str) -> bool:
    return "\n" not in value and Path(value).is_file()


def _deep_update(into: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_update(into[key], value)
        else:
            into[key] = value


def parse_predict_args(argv: list[str]) -> PredictOptions:
    """Parse and check the prediction flags (``argv`` as translated by ``translate_argv``).

    Raises:
        ValueError: For an unknown flag or a value out of range (the message names it).
    """
    ns = build_parser().parse_args(argv)
    if ns.batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1, got {ns.batch_size}")
    if ns.overlap is not None and not 0.0 <= ns.overlap < 1.0:
        raise ValueError(f"--overlap must be in [0, 1), got {ns.overlap}")
    if ns.overlay_every < 1:
        raise ValueError(f"--overlay_every must be >= 1, got {ns.overlay_every}")
    for flag, window in (("--window", ns.window), ("--support_window", ns.support_window)):
        if window is not None and window[0] >= window[1]:
            raise ValueError(f"{flag} needs LOW < HIGH, got {window[0]} {window[1]}")
    # The flags are the option fields by name; these are converted or renamed.
    special = {
        "ckpts": list(ns.ckpt),
        "config": merge_configs(ns.config),
        "window": list(ns.window) if ns.window is not None else None,
        "support_window": list(ns.support_window) if ns.support_window is not None else None,
        "query_range": parse_query_ranges(ns.query_range),
        "progress": not ns.no_progress,
    }
    names = [f.name for f in fields(PredictOptions)]
    return PredictOptions(**{name: special[name] if name in special else getattr(ns, name) for name in names})
