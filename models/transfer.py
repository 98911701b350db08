"""Loading weights: pretrained initialisation (any checkpoint layout) and KD teachers."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from core.checkpoint_io import read_checkpoint, read_state_dict
from models.networks.registry import create_model

log = logging.getLogger(__name__)

# Prefixes under which our LightningModules (and common tools) store a network's weights.
KNOWN_PREFIXES = ("", "net.", "model.", "module.", "net.module.", "target_net.", "online_net.")
# Encoder-only state dicts (ImageNet backbones, solo-learn BYOL backbones) hold the encoder's keys
# without the "encoder." part: "conv1.weight" for the network's "encoder.conv1.weight".
BACKBONE_PREFIXES = ("", "backbone.", "momentum_backbone.", "module.")
# Two-branch (BYOL) checkpoints: our BYOL module, then solo-learn. The momentum (target) branch is
# what SSL-MedSeg transfers.
BRANCH_PREFIXES = {
    "target": ("target_net.", "momentum_backbone."),
    "online": ("online_net.", "backbone."),
}
SOURCES = tuple(BRANCH_PREFIXES)
PARTS = {"encoder": ("encoder.",), "encoder+decoder": ("encoder.", "decoder."), "all": ("",)}
ENCODER = "encoder."
# BatchNorm step counters are missing from old torchvision weights and carry no learned value.
_NOT_WEIGHTS = ("num_batches_tracked",)


def _adapt_in_channels(src: Tensor, dst_shape: torch.Size) -> Tensor | None:
    """Adapt a first-convolution kernel between 1 and 3 input channels (sum RGB; repeat grey / 3)."""
    if src.ndim != 4 or src.shape[0] != dst_shape[0] or src.shape[2:] != dst_shape[2:]:
        return None
    if src.shape[1] == 3 and dst_shape[1] == 1:
        return src.sum(dim=1, keepdim=True)
    if src.shape[1] == 1 and dst_shape[1] == 3:
        return src.repeat(1, 3, 1, 1) / 3.0
    return None


def is_two_branch(source: dict[str, Tensor]) -> bool:
    """Whether a checkpoint holds both an online and a target (momentum) network, as BYOL's do."""
    return any(
        any(k.startswith(t) for k in source) and any(k.startswith(o) for k in source)
        for t, o in zip(BRANCH_PREFIXES["target"], BRANCH_PREFIXES["online"], strict=True)
    )


def _candidates(
    source: dict[str, Tensor], parts: str, source_prefix: str | None, branch: str
) -> list[tuple[str, Callable[[str], str | None], tuple[str, ...]]]:
    """Ways to name a network key inside the checkpoint.

    Returns:
        ``(description, target key -> source key, scopes)``; every source key under a scope must be
        used, otherwise the checkpoint holds a different variant of the architecture. Encoder-only
        files have no scope: their classifier heads are legitimately unused.
    """
    if source_prefix is not None:
        whole, backbone = (source_prefix,), (source_prefix,)
    else:
        whole, backbone = KNOWN_PREFIXES, BACKBONE_PREFIXES
        if is_two_branch(source):
            other = BRANCH_PREFIXES["online" if branch == "target" else "target"]
            whole = tuple(p for p in whole if p not in other)
            backbone = tuple(p for p in backbone if p not in other)
    out: list[tuple[str, Callable[[str], str | None], tuple[str, ...]]] = []
    for prefix in whole:
        scopes = tuple(prefix + part for part in PARTS[parts] if part)
        out.append((f"'{prefix}<key>'", lambda key, p=prefix: p + key, scopes))
    if ENCODER in PARTS[parts] or parts == "all":
        for prefix in backbone:
            out.append(
                (
                    f"encoder-only '{prefix}<key without encoder.>'",
                    lambda key, p=prefix: p + key[len(ENCODER) :] if key.startswith(ENCODER) else None,
                    (),
                )
            )
    return out


def _best_match(
    source: dict[str, Tensor],
    target: dict[str, Tensor],
    parts: str,
    source_prefix: str | None,
    branch: str,
) -> tuple[str, dict[str, Tensor], list[str], list[str], set[str], tuple[str, ...]]:
    if parts not in PARTS:
        raise ValueError(f"pretrained_parts must be one of {sorted(PARTS)}, got {parts!r}")
    if branch not in SOURCES:
        raise ValueError(f"pretrained source must be one of {SOURCES}, got {branch!r}")
    wanted = [k for k in target if k.startswith(PARTS[parts])]
    best: tuple[str, dict[str, Tensor], list[str], list[str], set[str], tuple[str, ...]]
    best = ("none", {}, wanted, [], set(), ())
    for label, to_source, scopes in _candidates(source, parts, source_prefix, branch):
        loaded, missing, mismatched, used = {}, [], [], set()
        for key in wanted:
            name = to_source(key)
            src = source.get(name) if name is not None else None
            if src is None:
                missing.append(key)
                continue
            used.add(name)
            if src.shape == target[key].shape:
                loaded[key] = src
            elif (adapted := _adapt_in_channels(src, target[key].shape)) is not None:
                loaded[key] = adapted
            else:
                mismatched.append(f"{key}: checkpoint {tuple(src.shape)} vs model {tuple(target[key].shape)}")
        if len(loaded) + len(mismatched) > len(best[1]) + len(best[3]):
            best = (label, loaded, missing, mismatched, used, scopes)
    return best


def match_state_dict(
    source: dict[str, Tensor],
    target: dict[str, Tensor],
    parts: str = "encoder",
    source_prefix: str | None = None,
    source_branch: str = "target",
) -> tuple[dict[str, Tensor], list[str], list[str]]:
    """Map source tensors onto a network's keys.

    Args:
        source: Tensors read from a checkpoint.
        target: The receiving network's ``state_dict()``.
        parts: ``encoder``, ``encoder+decoder`` or ``all``: which target keys to fill.
        source_prefix: Prefix of the network inside the checkpoint; ``None`` tries the known ones
            (``KNOWN_PREFIXES``, and encoder-only files under ``BACKBONE_PREFIXES``) and keeps the one
            that matches most keys.
        source_branch: ``target`` (momentum) or ``online``: the branch taken from a two-branch (BYOL)
            checkpoint; ignored for other checkpoints.

    Returns:
        ``(loaded, missing, mismatched)``: tensors to load by target key, target keys of the selected
        parts not found in the source, and keys found with incompatible shapes.

    Raises:
        ValueError: For an unknown ``parts`` or ``source_branch``.
    """
    _, loaded, missing, mismatched, _, _ = _best_match(source, target, parts, source_prefix, source_branch)
    return loaded, missing, mismatched


def load_pretrained(
    net: nn.Module,
    path: str | Path,
    parts: str = "encoder",
    source_prefix: str | None = None,
    source: str = "target",
) -> dict[str, int]:
    """Initialise ``net`` (or its encoder) from a checkpoint, loudly.

    Accepted files: a Lightning checkpoint of any task of the framework (``net.encoder.*``), a BYOL
    checkpoint (``target_net.encoder.*`` / ``online_net.encoder.*``, or solo-learn's
    ``momentum_backbone.*`` / ``backbone.*``), a whole-network state dict (``encoder.*``) or an
    encoder-only state dict such as an ImageNet ResNet (``conv1.weight``; classifier keys unused).
    A first convolution is adapted between 1 and 3 input channels.

    Args:
        net: Receiving network (its encoder is ``net.encoder``).
        path: Checkpoint or state dict file.
        parts: ``encoder``, ``encoder+decoder`` or ``all``.
        source_prefix: Prefix of the weights inside the checkpoint (``None`` = detect).
        source: ``target`` (default, the momentum encoder, as SSL-MedSeg transfers) or ``online``:
            the branch used from a BYOL checkpoint.

    Returns:
        Counts ``{"loaded", "missing", "unexpected"}`` (also printed); ``missing`` is always 0 on return.

    Raises:
        FileNotFoundError: Missing file.
        ValueError: Nothing matched, selected tensors missing from the checkpoint (no silent partial
            random init), tensors with incompatible shapes, or extra tensors of the selected parts
            (another variant of the architecture, e.g. resnet34 weights for a resnet18).
    """
    state = read_state_dict(path)
    label, loaded, missing, mismatched, used, scopes = _best_match(
        state, net.state_dict(), parts, source_prefix, source
    )
    real_missing = _check_match(
        path, state, net.state_dict(), parts, (label, loaded, missing, mismatched, used, scopes)
    )
    net.load_state_dict(loaded, strict=False)
    branch = f", {source} branch" if source_prefix is None and is_two_branch(state) else ""
    counts = {"loaded": len(loaded), "missing": len(real_missing), "unexpected": len(state) - len(used)}
    print(
        f"[pretrained] {path}: loaded {counts['loaded']} tensors into {parts} (keys as {label}{branch}), "
        f"missing {counts['missing']}, unused in checkpoint {counts['unexpected']}"
    )
    return counts


def _check_match(
    path: str | Path, state: dict[str, Any], target: dict[str, Any], parts: str, match: tuple
) -> list[str]:
    """Refuse a transfer that would leave selected tensors random or skip checkpoint tensors.

    Args:
        path: The checkpoint (named in the errors).
        state: Its tensors.
        target: The receiving network's state dict.
        parts: The selected parts.
        match: :func:`_best_match`'s ``(label, loaded, missing, mismatched, used, scopes)``.

    Returns:
        The missing keys that are not weights (BatchNorm counters); empty when all weights match.

    Raises:
        ValueError: See :func:`load_pretrained`.
    """
    label, loaded, missing, mismatched, used, scopes = match
    if mismatched:
        raise ValueError(
            f"{path}: {len(mismatched)} tensors have incompatible shapes (another architecture or "
            f"encoder_name?): {mismatched[:5]}"
        )
    if not loaded:
        wanted = [k for k in target if k.startswith(PARTS[parts])]
        if not wanted:
            raise ValueError(
                f"{path}: the network has no {parts!r} tensors (keys {PARTS[parts]}); pretrained "
                f"transfer needs a network with an encoder, e.g. model: encoder_unet"
            )
        example = wanted[0]
        raise ValueError(
            f"{path}: no tensor matches the network's {parts!r} keys. Expected keys like "
            f"'net.{example}', '{example}', 'target_net.{example}' or encoder-only "
            f"'{example.removeprefix(ENCODER)}' with these shapes; the checkpoint's keys look like "
            f"{list(state)[:5]} (a checkpoint of another architecture?)"
        )
    real_missing = [k for k in missing if not k.endswith(_NOT_WEIGHTS)]
    if real_missing:
        raise ValueError(
            f"{path}: {len(real_missing)} of {len(loaded) + len(real_missing)} {parts!r} tensors are not in "
            f"the checkpoint (matched as {label}), e.g. {real_missing[:5]}; refusing a partial load"
        )
    extra = [k for k in state if k.startswith(scopes) and k not in used] if scopes else []
    if extra:
        raise ValueError(
            f"{path}: the checkpoint holds {len(extra)} {parts!r} tensors the network lacks (matched as "
            f"{label}), e.g. {extra[:5]}: another depth/variant of the architecture (check encoder_name)"
        )
    return real_missing


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
    obj = read_checkpoint(path)
    hparams = obj.get("hyper_parameters", {}) if isinstance(obj, dict) else {}
    name = model or hparams.get("model")
    if name is None:
        raise ValueError(f"{path} has no hyper_parameters.model; set model.init_args.teacher_model")
    kwargs = model_kwargs if model_kwargs is not None else (hparams.get("model_kwargs") or {})
    teacher = create_model(name, in_channels=in_channels, num_classes=num_classes, **kwargs)
    loaded, missing, mismatched = match_state_dict(read_state_dict(path), teacher.state_dict(), "all")
    if missing or mismatched:
        raise ValueError(
            f"teacher {path} does not fit {name}: missing {missing[:5]}, mismatched {mismatched[:5]}"
        )
    teacher.load_state_dict(loaded)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher
