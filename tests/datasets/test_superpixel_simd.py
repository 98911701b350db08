"""The numba SLIC vector kernels: nearest candidates, the tie rule, run ends, sums, batch kernels."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from datasets.superpixels.numba_setup import batch_kernel
from datasets.superpixels.slic_cells import LANES, empty_padded_centres, padded_centres
from datasets.superpixels.slic_iterate import _assign_all, accumulate_row, row_prefix
from datasets.superpixels.slic_numba import _grid, nearest_seed_map, prepare_features
from datasets.superpixels.slic_simd import run_ends16, trailing_zeros


def _assign(feat, grid, cy, cx, col):
    ys, xs, step, _, by, bx = grid
    h, w = feat.shape[1], feat.shape[2] - LANES
    cen = empty_padded_centres(ys.size, xs.size)
    padded_centres(cy, cx, col, ys.size, xs.size, cen)
    lab = np.zeros((h, w + LANES), dtype=np.int32)
    _assign_all(feat, by, bx, cen, np.float32(1.0 / step**2), lab)
    return lab[:, :w]


def _reference(feat, grid, cy, cx, col):
    # float64 distances to the 3x3 neighbouring seeds' centres of each pixel's Voronoi cell.
    ys, xs, step, init, _, _ = grid
    nc, h = feat.shape[0], feat.shape[1]
    f = feat[:, :, : init.shape[1]].astype(np.float64)
    ny, nx = ys.size, xs.size
    yy, xx = np.mgrid[0:h, 0 : init.shape[1]]
    dists = []
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            ci, cj = init // nx + di, init % nx + dj
            present = (ci >= 0) & (ci < ny) & (cj >= 0) & (cj < nx)
            c = np.clip(ci, 0, ny - 1) * nx + np.clip(cj, 0, nx - 1)
            d = ((yy - cy[c]) ** 2 + (xx - cx[c]) ** 2) / step**2
            d += sum((f[ch] - col[c, ch]) ** 2 for ch in range(nc))
            dists.append((np.where(present, d, np.inf), c))
    d = np.stack([a for a, _ in dists])
    ids = np.stack([c for _, c in dists])
    order = np.sort(d, axis=0)
    best = np.take_along_axis(ids, np.argmin(d, axis=0)[None], axis=0)[0]
    return best, order[1] - order[0]


@pytest.mark.parametrize("k", [30, 200, 700])  # cells > 16, <= 16 and <= 8 pixels wide
@pytest.mark.parametrize("channels", [1, 3])
def test_every_pixel_takes_its_nearest_candidate(k, channels):
    rng = np.random.default_rng(k + channels)
    image = rng.random((70, 90, channels)).astype(np.float32)
    feat = prepare_features(image[None], "lab" if channels == 3 else "intensity", 10.0, 0.0)[0]
    grid = _grid(70, 90, k)
    n = grid[0].size * grid[1].size
    # Centres moved off their seeds and given colours, as after an update.
    cy = np.repeat(grid[0], grid[1].size) + rng.uniform(-3, 3, n)
    cx = np.tile(grid[1], grid[0].size) + rng.uniform(-3, 3, n)
    col = np.zeros((n, 3), dtype=np.float32)
    col[:, :channels] = rng.uniform(feat.min(), feat.max(), (n, channels))
    labels = _assign(feat, grid, cy, cx, col)
    best, margin = _reference(feat, grid, cy, cx, col)
    differ = labels != best
    # Only near-ties may differ (float32 and 2^-19 key precision); nearly all pixels are exact.
    assert not differ[margin > 1e-3 * (1 + np.abs(margin))].any()
    assert differ.mean() < 1e-3


def test_ties_go_to_the_lower_centre_index():
    # Centres on their seeds with zero colour: every distance is spatial and exact in float32, and a
    # pixel midway between two seeds is a tie, so one assignment must equal the nearest-seed map.
    image = np.random.default_rng(0).random((48, 64, 3)).astype(np.float32)
    feat = prepare_features(image[None], "lab", 10.0, 0.0)[0]
    grid = _grid(48, 64, 48)
    ys, xs = grid[0], grid[1]
    cy, cx = np.repeat(ys, xs.size), np.tile(xs, ys.size)
    labels = _assign(feat, grid, cy, cx, np.zeros((cy.size, 3), dtype=np.float32))
    assert np.diff(xs).min() % 2 == 0  # even steps: some pixels lie exactly midway
    assert np.array_equal(labels, nearest_seed_map(48, 64, ys, xs))


@numba.njit
def _ends(lab, off):
    bits = run_ends16(lab, off)
    out = []
    while bits:
        out.append(np.int64(trailing_zeros(bits)))
        bits &= bits - numba.uint64(1)
    return out


def test_run_ends_of_16_labels():
    lab = np.array([5, 5, 7, 7, 7, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 9, 9], dtype=np.int32)
    # Ends between positions t and t + 1 for t < 16 from offset 0: after 1, 4, 14; and 16 | 17.
    assert list(_ends(lab, np.int64(0))) == [1, 4, 14]
    assert list(_ends(lab, np.int64(2))) == [2, 12, 14]


@pytest.mark.parametrize("width", [5, 16, 37, 64])
def test_row_sums_match_numpy(width):
    rng = np.random.default_rng(width)
    labels = np.repeat(rng.integers(0, 6, (3, width // 2 + 1)), 2, axis=1)[:, :width].astype(np.int32)
    feat = rng.random((3, 3, width + LANES)).astype(np.float32)
    pre = np.empty((3, 3, width + 1), dtype=np.float32)
    row_prefix(feat, width, pre)
    lab = np.zeros((3, width + LANES), dtype=np.int32)
    lab[:, :width] = labels
    sums = np.zeros((6, 6))
    for y in range(3):
        accumulate_row(y, lab.ravel(), width + LANES, width, pre, 3, sums)
    yy, xx = np.mgrid[0:3, 0:width]
    flat = labels.ravel()
    expected = [np.bincount(flat, weights=v.ravel(), minlength=6) for v in (np.ones_like(yy), yy, xx)]
    expected += [np.bincount(flat, weights=feat[ch, :, :width].ravel(), minlength=6) for ch in range(3)]
    np.testing.assert_allclose(sums, np.stack(expected, axis=1), rtol=1e-5, atol=1e-4)


def test_batch_kernel_runs_parallel_only_for_batches_with_threads():
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        assert batch_kernel("serial", "parallel", 8) == "serial"
        if numba.config.NUMBA_NUM_THREADS > 1:
            numba.set_num_threads(2)
            assert batch_kernel("serial", "parallel", 8) == "parallel"
            assert batch_kernel("serial", "parallel", 1) == "serial"
    finally:
        numba.set_num_threads(before)
