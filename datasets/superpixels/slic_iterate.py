"""SLIC iterations of the numba backend on the seeds' Voronoi cells (kernels in ``slic_cells``).

Each assignment labels the cells left to right, band by band, and sums the band's rows for the update
while they are in cache.

The update walks each labelled row once: runs of equal labels are found without branches and their
feature sums come from per-row prefix sums (computed once per image), column sums in closed form.
Iterations stop early when an update leaves every centre exactly where it was: the next assignment
would equal the last one, so the result is the same as running all ``max_iter`` assignments.
"""

from __future__ import annotations

import numba
import numpy as np

from datasets.superpixels.slic_cells import LANES, assign_cell, empty_padded_centres, padded_centres
from datasets.superpixels.slic_simd import TABLE_STRIDE, run_ends16, trailing_zeros


@numba.njit(cache=True, fastmath=True, inline="always")
def _add_run(sums, c, y, a, b, pre, nc):
    # Pixels a..b-1 of row y, all labelled c: count, row sum, column sum (closed form), channel sums.
    n = b - a
    sums[c, 0] += n
    sums[c, 1] += n * y
    sums[c, 2] += 0.5 * n * (a + b - 1)
    sums[c, 3] += pre[0, y, b] - pre[0, y, a]
    if nc == 3:
        sums[c, 4] += pre[1, y, b] - pre[1, y, a]
        sums[c, 5] += pre[2, y, b] - pre[2, y, a]


@numba.njit(cache=True, fastmath=True)
def accumulate_row(y, lab, fw, w, pre, nc, sums):
    """Add the runs of equal labels of row ``y`` to the centre sums.

    Args:
        y: the row.
        lab: flat padded labels (rows of ``fw`` elements, ``w`` of them valid, 16 readable past ``w``).
        fw: padded row length.
        w: image width.
        pre: ``pre[ch, y]`` is the row's exclusive prefix sum of channel ``ch``.
        nc: channels.
        sums: ``sums[c]`` holds (count, row sum, column sum, channel sums), added to.
    """
    row = y * fw
    a = 0
    for x in range(0, w, 16):
        ends = run_ends16(lab, np.int64(row + x))
        valid = w - 1 - x  # a run end at the last pixel is the row end, handled below
        if valid < 16:
            ends &= (numba.uint64(1) << numba.uint64(valid)) - numba.uint64(1)
        while ends:
            b = x + np.int64(trailing_zeros(ends)) + 1
            _add_run(sums, lab[row + a], y, a, b, pre, nc)
            a = b
            ends &= ends - numba.uint64(1)
    _add_run(sums, lab[row + a], y, a, w, pre, nc)


@numba.njit(cache=True, fastmath=True)
def update_centres(sums, cy, cx, col, nc):
    """Move every centre with pixels to their mean (position and colour); return True if none moved.

    A centre without pixels keeps its position and colour (as skimage).
    """
    same = True
    for c in range(cy.shape[0]):
        n = sums[c, 0]
        if n > 0:
            inv = 1.0 / n
            y = sums[c, 1] * inv
            x = sums[c, 2] * inv
            same = same and y == cy[c] and x == cx[c]
            cy[c] = y
            cx[c] = x
            for ch in range(nc):
                v = np.float32(sums[c, 3 + ch] * inv)
                same = same and v == col[c, ch]
                col[c, ch] = v
    return same


@numba.njit(cache=True, fastmath=True)
def row_prefix(feat, w, pre):
    """Exclusive prefix sums along each row: ``pre[ch, y, x] = sum(feat[ch, y, :x])``, x in 0..w."""
    nc, h = feat.shape[0], feat.shape[1]
    for ch in range(nc):
        # Four rows at a time: four independent addition chains instead of one.
        for y in range(0, h - 3, 4):
            a0 = a1 = a2 = a3 = np.float32(0.0)
            r0, r1, r2, r3 = feat[ch, y], feat[ch, y + 1], feat[ch, y + 2], feat[ch, y + 3]
            p0, p1, p2, p3 = pre[ch, y], pre[ch, y + 1], pre[ch, y + 2], pre[ch, y + 3]
            for x in range(w):
                p0[x], p1[x], p2[x], p3[x] = a0, a1, a2, a3
                a0 += r0[x]
                a1 += r1[x]
                a2 += r2[x]
                a3 += r3[x]
            p0[w], p1[w], p2[w], p3[w] = a0, a1, a2, a3
        for y in range(h - h % 4, h):
            acc = np.float32(0.0)
            for x in range(w):
                pre[ch, y, x] = acc
                acc += feat[ch, y, x]
            pre[ch, y, w] = acc


@numba.njit(cache=True, fastmath=True)
def _assign_all(feat, by, bx, cen, inv_s2, lab):
    # One assignment over all cells, band by band, cells left to right.
    nc, h, fw = feat.shape
    ny, nx = by.shape[0] - 1, bx.shape[0] - 1
    flat, flat_lab = feat.ravel(), lab.ravel()
    table = np.empty(9 * TABLE_STRIDE, dtype=np.float32)
    plane = h * fw
    for i in range(ny):
        y0, y1 = by[i], by[i + 1]
        for j in range(nx):
            x0, x1 = bx[j], bx[j + 1]
            # The channel count as a constant in each call, as in _accumulate_all.
            if nc == 3:
                assign_cell(flat, plane, fw, y0, y1, x0, x1, i, j, nx, cen, inv_s2, flat_lab, table, 3)
            else:
                assign_cell(flat, plane, fw, y0, y1, x0, x1, i, j, nx, cen, inv_s2, flat_lab, table, 1)


@numba.njit(cache=True, fastmath=True)
def _accumulate_all(lab, pre, nc, sums):
    # The centre sums of a whole assignment, row by row. A pass of its own: summing each band right
    # after labelling it, inside the assignment loop, measured twice as slow.
    h, fw = lab.shape
    flat = lab.ravel()
    sums[:, :] = 0.0
    # The channel count as a constant in each loop: a run-time count measured several times slower.
    if nc == 3:
        for y in range(h):
            accumulate_row(y, flat, fw, fw - LANES, pre, 3, sums)
    else:
        for y in range(h):
            accumulate_row(y, flat, fw, fw - LANES, pre, 1, sums)


@numba.njit(cache=True, fastmath=True)
def slic_image(feat, init, ys, xs, by, bx, step, max_iter, out):
    """SLIC on one image: ``max_iter`` assignments, the first being the nearest-seed map ``init``.

    Args:
        feat: scaled planar features, rows padded by ``LANES``: ``[C, H, W + LANES]`` float32.
        init: the nearest-seed labels ``[H, W]``.
        ys: seed rows (float64).
        xs: seed columns (float64).
        by: row bounds of the seeds' Voronoi cells (``ny + 1``, int64).
        bx: column bounds (``nx + 1``).
        step: the spatial normaliser S.
        max_iter: number of assignments.
        out: int32 ``[H, W]`` centre labels, written.

    Returns:
        The number of assignments made: fewer than ``max_iter`` when an update left every centre
        exactly where it was (the following assignments would all repeat the last one).
    """
    nc, h = feat.shape[0], feat.shape[1]
    w = out.shape[1]
    k = ys.shape[0] * xs.shape[0]
    nx = xs.shape[0]
    pre = np.empty((nc, h, w + 1), dtype=np.float32)
    row_prefix(feat, w, pre)
    lab = np.empty((h, w + LANES), dtype=np.int32)
    lab[:, :w] = init
    sums = np.zeros((k, 6))
    cy = np.empty(k)
    cx = np.empty(k)
    col = np.zeros((k, 3), dtype=np.float32)
    for c in range(k):
        cy[c] = ys[c // nx]
        cx[c] = xs[c % nx]
    inv_s2 = np.float32(1.0 / (step * step))
    ny = ys.shape[0]
    cen = empty_padded_centres(ny, nx)
    done = 1
    for _ in range(1, max_iter):
        _accumulate_all(lab, pre, nc, sums)
        if update_centres(sums, cy, cx, col, nc):
            break
        padded_centres(cy, cx, col, ny, nx, cen)
        _assign_all(feat, by, bx, cen, inv_s2, lab)
        done += 1
    out[:, :] = lab[:, :w]
    return done
