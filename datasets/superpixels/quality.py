"""Superpixel quality metrics on single ``[H, W]`` label maps (any integer labels).

Definitions follow the superpixel benchmark literature (Neubert & Protzel 2012; Stutz et al. 2018):
``N`` is the number of pixels, ``S_j`` the superpixels, ``G_i`` the ground-truth segments.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from datasets.superpixels.runs import connected_components


def _check_pair(labels: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    gt = np.asarray(gt)
    if labels.ndim != 2 or labels.shape != gt.shape or labels.size == 0:
        raise ValueError(
            f"expected non-empty [H, W] labels and gt of equal shape, got {labels.shape} and {gt.shape}"
        )
    return labels, gt


def boundary_map(labels: np.ndarray) -> np.ndarray:
    """Pixels whose label differs from at least one 4-neighbour (both sides of every edge).

    Shape:
        ``[H, W]`` -> bool ``[H, W]``.
    """
    labels = np.asarray(labels)
    b = np.zeros(labels.shape, dtype=bool)
    dy = labels[1:, :] != labels[:-1, :]
    dx = labels[:, 1:] != labels[:, :-1]
    b[1:, :] |= dy
    b[:-1, :] |= dy
    b[:, 1:] |= dx
    b[:, :-1] |= dx
    return b


def boundary_recall(labels: np.ndarray, gt: np.ndarray, tolerance: int = 2) -> float:
    """Fraction of ground-truth boundary pixels within ``tolerance`` pixels of a superpixel boundary.

    Distance is Chebyshev (a ``(2 t + 1)`` square). Boundaries are the pixels of :func:`boundary_map`.

    Args:
        labels: superpixel map ``[H, W]``.
        gt: ground-truth segmentation ``[H, W]``.
        tolerance: allowed distance in pixels (>= 0).

    Returns:
        Recall in [0, 1]; 1.0 when gt has no boundary (nothing to recall).

    Raises:
        ValueError: for mismatched shapes or a negative tolerance.
    """
    labels, gt = _check_pair(labels, gt)
    if tolerance < 0:
        raise ValueError(f"boundary_recall: tolerance must be >= 0, got {tolerance}")
    gt_b = boundary_map(gt)
    n = int(gt_b.sum())
    if n == 0:
        return 1.0
    sp_b = boundary_map(labels)
    if tolerance > 0:
        sp_b = ndimage.maximum_filter(sp_b, size=2 * tolerance + 1, mode="constant", cval=0)
    return float((gt_b & sp_b).sum()) / n


def _contingency(labels: np.ndarray, gt: np.ndarray) -> np.ndarray:
    # Overlap counts |S_j ∩ G_i| as a dense [n_gt, n_sp] matrix.
    _, sp = np.unique(labels, return_inverse=True)
    _, g = np.unique(gt, return_inverse=True)
    sp = sp.ravel()
    g = g.ravel()
    n_sp = int(sp.max()) + 1
    n_g = int(g.max()) + 1
    return np.bincount(g * n_sp + sp, minlength=n_g * n_sp).reshape(n_g, n_sp)


def undersegmentation_error(labels: np.ndarray, gt: np.ndarray) -> float:
    r"""Corrected undersegmentation error of Neubert & Protzel (2012).

    ``UE = (1/N) * sum_i sum_{j: S_j ∩ G_i != ∅} min(|S_j ∩ G_i|, |S_j \ G_i|)``: each superpixel
    that straddles a ground-truth boundary is charged its smaller side, so it does not depend on
    an overlap threshold (unlike Levinshtein's version) and cannot exceed 1 for perfect leaks.

    Args:
        labels: superpixel map ``[H, W]``.
        gt: ground-truth segmentation ``[H, W]``.

    Returns:
        Error in [0, 1]; 0 when every superpixel lies inside one gt segment.
    """
    labels, gt = _check_pair(labels, gt)
    m = _contingency(labels, gt)
    outside = m.sum(axis=0, keepdims=True) - m
    return float(np.minimum(m, outside)[m > 0].sum()) / labels.size


def achievable_segmentation_accuracy(labels: np.ndarray, gt: np.ndarray) -> float:
    """Best pixel accuracy reachable by labelling each superpixel with one gt segment.

    ``ASA = (1/N) * sum_j max_i |S_j ∩ G_i|``.

    Args:
        labels: superpixel map ``[H, W]``.
        gt: ground-truth segmentation ``[H, W]``.

    Returns:
        Accuracy in (0, 1].
    """
    labels, gt = _check_pair(labels, gt)
    return float(_contingency(labels, gt).max(axis=0).sum()) / labels.size


def segment_count(labels: np.ndarray, ignore: int | None = None) -> int:
    """Number of distinct labels, optionally not counting ``ignore`` (e.g. 0 outside a body mask)."""
    uniq = np.unique(np.asarray(labels))
    return int(uniq.size - (1 if ignore is not None and ignore in uniq else 0))


def compactness(labels: np.ndarray, weighted: bool = True) -> float:
    """Mean isoperimetric quotient ``Q_j = 4 pi |S_j| / P_j^2`` (Schick et al. 2012).

    The perimeter counts pixel edges between a segment and other segments or the image border, so
    an axis-aligned k x k square has ``Q = pi / 4`` and a 1 x k strip ``pi k / (k + 1)^2``.

    Args:
        labels: superpixel map ``[H, W]``.
        weighted: weight each segment by its area (Schick's compactness); False: plain mean.

    Returns:
        Compactness in (0, pi / 4] for pixel shapes.

    Raises:
        ValueError: for an empty or non-2-D map.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.size == 0:
        raise ValueError(f"compactness: expected a non-empty [H, W] map, got shape {labels.shape}")
    _, ids = np.unique(labels, return_inverse=True)
    ids = ids.reshape(labels.shape)
    n = int(ids.max()) + 1
    area = np.bincount(ids.ravel(), minlength=n).astype(np.float64)
    per = np.zeros(n, dtype=np.float64)
    for a, b in ((ids[1:, :], ids[:-1, :]), (ids[:, 1:], ids[:, :-1])):
        diff = a != b
        per += np.bincount(a[diff], minlength=n) + np.bincount(b[diff], minlength=n)
    for edge in (ids[0, :], ids[-1, :], ids[:, 0], ids[:, -1]):
        per += np.bincount(edge, minlength=n)
    q = 4.0 * np.pi * area / per**2
    if weighted:
        return float((q * area).sum() / area.sum())
    return float(q.mean())


def is_connected(
    labels: np.ndarray, connectivity: int = 4, per_label: bool = False
) -> bool | dict[int, bool]:
    """Whether every label forms a single connected region.

    Args:
        labels: label map ``[H, W]``.
        connectivity: 4 or 8.
        per_label: return ``{label: bool}`` instead of one bool for the whole map.

    Returns:
        True when each label is one region (or the per-label dict).
    """
    labels = np.asarray(labels)
    comp, n = connected_components(labels, connectivity)
    uniq, inv = np.unique(labels, return_inverse=True)
    if not per_label:
        return n == uniq.size
    # Pieces per label: count distinct component ids among the pixels of each label.
    pairs = np.unique(inv.ravel().astype(np.int64) * n + comp.ravel())
    pieces = np.bincount(pairs // n, minlength=uniq.size)
    return {int(v): bool(p == 1) for v, p in zip(uniq, pieces, strict=True)}
