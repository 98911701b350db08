"""SLIC assignment of the numba backend: the pixels of one seed cell against its candidates.

The seeds' Voronoi cells (the first, nearest-seed assignment) tile the image; a pixel's candidates
are the centres of its cell's seed and of the 8 neighbouring seeds (3x3), so a centre can take pixels
up to ~1.5 grid steps from its seed. Every pixel of a cell shares its candidates: the cell's
coefficients go into a small table once, then each row is labelled by the vector kernels of
``slic_simd`` (8 or 16 lanes, or several 16-lane vectors for wide cells).

The distance ``|f - col_c|^2 + |p - pos_c|^2 / S^2`` is expanded around the cell: colours relative to
the cell's own centre colour and positions relative to the cell's corner, so every term stays small
and float32 keeps its precision. Centres sit in a grid padded by one ring of centres far away
(``padded_centres``), so border cells need no special case: a missing neighbour is never nearest.
"""

from __future__ import annotations

import numba
import numpy as np

from datasets.superpixels.slic_simd import (
    TABLE_STRIDE,
    label_rows8_grey,
    label_rows8_rgb,
    label_rows16_grey,
    label_rows16_rgb,
)

# Pixels per vector: 16 float32 lanes fill an AVX-512 register (two AVX2 registers). Rows are padded by
# LANES so that the last vector of a row stays inside the buffer.
LANES = 16


@numba.njit(cache=True, fastmath=True, inline="always")
def _coef(cen, c, ox, oy, ref, inv_s2, table, slot):
    # (K, wu, wv, w0, w1, w2) of padded centre c for offsets (u, v) from the cell corner (ox, oy) and
    # colours relative to ref, into the table row of ``slot``.
    ru = cen[c, 0] - ox
    rv = cen[c, 1] - oy
    c0 = cen[c, 2] - ref[0]
    c1 = cen[c, 3] - ref[1]
    c2 = cen[c, 4] - ref[2]
    two = np.float32(-2.0)
    at = slot * TABLE_STRIDE
    table[at] = (ru * ru + rv * rv) * inv_s2 + (c0 * c0 + c1 * c1 + c2 * c2)
    table[at + 1] = two * ru * inv_s2
    table[at + 2] = two * rv * inv_s2
    table[at + 3] = two * c0
    table[at + 4] = two * c1
    table[at + 5] = two * c2


@numba.njit(cache=True, fastmath=True, inline="always")
def assign_cell(feat, plane, fw, y0, y1, x0, x1, i, j, nx, cen, inv_s2, lab, table, nc):
    """Label the cell ``[y0, y1) x [x0, x1)`` of seed ``(i, j)`` with the nearest of its candidates.

    Args:
        feat: flat padded planar features (``[C, H, W + LANES]`` raveled).
        plane: elements per channel plane (``H * (W + LANES)``).
        fw: padded row length ``W + LANES`` (of features and labels).
        y0: first row of the cell.
        y1: end row.
        x0: first column.
        x1: end column.
        i: the cell's seed row.
        j: the cell's seed column.
        nx: seed columns.
        cen: padded centres (see :func:`padded_centres`).
        inv_s2: ``1 / S^2`` (float32).
        lab: flat padded labels (``[H, W + LANES]`` raveled); vectors may run past ``x1`` into the
            next cell, which is labelled afterwards (cells go left to right).
        table: float32 scratch of ``9 * TABLE_STRIDE``.
        nc: channels (1 or 3).
    """
    stride = nx + 2
    top = i * stride + j
    own = top + stride + 1
    ref = (cen[own, 2], cen[own, 3], cen[own, 4])
    fx0 = np.float32(x0)
    fy0 = np.float32(y0)
    for slot in range(9):
        _coef(cen, top + (slot // 3) * stride + slot % 3, fx0, fy0, ref, inv_s2, table, slot)
    base = np.int32((i - 1) * nx + j - 1)
    nx32 = np.int32(nx)
    width = x1 - x0
    rows = np.int64(y1 - y0)
    at = np.int64(y0 * fw + x0)
    if width <= 8:
        if nc == 3:
            label_rows8_rgb(feat, at, plane, fw, lab, rows, table, np.float32(0.0), *ref, inv_s2, base, nx32)
        else:
            label_rows8_grey(feat, at, plane, fw, lab, rows, table, np.float32(0.0), *ref, inv_s2, base, nx32)
        return
    for x in range(0, width, LANES):
        u0 = np.float32(x)
        if nc == 3:
            label_rows16_rgb(feat, at + x, plane, fw, lab, rows, table, u0, *ref, inv_s2, base, nx32)
        else:
            label_rows16_grey(feat, at + x, plane, fw, lab, rows, table, u0, *ref, inv_s2, base, nx32)


@numba.njit(cache=True, fastmath=True)
def padded_centres(cy, cx, col, ny, nx, cen):
    """Write the centres into the padded float32 grid ``cen [(ny + 2) * (nx + 2), 8]``.

    Row ``(i + 1) * (nx + 2) + j + 1`` holds centre ``i * nx + j`` as (column, row, colour...); the
    border rows (set up by :func:`empty_padded_centres`) stay far away from every pixel, so the
    candidates of a border cell need no special case.
    """
    nc = col.shape[1]
    for i in range(ny):
        for j in range(nx):
            c = i * nx + j
            r = (i + 1) * (nx + 2) + j + 1
            cen[r, 0] = np.float32(cx[c])
            cen[r, 1] = np.float32(cy[c])
            for ch in range(nc):
                cen[r, 2 + ch] = col[c, ch]


@numba.njit(cache=True)
def empty_padded_centres(ny, nx):
    """The padded centre grid with every entry far away (1e15 px: squared distances ~1e28 in float32)."""
    cen = np.zeros(((ny + 2) * (nx + 2), 8), dtype=np.float32)
    cen[:, :2] = np.float32(1e15)
    return cen
