"""SLIC assignment kernels of the numba backend: the pixels of one seed cell against its candidates.

The seeds' Voronoi cells (the first, nearest-seed assignment) tile the image; a pixel's candidates
are the centres of its cell's seed and of the 8 neighbouring seeds (3x3, fewer at the border), so a
centre can take pixels up to ~1.5 grid steps from its seed. Every pixel of a cell shares its
candidates, so a row of a cell is labelled in vectors of ``LANES`` pixels with the candidates'
coefficients in registers. The distance ``|f - col_c|^2 + |p - pos_c|^2 / S^2`` is expanded as
``K_c + w_c . (u, v, f) + (|f|^2 + |p|^2 / S^2)`` with ``(u, v)`` relative to the cell's corner; the
last term is the same for every candidate, so a candidate costs 4 FMAs (2 for grey) and a compare. Ties
go to the lower centre index, as in a sequential strict ``<`` scan over the centres in index order.
"""

from __future__ import annotations

import numba
import numpy as np

# Pixels per vector: 16 float32 lanes fill an AVX-512 register (two AVX2 registers). Rows are padded by
# LANES so that the last vector of a row stays inside the buffer.
LANES = 16


@numba.njit(cache=True, fastmath=True, inline="always")
def _pick(da, la, db, lb):
    # Keep (da, la) on ties: the left operand always holds the lower centre indices.
    better = db < da
    return (db if better else da), (lb if better else la)


@numba.njit(cache=True, fastmath=True, inline="always")
def _coef(c, ox, oy, cy, cx, col, nc, inv_s2):
    # (K, wu, wv, w0, w1, w2) of centre c for pixel offsets (u, v) from the cell corner (ox, oy).
    ru = cx[c] - ox
    rv = cy[c] - oy
    k = (ru * ru + rv * rv) * inv_s2 + col[c, 0] * col[c, 0]
    w1 = np.float32(0.0)
    w2 = np.float32(0.0)
    if nc == 3:
        k += col[c, 1] * col[c, 1] + col[c, 2] * col[c, 2]
        w1 = np.float32(-2.0) * col[c, 1]
        w2 = np.float32(-2.0) * col[c, 2]
    w0 = np.float32(-2.0) * col[c, 0]
    return np.float32(k), np.float32(-2.0 * ru * inv_s2), np.float32(-2.0 * rv * inv_s2), w0, w1, w2


@numba.njit(cache=True, fastmath=True, inline="always")
def _d3(q, k, u, a, b, e):
    return k + q[1] * u + q[3] * a + q[4] * b + q[5] * e


@numba.njit(cache=True, fastmath=True, inline="always")
def _d1(q, k, u, a):
    return k + q[1] * u + q[3] * a


@numba.njit(cache=True, fastmath=True, inline="always")
def _nearest(d, ids):
    # Pairwise tree over the 9 candidates in index order: equal to a sequential strict-< scan.
    e01, l01 = _pick(d[0], ids[0], d[1], ids[1])
    e23, l23 = _pick(d[2], ids[2], d[3], ids[3])
    e45, l45 = _pick(d[4], ids[4], d[5], ids[5])
    e67, l67 = _pick(d[6], ids[6], d[7], ids[7])
    e03, l03 = _pick(e01, l01, e23, l23)
    e47, l47 = _pick(e45, l45, e67, l67)
    e07, l07 = _pick(e03, l03, e47, l47)
    return _pick(e07, l07, d[8], ids[8])[1]


@numba.njit(cache=True, fastmath=True, inline="always")
def _label_vector(q, k, ids, feat, nc, y, iota, x, lab, lanes):
    # One vector of ``lanes`` (a constant once inlined) pixels from (y, x): nearest of the 9
    # candidates, written to lab. Plain indexing, no row views: a view costs reference counting.
    uy = numba.uint64(y)
    ux = numba.uint64(x)
    if nc == 3:
        for t in range(lanes):
            p = ux + numba.uint64(t)
            u, a, b, e = iota[t], feat[0, uy, p], feat[1, uy, p], feat[2, uy, p]
            d = (
                _d3(q[0], k[0], u, a, b, e),
                _d3(q[1], k[1], u, a, b, e),
                _d3(q[2], k[2], u, a, b, e),
                _d3(q[3], k[3], u, a, b, e),
                _d3(q[4], k[4], u, a, b, e),
                _d3(q[5], k[5], u, a, b, e),
                _d3(q[6], k[6], u, a, b, e),
                _d3(q[7], k[7], u, a, b, e),
                _d3(q[8], k[8], u, a, b, e),
            )
            lab[uy, p] = _nearest(d, ids)
    else:
        for t in range(lanes):
            p = ux + numba.uint64(t)
            u, a = iota[t], feat[0, uy, p]
            d = (
                _d1(q[0], k[0], u, a),
                _d1(q[1], k[1], u, a),
                _d1(q[2], k[2], u, a),
                _d1(q[3], k[3], u, a),
                _d1(q[4], k[4], u, a),
                _d1(q[5], k[5], u, a),
                _d1(q[6], k[6], u, a),
                _d1(q[7], k[7], u, a),
                _d1(q[8], k[8], u, a),
            )
            lab[uy, p] = _nearest(d, ids)


@numba.njit(cache=True, fastmath=True, inline="always")
def _row_offsets(q, v, u0):
    # K + wv * v + wu * u0 of each candidate: the per-vector constant of the distance.
    return (
        q[0][0] + q[0][2] * v + q[0][1] * u0,
        q[1][0] + q[1][2] * v + q[1][1] * u0,
        q[2][0] + q[2][2] * v + q[2][1] * u0,
        q[3][0] + q[3][2] * v + q[3][1] * u0,
        q[4][0] + q[4][2] * v + q[4][1] * u0,
        q[5][0] + q[5][2] * v + q[5][1] * u0,
        q[6][0] + q[6][2] * v + q[6][1] * u0,
        q[7][0] + q[7][2] * v + q[7][1] * u0,
        q[8][0] + q[8][2] * v + q[8][1] * u0,
    )


@numba.njit(cache=True, fastmath=True)
def assign_cell(feat, y0, y1, x0, x1, ids, cy, cx, col, inv_s2, iota, lab):
    """Label the cell ``[y0, y1) x [x0, x1)`` with the nearest of its 9 candidate centres.

    Args:
        feat: padded planar features ``[C, H, W + LANES]``.
        y0: first row of the cell.
        y1: end row.
        x0: first column.
        x1: end column.
        ids: the 9 candidate centre ids in index order (tuple).
        cy: centre rows.
        cx: centre columns.
        col: centre colours ``[k, 3]``.
        inv_s2: ``1 / S^2``.
        iota: ``0, 1, ..., LANES-1`` as float32.
        lab: padded labels ``[H, W + LANES]``; vectors may run past ``x1`` into the next cell, which is
            labelled afterwards (cells go left to right).
    """
    nc = feat.shape[0]
    q = (
        _coef(ids[0], x0, y0, cy, cx, col, nc, inv_s2),
        _coef(ids[1], x0, y0, cy, cx, col, nc, inv_s2),
        _coef(ids[2], x0, y0, cy, cx, col, nc, inv_s2),
        _coef(ids[3], x0, y0, cy, cx, col, nc, inv_s2),
        _coef(ids[4], x0, y0, cy, cx, col, nc, inv_s2),
        _coef(ids[5], x0, y0, cy, cx, col, nc, inv_s2),
        _coef(ids[6], x0, y0, cy, cx, col, nc, inv_s2),
        _coef(ids[7], x0, y0, cy, cx, col, nc, inv_s2),
        _coef(ids[8], x0, y0, cy, cx, col, nc, inv_s2),
    )
    # Cells at most 8 wide (small grid steps) take half vectors: no lanes wasted on the next cell.
    narrow = x1 - x0 <= LANES // 2
    zero = np.float32(0.0)
    rest = y0
    if x1 - x0 <= LANES and not narrow:
        # One vector per row: two rows per step give the core two independent chains to overlap.
        while rest + 1 < y1:
            k0 = _row_offsets(q, np.float32(rest - y0), zero)
            k1 = _row_offsets(q, np.float32(rest + 1 - y0), zero)
            _label_vector(q, k0, ids, feat, nc, rest, iota, x0, lab, LANES)
            _label_vector(q, k1, ids, feat, nc, rest + 1, iota, x0, lab, LANES)
            rest += 2
    for y in range(rest, y1):
        v = np.float32(y - y0)
        if narrow:
            _label_vector(q, _row_offsets(q, v, zero), ids, feat, nc, y, iota, x0, lab, LANES // 2)
            continue
        for x in range(x0, x1, LANES):
            k = _row_offsets(q, v, np.float32(x - x0))
            _label_vector(q, k, ids, feat, nc, y, iota, x, lab, LANES)
