"""Validation and conversion helpers shared by the pixel-wise and overlap losses.

A binary problem (``C == 1``, sigmoid) is viewed as the two-class logits ``[0, z]``:
``softmax([0, z]) = [1 - sigmoid(z), sigmoid(z)]``, so every loss has one code path and
"background" is channel 0 in both cases.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def check_shapes(logits: torch.Tensor, target: torch.Tensor, loss_name: str) -> None:
    """Raise unless ``logits`` is ``[B, C, *spatial]`` and ``target`` an integer ``[B, *spatial]``.

    Args:
        logits: Model output.
        target: Class indices.
        loss_name: Name used in the error message.

    Raises:
        ValueError: On mismatched shapes or a floating-point target.
    """
    if logits.ndim < 3 or target.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(
            f"{loss_name}: expected logits [B, C, *spatial] and target [B, *spatial], got logits "
            f"{tuple(logits.shape)} and target {tuple(target.shape)}"
        )
    if target.is_floating_point():
        raise ValueError(f"{loss_name}: target must hold integer class indices, got dtype {target.dtype}")


def as_class_logits(logits: torch.Tensor) -> torch.Tensor:
    """Return float32+ logits with >= 2 channels; a single sigmoid channel ``z`` becomes ``[0, z]``."""
    if logits.dtype in (torch.float16, torch.bfloat16):
        # Sums over millions of pixels lose too much precision in half types.
        logits = logits.float()
    if logits.shape[1] == 1:
        return torch.cat([torch.zeros_like(logits), logits], dim=1)
    return logits


def valid_target(
    target: torch.Tensor, num_classes: int, ignore_index: int, loss_name: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(valid_mask, safe_target)``; ignored pixels are mapped to class 0 in ``safe_target``.

    Raises:
        ValueError: If a non-ignored target value lies outside ``[0, num_classes)``.
    """
    valid = target != ignore_index
    bad = valid & ((target < 0) | (target >= num_classes))
    if bad.any():
        values = torch.unique(target[bad]).tolist()[:10]
        raise ValueError(
            f"{loss_name}: target values {values} are outside [0, {num_classes}) and are not "
            f"ignore_index={ignore_index}"
        )
    return valid, torch.where(valid, target, torch.zeros_like(target))


def weight_vector(weight: Sequence[float] | None, name: str) -> torch.Tensor | None:
    """Convert a config list of class weights to a float32 tensor (None stays None).

    Raises:
        ValueError: If the weights are not a flat list of non-negative numbers.
    """
    if weight is None:
        return None
    vector = torch.as_tensor([float(w) for w in weight], dtype=torch.float32)
    if vector.ndim != 1 or (vector < 0).any():
        raise ValueError(f"{name}: class weights must be a flat list of non-negative numbers, got {weight}")
    return vector


def check_weight_length(weight: torch.Tensor | None, num_classes: int, loss_name: str) -> None:
    """Raise if ``weight`` is given and does not hold exactly one entry per class."""
    if weight is not None and weight.numel() != num_classes:
        raise ValueError(
            f"{loss_name}: got {weight.numel()} class weights for {num_classes} classes "
            "(a binary C == 1 model has 2 classes: background, foreground)"
        )
