"""Noise statistics: per-class precision of noisy labels, the keep rates ``R_c`` of the selection.

``R_c = |noisy == c and clean == c| / |noisy == c|`` (pooled over pixels of all images) is the fraction
of pixels labelled ``c`` that truly are ``c``; the paper keeps that fraction of the smallest-loss
pixels of class ``c`` (``R_bg``, ``R_fg`` for binary tasks). With clean masks at hand it is exact (an
oracle, as in the paper). Without them two estimators are offered:

* :func:`estimate_precision_from_subset`: a small subset of training images re-annotated cleanly
  gives the pooled precision on that subset plus a seeded bootstrap standard error over images.
* :func:`estimate_precision_by_simulation`: when the noise process is known or assumed (alpha, beta,
  types), simulate it on clean masks one does have (e.g. the clean validation split) and measure the
  precision there. It is biased when the validation objects differ in size/shape from the training ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from datasets.noise.simulate import corrupt_label_map, select_noisy_ids


def precision_counts(noisy: np.ndarray, clean: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-class counts of correctly labelled pixels and of labelled pixels.

    Args:
        noisy: Integer labels ``[H, W]``.
        clean: Integer labels of the same shape.
        num_classes: Classes including background.

    Returns:
        ``(correct, labelled)``, int64 arrays of length ``num_classes``.

    Raises:
        ValueError: If the shapes differ.
    """
    noisy, clean = np.asarray(noisy), np.asarray(clean)
    if noisy.shape != clean.shape:
        raise ValueError(f"precision_counts: shapes differ, {noisy.shape} vs {clean.shape}")
    labelled = np.bincount(noisy.ravel(), minlength=num_classes)[:num_classes]
    correct = np.bincount(noisy[noisy == clean].ravel(), minlength=num_classes)[:num_classes]
    return correct.astype(np.int64), labelled.astype(np.int64)


def noise_precision(pairs: Iterable[tuple[np.ndarray, np.ndarray]], num_classes: int) -> list[float]:
    """Pooled per-class precision ``R_c`` of noisy labels against clean ones.

    Args:
        pairs: ``(noisy, clean)`` label maps.
        num_classes: Classes including background.

    Returns:
        ``[R_0, ..., R_{C-1}]``; 1.0 for a class never labelled.
    """
    correct = np.zeros(num_classes, np.int64)
    labelled = np.zeros(num_classes, np.int64)
    for noisy, clean in pairs:
        c, n = precision_counts(noisy, clean, num_classes)
        correct += c
        labelled += n
    return [float(c / n) if n else 1.0 for c, n in zip(correct, labelled, strict=True)]


def estimate_precision_from_subset(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]], num_classes: int, n_boot: int = 200, seed: int = 0
) -> tuple[list[float], list[float]]:
    """Estimate ``R_c`` from a subset of images that have both noisy and clean labels.

    Args:
        pairs: ``(noisy, clean)`` label maps of the subset.
        num_classes: Classes including background.
        n_boot: Bootstrap resamples of images for the standard error.
        seed: Seed of the bootstrap.

    Returns:
        ``(estimate, standard_error)`` per class.

    Raises:
        ValueError: If ``pairs`` is empty.
    """
    if not pairs:
        raise ValueError("estimate_precision_from_subset: need at least one (noisy, clean) pair")
    counts = [precision_counts(n, c, num_classes) for n, c in pairs]
    correct = np.stack([c for c, _ in counts])
    labelled = np.stack([n for _, n in counts])
    estimate = noise_precision(pairs, num_classes)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        pick = rng.integers(len(pairs), size=len(pairs))
        num, den = correct[pick].sum(0), labelled[pick].sum(0)
        boots.append(np.where(den > 0, num / np.maximum(den, 1), 1.0))
    return estimate, [float(s) for s in np.std(boots, axis=0)]


def estimate_precision_by_simulation(
    clean_masks: Sequence[np.ndarray],
    alpha: float,
    beta: float,
    num_classes: int,
    seed: int = 0,
    max_angle: float | dict[int, float] = 30.0,
) -> list[float]:
    """Estimate ``R_c`` by simulating the (assumed) noise process on clean masks.

    Args:
        clean_masks: Clean label maps, e.g. of the validation split.
        alpha: Fraction of images corrupted.
        beta: Noise level per corrupted image.
        num_classes: Classes including background.
        seed: Seed of the simulation.
        max_angle: Largest affine rotation (or per-class mapping).

    Returns:
        ``[R_0, ..., R_{C-1}]``.
    """
    ids = [str(i) for i in range(len(clean_masks))]
    noisy_ids = select_noisy_ids(ids, alpha, seed)
    rng = np.random.default_rng(seed)
    pairs = []
    for key, clean in zip(ids, clean_masks, strict=True):
        noisy = clean
        if key in noisy_ids:
            noisy, _ = corrupt_label_map(clean, beta, rng, num_classes, max_angle=max_angle)
        pairs.append((noisy, clean))
    return noise_precision(pairs, num_classes)
