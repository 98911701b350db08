"""SLIC in numba: the fast CPU backend, with skimage's parameter semantics.

What matches ``skimage.segmentation.slic``: each image is first stretched to [0, 1] over all channels,
RGB is converted to Lab (grey stays raw intensity), Gaussian smoothing (``sigma``) is applied after
the conversion, seeds lie on skimage's ``regular_grid`` for shape ``(1, H, W)`` with the same start
and step, the centres' colour starts at zero (so the first assignment is the nearest seed), the
distance is ``|colour|^2 / compactness^2 + |dxy|^2 / step^2``, ties go to the lower centre index, and
``max_iter`` assignments are made. Connectivity enforcement uses skimage's sizes
(``factor * H * W / number_of_seeds``); labels are consecutive and counts real.

What differs, for speed: the assignment is pixel-centric (``slic_cells``): a pixel's candidates are
the centres of the 3x3 seeds around its seed's Voronoi cell, so a centre can take pixels up to ~1.5
grid steps from its seed (skimage: 2 steps from the centre's current place). Each cell row is one or
a few explicit vectors (``slic_simd``, LLVM IR through numba intrinsics), the minimum taken on integer
keys, so distances within 2^-19 relative count as a tie (lower centre index). At matched counts,
boundary recall, undersegmentation error and ASA agree with skimage within 0.02
(tests/datasets/test_superpixel_quality.py, bench/superpixels.py). Lab comes from polynomial
approximations (``colour``, within 1e-3 of skimage). Iterations stop early when an update leaves every
centre exactly in place: the remaining assignments would repeat the last one, so the map is the one
``max_iter`` assignments give (deterministic; it rarely triggers on real images within 10 iterations).
Features are float32, centre sums float64. One image runs on one core; batches run images in parallel
over numba threads (``superpixels(..., num_threads=...)``); a single image or one thread takes serial
kernels (a parallel launch costs ~40 us).
"""

from __future__ import annotations

import functools

import numba
import numpy as np
from scipy import ndimage

from datasets.superpixels.colour import slic_features
from datasets.superpixels.connectivity import enforce_connectivity as _enforce_connectivity
from datasets.superpixels.numba_setup import batch_kernel
from datasets.superpixels.slic_cells import LANES
from datasets.superpixels.slic_iterate import slic_image


def slic_grid(height: int, width: int, n_segments: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Seed coordinates of skimage's ``regular_grid((1, H, W), n_segments)``.

    Args:
        height: image height.
        width: image width.
        n_segments: requested number of segments k.

    Returns:
        ``(ys, xs, step)``: row and column coordinates of the grid lines and the spatial
        normaliser (the largest grid step, as skimage's ``max(steps)``).
    """
    shape = np.array([1, height, width])
    order = np.argsort(shape, kind="stable")
    sorted_dims = shape[order].astype(np.float64)
    space = float(height * width)
    if space <= n_segments:
        steps_sorted = np.ones(3)
        starts_sorted = np.zeros(3, dtype=np.int64)
    else:
        steps_sorted = np.full(3, (space / n_segments) ** (1.0 / 3.0))
        if (sorted_dims < steps_sorted).any():
            # Dimensions shorter than the ideal step get one seed across; the rest share the seeds.
            for dim in range(3):
                steps_sorted[dim] = sorted_dims[dim]
                rest = float(np.prod(sorted_dims[dim + 1 :]))
                steps_sorted[dim + 1 :] = (rest / n_segments) ** (1.0 / (3 - dim - 1))
                if (sorted_dims >= steps_sorted).all():
                    break
        starts_sorted = (steps_sorted // 2).astype(np.int64)
        steps_sorted = np.round(steps_sorted)
    steps = np.empty(3)
    starts = np.empty(3, dtype=np.int64)
    steps[order] = steps_sorted
    starts[order] = starts_sorted
    ys = np.arange(starts[1], height, max(int(steps[1]), 1), dtype=np.float64)
    xs = np.arange(starts[2], width, max(int(steps[2]), 1), dtype=np.float64)
    return ys, xs, float(max(steps.max(), 1.0))


def nearest_seed_map(height: int, width: int, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """First SLIC assignment: every pixel to its nearest grid seed, ties to the lower seed index.

    With zero initial centre colour (skimage) the colour term is equal for all centres, so this is
    exactly skimage's first assignment, without the distance computation.
    """
    iy = np.argmin(np.abs(np.arange(height)[:, None] - ys[None, :]), axis=1)
    ix = np.argmin(np.abs(np.arange(width)[:, None] - xs[None, :]), axis=1)
    return (iy[:, None] * xs.size + ix[None, :]).astype(np.int32)


def _voronoi_bounds(n: int, seeds: np.ndarray) -> np.ndarray:
    # Bounds of the runs of coordinates 0..n-1 nearest to each seed (ties to the lower seed).
    nearest = np.argmin(np.abs(np.arange(n)[:, None] - seeds[None, :]), axis=1)
    return np.searchsorted(nearest, np.arange(seeds.size + 1)).astype(np.int64)


@functools.lru_cache(maxsize=16)
def _grid(height: int, width: int, n_segments: int) -> tuple:
    # Seeds, their Voronoi cells' row and column bounds and the nearest-seed map, per shape and k.
    ys, xs, step = slic_grid(height, width, n_segments)
    init = nearest_seed_map(height, width, ys, xs)
    by, bx = _voronoi_bounds(height, ys), _voronoi_bounds(width, xs)
    for a in (ys, xs, init, by, bx):
        a.flags.writeable = False
    return ys, xs, step, init, by, bx


@numba.njit(cache=True, parallel=True)
def _slic_parallel(feats, init, ys, xs, by, bx, step, max_iter, labels, iters):
    for i in numba.prange(feats.shape[0]):
        iters[i] = slic_image(feats[i], init, ys, xs, by, bx, step, max_iter, labels[i])


@numba.njit(cache=True)
def _slic_serial(feats, init, ys, xs, by, bx, step, max_iter, labels, iters):
    for i in range(feats.shape[0]):
        iters[i] = slic_image(feats[i], init, ys, xs, by, bx, step, max_iter, labels[i])


@numba.njit(cache=True)
def _compact_one(labels, k):
    # Centres that lost all pixels leave gaps in the ids; renumber in id order, return the count.
    flat = labels.ravel()
    new_id = np.full(k, -1, dtype=np.int32)
    for v in flat:
        new_id[v] = 0
    n = 0
    for i in range(k):
        if new_id[i] == 0:
            new_id[i] = n
            n += 1
    for i in range(flat.shape[0]):
        flat[i] = new_id[flat[i]]
    return n


@numba.njit(cache=True, parallel=True)
def _compact_parallel(labels, k, counts):
    for b in numba.prange(labels.shape[0]):
        counts[b] = _compact_one(labels[b], k)


@numba.njit(cache=True)
def _compact_serial(labels, k, counts):
    for b in range(labels.shape[0]):
        counts[b] = _compact_one(labels[b], k)


def prepare_features(images: np.ndarray, colour_space: str, compactness: float, sigma: float) -> np.ndarray:
    """Turn a float batch into scaled planar SLIC features, in skimage's order of steps.

    Args:
        images: float batch ``[B, H, W, C]`` in [0, 1], C in {1, 3}.
        colour_space: "lab" or "intensity" (already resolved from "auto").
        compactness: SLIC compactness m; colour is divided by m.
        sigma: Gaussian smoothing in pixels after the colour conversion (0: none).

    Returns:
        float32 contiguous features ``[B, C, H, W + LANES]``: every row padded with zeros so that the
        kernels' last vector of a row stays inside it.
    """
    if sigma <= 0:
        return slic_features(images, colour_space == "lab", 1.0 / compactness, pad=LANES)
    feats = slic_features(images, colour_space == "lab", 1.0 / compactness)
    # skimage smooths after the Lab conversion; the colour scale is linear so order is free.
    feats = ndimage.gaussian_filter(feats, sigma=(0, 0, sigma, sigma), mode="reflect", truncate=4.0)
    padded = np.zeros((*feats.shape[:3], feats.shape[3] + LANES), dtype=np.float32)
    padded[..., : feats.shape[3]] = feats
    return padded


def slic_numba(
    images: np.ndarray,
    n_segments: int,
    compactness: float,
    max_iter: int,
    sigma: float,
    colour_space: str,
    enforce_connectivity: bool,
    min_size_factor: float,
    max_size_factor: float,
) -> tuple[np.ndarray, np.ndarray]:
    """SLIC over a batch; each image on one core, images in parallel over numba threads.

    Args:
        images: float32 batch ``[B, H, W, C]`` in [0, 1].
        n_segments: k.
        compactness: colour vs space weight (skimage meaning).
        max_iter: number of assignment steps.
        sigma: Gaussian pre-smoothing (after Lab conversion, as skimage).
        colour_space: "lab" or "intensity".
        enforce_connectivity: run :func:`~datasets.superpixels.connectivity.enforce_connectivity`.
        min_size_factor: pieces below this fraction of ``H*W/seeds`` are merged.
        max_size_factor: pieces above this multiple of ``H*W/seeds`` are cut.

    Returns:
        ``(labels int32 [B, H, W], counts int64 [B])`` with labels ``0..count-1``.
    """
    b, h, w = images.shape[:3]
    feats = prepare_features(images, colour_space, compactness, sigma)
    ys, xs, step, init, by, bx = _grid(h, w, int(n_segments))
    labels = np.empty((b, h, w), dtype=np.int32)
    iters = np.zeros(b, dtype=np.int64)
    kernel = batch_kernel(_slic_serial, _slic_parallel, b)
    kernel(feats, init, ys, xs, by, bx, step, int(max_iter), labels, iters)
    if enforce_connectivity:
        sizes = connectivity_sizes(h * w / (ys.size * xs.size), min_size_factor, max_size_factor)
        return _enforce_connectivity(labels, *sizes)
    counts = np.zeros(b, dtype=np.int64)
    batch_kernel(_compact_serial, _compact_parallel, b)(labels, ys.size * xs.size, counts)
    return labels, counts


def connectivity_sizes(seg_size: float, min_size_factor: float, max_size_factor: float) -> tuple[int, int]:
    """Return skimage's size limits for the connectivity pass: ``int(factor * seg_size)`` pixels.

    Args:
        seg_size: Pixels per seed (see :func:`expected_segment_size`).
        min_size_factor: Pieces below this fraction of ``seg_size`` are merged.
        max_size_factor: Pieces above this multiple of ``seg_size`` are cut.

    Returns:
        ``(min_size, max_size)`` for :func:`~datasets.superpixels.connectivity.enforce_connectivity`;
        ``max_size`` is at least 1.
    """
    return int(min_size_factor * seg_size), max(int(max_size_factor * seg_size), 1)


def expected_segment_size(height: int, width: int, n_segments: int) -> float:
    """Pixels per seed of skimage's grid: the unit of ``min_size_factor`` and ``max_size_factor``."""
    ys, xs, _ = slic_grid(height, width, n_segments)
    return height * width / max(ys.size * xs.size, 1)
