"""Loading weights: pretrained initialisation (any checkpoint layout) and KD teachers."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from models.registry import create_model

log = logging.getLogger(__name__)

# Prefixes under which our LightningModules (and common tools) store a network's weights.
KNOWN_PREFIXES = ("", "net.", "model.", "module.", "net.module.", "target_net.", "online_net.")
PARTS = {"encoder": ("encoder.",), "encoder+decoder": ("encoder.", "decoder."), "all": ("",)}


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict from a Lightning checkpoint or a plain ``torch.save`` file.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file holds no tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file not found: {path} (expected a local .ckpt/.pt/.pth file)")
    obj = torch.load(path, map_location="cpu", weights_only=False)
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not any(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path} holds no state dict of tensors (got {type(obj).__name__})")
    return {k: v for k, v in state.items() if isinstance(v, Tensor)}


def _adapt_in_channels(src: Tensor, dst_shape: torch.Size) -> Tensor | None:
    """Adapt a first-convolution kernel between 1 and 3 input channels (sum RGB; repeat grey / 3)."""
    if src.ndim != 4 or src.shape[0] != dst_shape[0] or src.shape[2:] != dst_shape[2:]:
        return None
    if src.shape[1] == 3 and dst_shape[1] == 1:
        return src.sum(dim=1, keepdim=True)
    if src.shape[1] == 1 and dst_shape[1] == 3:
        return src.repeat(1, 3, 1, 1) / 3.0
    return None


def match_state_dict(
    source: dict[str, Tensor], target: dict[str, Tensor], parts: str = "encoder", source_prefix: str | None = None
) -> tuple[dict[str, Tensor], list[str], list[str]]:
    """Map source tensors onto a network's keys.

    Args:
        source: Tensors read from a checkpoint.
        target: The receiving network's ``state_dict()``.
        parts: ``encoder``, ``encoder+decoder`` or ``all``: which target keys to fill.
        source_prefix: Prefix of the network inside the checkpoint; ``None`` tries the known ones
            and keeps the prefix that matches most keys.

    Returns:
        ``(loaded, missing, mismatched)``: tensors to load by target key, target keys of the selected
        parts not found in the source, and keys found with incompatible shapes.
    """
    if parts not in PARTS:
        raise ValueError(f"pretrained_parts must be one of {sorted(PARTS)}, got {parts!r}")
    wanted = [k for k in target if k.startswith(PARTS[parts])]
    prefixes = KNOWN_PREFIXES if source_prefix is None else (source_prefix,)
    best: tuple[dict[str, Tensor], list[str], list[str]] = ({}, wanted, [])
    for prefix in prefixes:
        loaded, missing, mismatched = {}, [], []
        for key in wanted:
            src = source.get(prefix + key)
            if src is None:
                missing.append(key)
            elif src.shape == target[key].shape:
                loaded[key] = src
            elif (adapted := _adapt_in_channels(src, target[key].shape)) is not None:
                loaded[key] = adapted
            else:
                mismatched.append(f"{key}: checkpoint {tuple(src.shape)} vs model {tuple(target[key].shape)}")
        if len(loaded) + len(mismatched) > len(best[0]) + len(best[2]):
            best = (loaded, missing, mismatched)
    return best


def load_pretrained(
    net: nn.Module, path: str | Path, parts: str = "encoder", source_prefix: str | None = None
) -> dict[str, int]:
    """Initialise ``net`` (or its encoder) from a checkpoint, loudly.

    Args:
        net: Receiving network.
        path: Lightning checkpoint of any task, or a plain state dict.
        parts: ``encoder``, ``encoder+decoder`` or ``all``.
        source_prefix: Prefix of the weights inside the checkpoint (``None`` = detect).

    Returns:
        Counts ``{"loaded", "missing", "unexpected"}`` (also printed).

    Raises:
        FileNotFoundError: Missing file.
        ValueError: Nothing matched, or tensors with incompatible shapes.
    """
    source = read_state_dict(path)
    loaded, missing, mismatched = match_state_dict(source, net.state_dict(), parts, source_prefix)
    if mismatched:
        raise ValueError(f"{path}: {len(mismatched)} tensors have incompatible shapes: {mismatched[:5]}")
    if not loaded:
        raise ValueError(
            f"{path}: no tensor matches the network's {parts!r} keys (e.g. {list(net.state_dict())[:3]}); "
            f"checkpoint keys look like {list(source)[:3]}"
        )
    net.load_state_dict(loaded, strict=False)
    counts = {"loaded": len(loaded), "missing": len(missing), "unexpected": len(source) - len(loaded)}
    print(f"[pretrained] {path}: loaded {counts['loaded']} tensors into {parts}, "
          f"missing {counts['missing']}, unused in checkpoint {counts['unexpected']}")
    if missing:
        log.warning("pretrained %s: %d %s tensors not in the checkpoint, e.g. %s", path, len(missing), parts,
                    missing[:5])
    return counts


def load_teacher(
    path: str | Path,
    in_channels: int,
    num_classes: int,
    model: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> nn.Module:
    """Build a frozen knowledge-distillation teacher from a checkpoint.

    A Lightning checkpoint of :class:`~models.segmentation_module.SegmentationModule` carries its
    architecture in ``hyper_parameters``; a plain state dict needs ``model`` (and ``model_kwargs``).

    Raises:
        FileNotFoundError: Missing file.
        ValueError: No architecture known, or the weights do not fit it exactly.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"teacher checkpoint not found: {path}")
    obj = torch.load(path, map_location="cpu", weights_only=False)
    hparams = obj.get("hyper_parameters", {}) if isinstance(obj, dict) else {}
    name = model or hparams.get("model")
    if name is None:
        raise ValueError(f"{path} has no hyper_parameters.model; set model.init_args.teacher_model")
    kwargs = model_kwargs if model_kwargs is not None else (hparams.get("model_kwargs") or {})
    teacher = create_model(name, in_channels=in_channels, num_classes=num_classes, **kwargs)
    loaded, missing, mismatched = match_state_dict(read_state_dict(path), teacher.state_dict(), "all")
    if missing or mismatched:
        raise ValueError(f"teacher {path} does not fit {name}: missing {missing[:5]}, mismatched {mismatched[:5]}")
    teacher.load_state_dict(loaded)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher
