"""Label-noise simulation of Li, Gao & He (MICCAI 2021): dilation, erosion and affine corruptions.

One definition of the noise level is used for every corruption type::

    beta = |noisy XOR clean| / |clean|        (pixel counts of one class)

Dilation and erosion grow/shrink the mask one 3x3 ring at a time until the area has changed by
``beta * area``; the last ring is taken only partly (its pixels ordered by Euclidean distance to the
previous mask, ties broken by a seeded permutation) so the achieved level lands on the request instead
of overshooting by a whole ring. Affine noise rotates the mask about its centroid by a random angle in
``[-max_angle, max_angle]`` and translates it along a random direction by the distance, found by
bisection, at which the symmetric difference reaches ``beta * area``.

Multi-class masks: every foreground class is corrupted independently (own type and draw); the noisy
class masks are then painted into one label map. Where noisy masks overlap, the pixel keeps its clean
class if that class claims it, otherwise the class with the smaller clean area wins (thin structures
such as clavicles stay visible over lungs), ties going to the lower class index.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

NOISE_TYPES = ("dilate", "erode", "affine")
_STRUCTURE = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class NoiseResult:
    """Outcome of corrupting one binary mask.

    Attributes:
        mask: The noisy boolean mask.
        noise_type: ``dilate``, ``erode``, ``affine`` or ``none`` (empty class, nothing to corrupt).
        requested: The requested beta.
        achieved: The achieved beta (``|noisy XOR clean| / |clean|``; 0 for an empty class).
    """

    mask: np.ndarray
    noise_type: str
    requested: float
    achieved: float


def noise_level(noisy: np.ndarray, clean: np.ndarray) -> float:
    """The noise level beta of a binary mask: ``|noisy XOR clean| / |clean|``.

    Args:
        noisy: Boolean mask ``[H, W]``.
        clean: Boolean mask of the same shape.

    Returns:
        The ratio; 0 when both are empty, ``inf`` when only ``clean`` is empty.

    Raises:
        ValueError: If the shapes differ.
    """
    noisy, clean = np.asarray(noisy, bool), np.asarray(clean, bool)
    if noisy.shape != clean.shape:
        raise ValueError(f"noise_level: shapes differ, {noisy.shape} vs {clean.shape}")
    area = int(clean.sum())
    diff = int((noisy ^ clean).sum())
    if area == 0:
        return 0.0 if diff == 0 else float("inf")
    return diff / area


def _grow(mask: np.ndarray, target: int, rng: np.random.Generator, shrink: bool) -> np.ndarray:
    """Add (or remove, ``shrink``) exactly ``target`` pixels ring by ring, the last ring partly."""
    current = mask.copy()
    changed = 0
    while changed < target:
        if shrink:
            step = ndimage.binary_erosion(current, _STRUCTURE, border_value=1)
            ring = current & ~step
        else:
            step = ndimage.binary_dilation(current, _STRUCTURE)
            ring = step & ~current
        count = int(ring.sum())
        if count == 0:  # cannot grow/shrink further (mask fills the image or vanished)
            break
        if changed + count <= target:
            current = step
            changed += count
            continue
        # Partial ring: closest pixels first (Euclidean), so the boundary stays smooth.
        reference = current if not shrink else ~current
        distance = ndimage.distance_transform_edt(~reference)
        coords = np.flatnonzero(ring)
        tie_break = rng.permutation(coords.size)
        order = np.lexsort((tie_break, distance.flat[coords]))
        chosen = coords[order[: target - changed]]
        current.flat[chosen] = not shrink
        changed = target
    return current


def morphological_noise(mask: np.ndarray, beta: float, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Dilate or erode a binary mask until its area changed by ``round(beta * area)`` pixels.

    Args:
        mask: Boolean mask ``[H, W]``.
        beta: Noise level (area change over area); erosion needs ``beta < 1``.
        kind: ``dilate`` or ``erode``.
        rng: Generator for the tie-break inside the last, partial ring.

    Returns:
        The noisy boolean mask.

    Raises:
        ValueError: For an unknown ``kind``, ``beta < 0``, or erosion with ``beta >= 1``.
    """
    if kind not in ("dilate", "erode"):
        raise ValueError(f"morphological_noise: kind must be 'dilate' or 'erode', got {kind!r}")
    if beta < 0 or (kind == "erode" and beta >= 1):
        raise ValueError(
            f"morphological_noise: beta={beta} invalid for {kind} (need beta >= 0, and < 1 for erosion)"
        )
    mask = np.asarray(mask, bool)
    target = int(round(beta * mask.sum()))
    return _grow(mask, target, rng, shrink=kind == "erode")


def _warp(mask: np.ndarray, angle_deg: float, shift: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Rotate about ``centre`` then translate by ``shift`` (row, col), nearest neighbour."""
    theta = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    # affine_transform maps output coords o to input coords: i = R^-1 (o - centre - shift) + centre.
    inverse = rot.T
    offset = centre - inverse @ (centre + shift)
    out = ndimage.affine_transform(mask.astype(np.uint8), inverse, offset=offset, order=0, cval=0)
    return out.astype(bool)


def affine_noise(
    mask: np.ndarray,
    beta: float,
    rng: np.random.Generator,
    max_angle: float = 30.0,
    tolerance: float = 0.01,
    max_tries: int = 8,
) -> np.ndarray:
    """Rotate (random angle) and translate (searched distance) a mask so that beta is reached.

    Args:
        mask: Boolean mask ``[H, W]`` with at least one pixel.
        beta: Requested ``|noisy XOR clean| / |clean|``.
        rng: Generator of the angle and the translation direction.
        max_angle: Largest rotation in degrees (ISIC 30, lungs/heart 15, clavicles 2).
        tolerance: Stop the search once ``|achieved - beta| <= tolerance``.
        max_tries: Directions tried before returning the closest result found.

    Returns:
        The noisy boolean mask closest to ``beta`` among those evaluated.

    Raises:
        ValueError: If ``mask`` is empty or ``beta < 0``.
    """
    mask = np.asarray(mask, bool)
    area = int(mask.sum())
    if area == 0 or beta < 0:
        raise ValueError(f"affine_noise: need a non-empty mask and beta >= 0 (area {area}, beta {beta})")
    centre = np.argwhere(mask).mean(0)
    reach = float(np.hypot(*mask.shape))
    best: tuple[float, np.ndarray] = (float("inf"), mask)

    def level(out: np.ndarray) -> float:
        return float((out ^ mask).sum()) / area

    def consider(out: np.ndarray) -> float:
        nonlocal best
        value = level(out)
        if abs(value - beta) < best[0]:
            best = (abs(value - beta), out)
        return value

    def bisect(fn: Callable[[float], np.ndarray], hi: float) -> None:
        lo = 0.0
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            value = consider(fn(mid))
            if abs(value - beta) <= tolerance:
                return
            lo, hi = (mid, hi) if value < beta else (lo, mid)

    for _ in range(max_tries):
        angle = float(rng.uniform(-max_angle, max_angle))
        direction = rng.uniform(0, 2 * np.pi)
        unit = np.array([np.sin(direction), np.cos(direction)])
        rotated_level = consider(_warp(mask, angle, np.zeros(2), centre))
        if rotated_level > beta + tolerance:
            # The rotation alone overshoots: search a smaller angle instead of a translation.
            bisect(lambda s, a=angle: _warp(mask, s * a, np.zeros(2), centre), 1.0)
        elif rotated_level < beta - tolerance:
            bisect(lambda t, a=angle, u=unit: _warp(mask, a, t * u, centre), reach)
        if best[0] <= tolerance:
            break
    return best[1]


NOISE_FUNCTIONS: dict[str, Callable[..., np.ndarray]] = {
    "dilate": lambda m, b, rng, **_: morphological_noise(m, b, "dilate", rng),
    "erode": lambda m, b, rng, **_: morphological_noise(m, b, "erode", rng),
    "affine": lambda m, b, rng, max_angle=30.0, **_: affine_noise(m, b, rng, max_angle=max_angle),
}


def corrupt_binary(
    mask: np.ndarray,
    beta: float,
    rng: np.random.Generator,
    noise_type: str | None = None,
    types: tuple[str, ...] = NOISE_TYPES,
    max_angle: float = 30.0,
) -> NoiseResult:
    """Corrupt one binary mask with a type drawn uniformly from ``types`` (or the given one).

    Args:
        mask: Boolean mask ``[H, W]``.
        beta: Requested noise level.
        rng: Generator of the type draw and the corruption.
        noise_type: Force a type instead of drawing one.
        types: Types to draw from.
        max_angle: Largest rotation of the affine type, degrees.

    Returns:
        A :class:`NoiseResult`; an empty mask comes back unchanged with type ``none``.

    Raises:
        ValueError: For an unknown type.
    """
    unknown = [t for t in ((noise_type,) if noise_type else types) if t not in NOISE_FUNCTIONS]
    if unknown:
        raise ValueError(f"unknown noise type(s) {unknown}; expected some of {NOISE_TYPES}")
    mask = np.asarray(mask, bool)
    kind = noise_type or types[int(rng.integers(len(types)))]
    if not mask.any():
        return NoiseResult(mask.copy(), "none", beta, 0.0)
    noisy = NOISE_FUNCTIONS[kind](mask, beta, rng, max_angle=max_angle)
    return NoiseResult(noisy, kind, beta, noise_level(noisy, mask))


def corrupt_label_map(
    labels: np.ndarray,
    beta: float,
    rng: np.random.Generator,
    num_classes: int | None = None,
    noise_type: str | None = None,
    max_angle: float | dict[int, float] = 30.0,
    compensation_rounds: int = 3,
    types: tuple[str, ...] = NOISE_TYPES,
) -> tuple[np.ndarray, dict[int, NoiseResult]]:
    """Corrupt every foreground class of a label map independently, then resolve overlaps.

    Args:
        labels: Integer label map ``[H, W]`` (0 = background).
        beta: Requested noise level of every class.
        rng: Generator of all draws.
        num_classes: Classes including background (default ``labels.max() + 1``).
        noise_type: Force one type for all classes.
        max_angle: Largest affine rotation, or a ``{class: angle}`` mapping (e.g. JSRT).
        compensation_rounds: Re-runs (same draws, larger request) of classes whose level fell short
            because neighbours kept contested pixels.
        types: The noise types drawn uniformly per class (unless ``noise_type`` forces one).

    Returns:
        ``(noisy_labels, {class: NoiseResult})``; achieved levels are measured on the final map.
    """
    labels = np.asarray(labels)
    n = int(num_classes) if num_classes is not None else int(labels.max()) + 1
    areas = {c: int((labels == c).sum()) for c in range(1, n)}
    # One child seed per class: a re-run with a corrected request repeats the class's draws.
    seeds = {c: int(rng.integers(2**63 - 1)) for c in range(1, n)}
    requests = dict.fromkeys(areas, float(beta))
    out = labels
    for _ in range(compensation_rounds + 1):
        results = {}
        for c in areas:
            angle = max_angle.get(c, 30.0) if isinstance(max_angle, dict) else max_angle
            child = np.random.default_rng(seeds[c])
            results[c] = corrupt_binary(labels == c, requests[c], child, noise_type, types, max_angle=angle)
        out = _resolve_overlaps(labels, results, areas)
        off = False
        for c, r in results.items():
            achieved = noise_level(out == c, labels == c)
            if r.noise_type in ("dilate", "affine") and achieved > 0 and abs(achieved - beta) > 0.01:
                # Neighbours took part of the change: ask this class for proportionally more.
                requests[c] = requests[c] * beta / achieved
                off = True
        if not off:
            break
    final = {
        c: NoiseResult(out == c, r.noise_type, beta, noise_level(out == c, labels == c))
        for c, r in results.items()
    }
    return out, final


def _resolve_overlaps(
    labels: np.ndarray, results: dict[int, NoiseResult], areas: dict[int, int]
) -> np.ndarray:
    """Paint noisy class masks: the clean owner keeps a contested pixel, else the smaller class wins."""
    out = np.zeros_like(labels)
    for c in sorted(results, key=lambda k: (-areas[k], -k)):
        out[results[c].mask] = c
    if len(results) < 2:
        return out
    claims = np.zeros(labels.shape, dtype=np.int32)
    owner_claims = np.zeros(labels.shape, dtype=bool)
    for c, r in results.items():
        claims += r.mask
        owner_claims |= r.mask & (labels == c)
    keep = (claims > 1) & owner_claims
    out[keep] = labels[keep]
    return out


def select_noisy_ids(ids: list[str], alpha: float, seed: int) -> set[str]:
    """The ``round(alpha * len(ids))`` ids (seeded, order-independent) whose labels get noise.

    Raises:
        ValueError: If ``alpha`` is outside ``[0, 1]``.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    ordered = sorted(ids)
    count = int(round(alpha * len(ordered)))
    chosen = np.random.default_rng(seed).permutation(len(ordered))[:count]
    return {ordered[i] for i in chosen}
