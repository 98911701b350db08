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

from datasets.superpixels.slic_cells import LANES, assign_cell


@numba.njit(cache=True, fastmath=True)
def accumulate_row(y, lab, w, pre, nc, ends, sums):
    """Add the runs of equal labels of row ``y`` (``lab[y, :w]``) to the centre sums.

    ``pre[ch, y]`` is the row's exclusive prefix sum of channel ``ch``; ``sums[c]`` holds
    (count, row sum, column sum, channel sums).
    """
    nr = 0
    for x in range(w - 1):
        ends[nr] = x + 1
        nr += lab[y, x] != lab[y, x + 1]
    ends[nr] = w
    nr += 1
    a = 0
    for r in range(nr):
        b = ends[r]
        c = lab[y, a]
        n = b - a
        sums[c, 0] += n
        sums[c, 1] += n * y
        sums[c, 2] += 0.5 * n * (a + b - 1)
        sums[c, 3] += pre[0, y, b] - pre[0, y, a]
        if nc == 3:
            sums[c, 4] += pre[1, y, b] - pre[1, y, a]
            sums[c, 5] += pre[2, y, b] - pre[2, y, a]
        a = b


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
def _assign_all(feat, by, bx, cy, cx, col, inv_s2, iota, lab, pre, ends, sums, accumulate):
    # One assignment over all cells, band by band; with accumulate, the band's rows are summed while hot.
    nc = feat.shape[0]
    ny, nx = by.shape[0] - 1, bx.shape[0] - 1
    w = lab.shape[1] - LANES
    for i in range(ny):
        y0, y1 = by[i], by[i + 1]
        r0, r1, r2 = max(i - 1, 0) * nx, i * nx, min(i + 1, ny - 1) * nx
        for j in range(nx):
            c0, c1, c2 = max(j - 1, 0), j, min(j + 1, nx - 1)
            ids = (
                np.int32(r0 + c0), np.int32(r0 + c1), np.int32(r0 + c2),
                np.int32(r1 + c0), np.int32(r1 + c1), np.int32(r1 + c2),
                np.int32(r2 + c0), np.int32(r2 + c1), np.int32(r2 + c2),
            )  # fmt: skip
            assign_cell(feat, y0, y1, bx[j], bx[j + 1], ids, cy, cx, col, inv_s2, iota, lab)
        if accumulate:
            for y in range(y0, y1):
                accumulate_row(y, lab, w, pre, nc, ends, sums)


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
    ends = np.empty(w + 1, dtype=np.int64)
    cy = np.empty(k)
    cx = np.empty(k)
    col = np.zeros((k, 3), dtype=np.float32)
    for c in range(k):
        cy[c] = ys[c // nx]
        cx[c] = xs[c % nx]
    iota = np.arange(LANES).astype(np.float32)
    inv_s2 = 1.0 / (step * step)
    done = 1
    if max_iter > 1:
        for y in range(h):
            accumulate_row(y, lab, w, pre, nc, ends, sums)
        update_centres(sums, cy, cx, col, nc)
    for it in range(1, max_iter):
        last = it == max_iter - 1
        sums[:, :] = 0.0
        _assign_all(feat, by, bx, cy, cx, col, inv_s2, iota, lab, pre, ends, sums, not last)
        done += 1
        if not last and update_centres(sums, cy, cx, col, nc):
            break
    out[:, :] = lab[:, :w]
    return done
