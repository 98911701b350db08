"""Adaptive local prototype pooling (SSL-ALPNet) as plain functions.

Local prototypes: average-pool features and the (feature-resolution) class mask over non-overlapping
``window x window`` cells; a cell's pooled feature is a prototype of the class when the class covers
more than ``threshold`` of the cell. The foreground also gets one global masked-average prototype;
the background uses local prototypes only.

Empty cases, handled explicitly:
- no background cell passes the threshold (a small image, a large foreground, or a feature map
  smaller than the window): the background falls back to its global masked average;
- an empty class mask: :func:`class_prototypes` raises ``ValueError`` (callers decide: the 1-shot
  protocol never passes one, the alignment loss skips an episode whose prediction is empty).

Score of a class at a pixel: ``sum_k softmax_k(s_k) * s_k`` with ``s_k = scale * cos(f, p_k)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def local_prototypes(features: Tensor, mask: Tensor, window: int, threshold: float = 0.95) -> Tensor:
    """Pooled features of the cells where ``mask`` covers more than ``threshold``.

    Shape:
        features ``[C, h, w]``, mask ``[h, w]`` (values in [0, 1]) -> ``[K, C]`` (K may be 0).
    """
    c = features.shape[0]
    if min(features.shape[-2:]) < window:
        return features.new_zeros((0, c))
    pooled = F.avg_pool2d(features[None], window).reshape(c, -1).t()
    fraction = F.avg_pool2d(mask[None, None].to(features.dtype), window).reshape(-1)
    return pooled[fraction > threshold]


def global_prototype(features: Tensor, mask: Tensor, eps: float = 1e-5) -> Tensor:
    """Masked average of the features.

    Shape:
        features ``[C, h, w]``, mask ``[h, w]`` -> ``[1, C]``.
    """
    m = mask.to(features.dtype)
    return ((features * m).sum(dim=(1, 2)) / (m.sum() + eps))[None]


def class_prototypes(
    features: Tensor, mask: Tensor, window: int, threshold: float = 0.95, with_global: bool = False
) -> Tensor:
    """Local prototypes (+ the global one when ``with_global``), falling back to the global one.

    Shape:
        features ``[C, h, w]``, mask ``[h, w]`` -> ``[K, C]`` with ``K >= 1``.

    Raises:
        ValueError: When ``mask`` is empty (no prototype can describe the class).
    """
    if float(mask.sum()) <= 0:
        raise ValueError(
            "class_prototypes: the class mask is empty; expected at least one pixel of the class"
        )
    local = local_prototypes(features, mask, window, threshold)
    if with_global or local.shape[0] == 0:
        return torch.cat([local, global_prototype(features, mask)], dim=0)
    return local


def prototype_scores(features: Tensor, prototypes: Tensor, scale: float = 20.0) -> Tensor:
    """Softmax-weighted similarity to a class's prototypes.

    Shape:
        features ``[B, C, h, w]``, prototypes ``[K, C]`` -> ``[B, h, w]``.
    """
    sims = scale * torch.einsum("bchw,kc->bkhw", F.normalize(features, dim=1), F.normalize(prototypes, dim=1))
    return (F.softmax(sims, dim=1) * sims).sum(dim=1)


def alp_logits(
    support_features: Tensor,
    support_mask: Tensor,
    query_features: Tensor,
    window: int,
    threshold: float = 0.95,
    scale: float = 20.0,
) -> Tensor:
    """Background/foreground scores of the query from one support image.

    Args:
        support_features: ``[C, h, w]``.
        support_mask: ``[H, W]`` binary foreground at image resolution (area-downsampled here).
        query_features: ``[B, C, h, w]``.
        window: Local pooling window (ALPNet: 4 in training, 2 at test).
        threshold: Minimum class fraction of a cell for a local prototype.
        scale: Cosine temperature (20).

    Returns:
        ``[B, 2, h, w]`` scores (background, foreground) at feature resolution.
    """
    fg = F.interpolate(support_mask[None, None].float(), size=support_features.shape[-2:], mode="area")[0, 0]
    bg_protos = class_prototypes(support_features, 1.0 - fg, window, threshold, with_global=False)
    fg_protos = class_prototypes(support_features, fg, window, threshold, with_global=True)
    return torch.stack(
        [
            prototype_scores(query_features, bg_protos, scale),
            prototype_scores(query_features, fg_protos, scale),
        ],
        dim=1,
    )
