"""Knowledge-distillation loss between student and teacher logits.

The total training objective is usually ``task_loss + coef * DistillationLoss(...)``; the
weighting and the teacher (loaded from a checkpoint, frozen) belong to the LightningModule.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn


def _class_logits(logits: torch.Tensor) -> torch.Tensor:
    # A single sigmoid channel z is the two-class softmax over [0, z], so binary models distil too.
    if logits.shape[1] == 1:
        return torch.cat([torch.zeros_like(logits), logits], dim=1)
    return logits


def kd_kl_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0
) -> torch.Tensor:
    """Per-pixel ``KL(softmax(t / T) || softmax(s / T)) * T**2``, averaged over pixels.

    Every pixel (and every sample) is one row of the ``batchmean`` reduction: the class axis is
    moved last and the rest flattened to ``N = B * H * W`` rows, so the result is the mean KL per
    pixel. The ``T**2`` factor keeps gradient magnitudes comparable across temperatures.

    Args:
        student_logits: ``[B, C, *spatial]`` (``[B, C]`` also works).
        teacher_logits: Same shape; treated as a constant (detached).
        temperature: Softening temperature ``T > 0``.

    Returns:
        Scalar loss (0 when student equals teacher).
    """
    student = _class_logits(student_logits)
    teacher = _class_logits(teacher_logits.detach())
    num_classes = student.shape[1]
    log_p_student = (student / temperature).log_softmax(dim=1).movedim(1, -1).reshape(-1, num_classes)
    p_teacher = (teacher / temperature).softmax(dim=1).movedim(1, -1).reshape(-1, num_classes)
    return F.kl_div(log_p_student, p_teacher, reduction="batchmean") * temperature**2


class DistillationLoss(nn.Module):
    """Distillation term between student and teacher logits.

    Args:
        mode: ``"kl"`` (temperature-softened KL, see :func:`kd_kl_loss`) or ``"mse"`` (mean squared
            error between raw logits; ``temperature`` unused).
        temperature: Softening temperature for ``"kl"``.

    Raises:
        ValueError: For an unknown mode or a non-positive temperature.
    """

    def __init__(self, mode: Literal["kl", "mse"] = "kl", temperature: float = 4.0) -> None:
        super().__init__()
        if mode not in ("kl", "mse"):
            raise ValueError(f"DistillationLoss: mode must be 'kl' or 'mse', got {mode!r}")
        if temperature <= 0:
            raise ValueError(f"DistillationLoss: temperature must be > 0, got {temperature}")
        self.mode = mode
        self.temperature = float(temperature)

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        """Return the scalar distillation loss.

        Args:
            student_logits: ``[B, C, *spatial]``.
            teacher_logits: Same shape as the student's (detached inside).

        Returns:
            Scalar tensor.

        Raises:
            ValueError: If the shapes differ.
        """
        if student_logits.shape != teacher_logits.shape or student_logits.ndim < 2:
            raise ValueError(
                f"DistillationLoss: student {tuple(student_logits.shape)} and teacher "
                f"{tuple(teacher_logits.shape)} logits must have the same [B, C, ...] shape"
            )
        if self.mode == "mse":
            return F.mse_loss(student_logits, teacher_logits.detach())
        return kd_kl_loss(student_logits, teacher_logits, self.temperature)
