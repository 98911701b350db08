"""autoSMIM's proxy objective for the (k, n) superpixel masking policy, as plain functions.

A trial trains nothing: frozen jigsaw and inpainting models are evaluated on the validation split
masked with the candidate policy, and the trial reports ``NormLoss(jigsaw) - NormLoss(inpainting)``
(NNI minimises it), where ``NormLoss(l) = mean_i(l_i / ||l||_2)`` over the per-batch losses ``l``.

Note that NormLoss is scale-free: it equals ``sum(l) / (N ||l||_2)``, which lies in ``[1/N, 1/sqrt(N)]``
and depends only on how the per-batch losses spread (``1/sqrt(N)`` when they are all equal), not on
their level. That is the published definition; the raw mean losses are reported next to it.

Policies that cannot be evaluated meaningfully are penalised (reported as :data:`PENALTY`) instead of
crashing the trial: masking more than half of the requested ``k`` superpixels (autoSMIM's rule) and
masking at least as many superpixels as an image really has (SLIC returns fewer than ``k``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

PENALTY = 10.0
"""Objective value of a penalised policy (autoSMIM returned 10)."""


@dataclass(frozen=True)
class Penalty:
    """Why a policy was penalised.

    Attributes:
        rule: ``half_k`` (n > k/2) or ``real_count`` (n >= an image's real superpixel count).
        reason: Human-readable explanation naming k, n and the count.
    """

    rule: str
    reason: str


def norm_loss(losses: Sequence[float]) -> float:
    """AutoSMIM's NormLoss: the mean of the per-batch losses divided by their L2 norm.

    Args:
        losses: Per-batch losses ``l_1..l_N`` (non-negative, finite).

    Returns:
        ``mean_i(l_i / ||l||_2)``; 0.0 when every loss is 0.

    Raises:
        ValueError: For an empty sequence or a non-finite / negative loss.
    """
    values = [float(v) for v in losses]
    if not values:
        raise ValueError("norm_loss needs at least one per-batch loss, got none")
    bad = [v for v in values if not math.isfinite(v) or v < 0.0]
    if bad:
        raise ValueError(f"norm_loss needs finite non-negative losses, got {bad[:5]}")
    norm = math.sqrt(sum(v * v for v in values))
    if norm == 0.0:
        return 0.0
    return sum(v / norm for v in values) / len(values)


def proxy_objective(jigsaw_losses: Sequence[float], inpainting_losses: Sequence[float]) -> float:
    """``NormLoss(jigsaw) - NormLoss(inpainting)`` over per-batch losses (lower is better).

    Args:
        jigsaw_losses: Per-batch cross-entropy of the frozen jigsaw probe on masked images.
        inpainting_losses: Per-batch masked MSE of the frozen inpainting model, same batches.

    Returns:
        The objective NNI minimises.

    Raises:
        ValueError: When the two sequences differ in length (they must come from the same batches)
            or :func:`norm_loss` rejects one of them.
    """
    if len(jigsaw_losses) != len(inpainting_losses):
        raise ValueError(
            f"jigsaw and inpainting losses must cover the same batches: got {len(jigsaw_losses)} "
            f"and {len(inpainting_losses)} values"
        )
    return norm_loss(jigsaw_losses) - norm_loss(inpainting_losses)


def half_k_penalty(k: int | None, n: int) -> Penalty | None:
    """AutoSMIM's rule: masking more than half of the requested superpixels (``n > k/2``) is penalised.

    Args:
        k: Requested superpixels (SLIC ``n_segments``); None when unknown (rule skipped).
        n: Superpixels masked per image.

    Returns:
        A :class:`Penalty`, or None when the rule does not apply.
    """
    if k is None or n <= k / 2:
        return None
    return Penalty("half_k", f"policy k={k}, n={n}: n > k/2 = {k / 2:g} (more than half of k masked)")


def real_count_penalty(
    k: int | None, n: int, counts: Sequence[int], ids: Sequence[str] = ()
) -> Penalty | None:
    """Penalise ``n >= `` the real superpixel count of some image (nothing, or nothing else, stays visible).

    Args:
        k: Requested superpixels, for the message.
        n: Superpixels masked per image.
        counts: Real superpixel counts of the images of a batch.
        ids: Image ids in the same order, for the message.

    Returns:
        A :class:`Penalty` naming the image with the smallest count, or None.
    """
    if not counts:
        return None
    smallest = min(range(len(counts)), key=lambda i: counts[i])
    if n < counts[smallest]:
        return None
    name = f"image {ids[smallest]!r}" if ids else f"image #{smallest}"
    return Penalty(
        "real_count",
        f"policy k={k}, n={n}: {name} has only {counts[smallest]} real superpixels (SLIC returns fewer "
        f"than k), so n >= the real count",
    )


def penalised_value(penalty: Penalty, value: float = PENALTY) -> float:
    """Log why a policy is penalised and return the penalty value reported instead of the objective.

    Args:
        penalty: The rule that fired.
        value: The penalty (default :data:`PENALTY`).

    Returns:
        ``value``.
    """
    log.warning("penalised policy (%s): %s -> objective %g", penalty.rule, penalty.reason, value)
    return float(value)
