"""Connectivity enforcement and connected components for label maps (numba).

The idea follows skimage's SLIC post-processing (itself from Achanta et al.): every 4-connected piece
of a label becomes its own segment; pieces larger than ``max_size`` are cut (breadth-first from their
first pixel in raster order, ``max_size`` pixels per cut, like skimage); pieces smaller than
``min_size`` join an adjacent segment. The join target is the segment above the piece's first
pixel, else the one to its left, right or below (skimage takes the last labelled neighbour met by its
search; both are adjacent). Pixels outside an optional mask take no part. Segments are numbered
consecutively from 0 in raster order of their first pixel, and every label is one 4-connected region.

Pieces come from ``runs.py`` (horizontal runs joined by a union-find).
"""

from __future__ import annotations

import numba
import numpy as np

from datasets.superpixels.numba_setup import batch_kernel
from datasets.superpixels.runs import (
    find_root,
    link_labelled_runs,
    number_roots,
    paint_runs,
    run_pieces,
    union_sets,
)
from datasets.superpixels.slic_simd import run_ends16, trailing_zeros


@numba.njit(cache=True, inline="always")
def _push_run(run_y, run_x0, run_x1, run_lab, n, y, a, b, lab):
    run_y[n] = y
    run_x0[n] = a
    run_x1[n] = b
    run_lab[n] = lab
    return n + 1


@numba.njit(cache=True)
def _unmasked_runs(labels, run_y, run_x0, run_x1, run_lab, row_start):
    # Each row's runs: run ends found 16 labels at a time (vector compare, then the set bits).
    h, w = labels.shape
    flat = labels.ravel()
    n = 0
    for y in range(h):
        row_start[y] = n
        base = y * w
        a = 0
        x = 0
        while x + 17 <= w:  # a chunk reads 17 labels
            ends = run_ends16(flat, np.int64(base + x))
            while ends:
                b = x + np.int64(trailing_zeros(ends)) + 1
                n = _push_run(run_y, run_x0, run_x1, run_lab, n, y, a, b, flat[base + a])
                a = b
                ends &= ends - numba.uint64(1)
            x += 16
        for t in range(x, w - 1):
            if flat[base + t] != flat[base + t + 1]:
                n = _push_run(run_y, run_x0, run_x1, run_lab, n, y, a, t + 1, flat[base + a])
                a = t + 1
        n = _push_run(run_y, run_x0, run_x1, run_lab, n, y, a, w, flat[base + a])
    row_start[h] = n
    return n


@numba.njit(cache=True)
def _pieces_unmasked(labels):
    # run_pieces for a map without mask: vector run ends, runs linked by their stored labels.
    h, w = labels.shape
    # One buffer for the run arrays; above[r]: the run of the row above that covers run r's start.
    buf = np.empty((5, h * w), dtype=np.int32)
    run_y, run_x0, run_x1, run_lab, above = buf[0], buf[1], buf[2], buf[3], buf[4]
    row_start = np.empty(h + 1, dtype=np.int64)
    n = _unmasked_runs(labels, run_y, run_x0, run_x1, run_lab, row_start)
    piece, n_pieces = link_labelled_runs(run_x0, run_x1, run_lab, row_start, h, n, above)
    return run_y, run_x0, run_x1, n, piece, n_pieces, row_start, above


@numba.njit(cache=True, inline="always")
def _run_at(row_start, run_x1, y, x):
    # The run of row y that covers column x (binary search over the row's run ends).
    lo = row_start[y]
    hi = row_start[y + 1] - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if run_x1[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(cache=True)
def _enforce_unmasked(labels, min_size, max_size, out):
    # The common case without mask and without oversized pieces, on runs only: the neighbours of a
    # small piece's first pixel are looked up in the runs, and the map is painted once at the end.
    # Returns -1 when the general path is needed (a piece to cut, or no neighbour found this way).
    h, w = labels.shape
    run_y, run_x0, run_x1, n_runs, piece, n_pieces, row_start, above = _pieces_unmasked(labels)
    size = np.zeros(n_pieces, dtype=np.int64)
    first = np.empty(n_pieces, dtype=np.int64)
    for r in range(n_runs - 1, -1, -1):
        size[piece[r]] += run_x1[r] - run_x0[r]
        first[piece[r]] = r
    if n_pieces > 0 and size.max() > max_size:
        return -1
    join = np.arange(n_pieces)
    for p in range(n_pieces):
        if size[p] >= min_size:
            continue
        r = first[p]
        y = run_y[r]
        if y > 0:  # above, else left, else right of the first run, else below (as the general path)
            target = piece[above[r]]
        elif run_x0[r] > 0:
            target = piece[r - 1]
        elif run_x1[r] < w:
            target = piece[r + 1]
        elif y + 1 < h and piece[_run_at(row_start, run_x1, y + 1, run_x0[r])] != p:
            target = piece[_run_at(row_start, run_x1, y + 1, run_x0[r])]
        else:
            return -1
        union_sets(join, p, target)
    final = np.empty(n_pieces, dtype=np.int32)
    count = number_roots(join, final)
    _paint_wide(out, run_y, run_x0, run_x1, final, piece, n_runs)
    return count


@numba.njit(cache=True, inline="always")
def _paint_wide(out, run_y, run_x0, run_x1, final, piece, n_runs):
    # paint_runs with a fixed-width write per run: a write past the run's end lands on runs further
    # right in the row, which are painted afterwards; this avoids a mispredicted loop exit per run.
    w = out.shape[1]
    for r in range(n_runs):
        v = final[piece[r]]
        y = numba.uint64(run_y[r])
        x0 = numba.uint64(run_x0[r])
        x1 = numba.uint64(run_x1[r])
        if x1 - x0 <= 16 and x0 + 16 <= w:
            for t in range(16):
                out[y, x0 + numba.uint64(t)] = v
        else:
            for x in range(x0, x1):
                out[y, x] = v


@numba.njit(cache=True)
def _cut_piece(out, labels_out, piece, first_y, first_x, max_size, next_id, qy, qx, h, w):
    # Breadth-first cuts of one oversized piece (pixels with out == piece) into <= max_size parts.
    for y0 in range(first_y, h):
        for x0 in range(w):
            if out[y0, x0] != piece or labels_out[y0, x0] >= 0:
                continue
            labels_out[y0, x0] = next_id
            qy[0] = y0
            qx[0] = x0
            size = 1
            head = 0
            while head < size and size < max_size:
                py = qy[head]
                px = qx[head]
                head += 1
                for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                    ny = py + dy
                    nx = px + dx
                    inside = 0 <= ny < h and 0 <= nx < w
                    if inside and out[ny, nx] == piece and labels_out[ny, nx] < 0 and size < max_size:
                        labels_out[ny, nx] = next_id
                        qy[size] = ny
                        qx[size] = nx
                        size += 1
            next_id += 1
    return next_id


@numba.njit(cache=True)
def _any_neighbour(seg, p, y_from, h, w):
    # Slow path for the rare small piece whose first pixel has no usable neighbour.
    for y in range(y_from, h):
        for x in range(w):
            if seg[y, x] != p:
                continue
            for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                ny = y + dy
                nx = x + dx
                if 0 <= ny < h and 0 <= nx < w and seg[ny, nx] >= 0 and seg[ny, nx] != p:
                    return seg[ny, nx]
    return -1


@numba.njit(cache=True)
def _enforce_one(labels, inside, masked, min_size, max_size, out):
    h, w = labels.shape
    cap = h * w
    if not masked:
        count = _enforce_unmasked(labels, min_size, max_size, out)
        if count >= 0:
            return count
        inside = np.ones((h, w), dtype=np.bool_)
    run_y, run_x0, run_x1, n_runs, piece, n_pieces = run_pieces(labels, inside, False)
    # Piece sizes from run lengths; first[p] is the piece's first run in raster order.
    size = np.zeros(n_pieces, dtype=np.int64)
    first = np.empty(n_pieces, dtype=np.int64)
    for r in range(n_runs - 1, -1, -1):
        size[piece[r]] += run_x1[r] - run_x0[r]
        first[piece[r]] = r
    out[:, :] = -1
    paint_runs(out, run_y, run_x0, run_x1, piece, n_runs)
    # Oversized pieces are cut into parts that get fresh piece ids (rare for SLIC output).
    seg = out
    was_cut = size.size > 0 and size.max() > max_size
    if was_cut:
        seg = np.full((h, w), -1, dtype=np.int32)
        qy = np.empty(cap, dtype=np.int64)
        qx = np.empty(cap, dtype=np.int64)
        next_id = n_pieces
        for p in range(n_pieces):
            if size[p] > max_size:
                r = first[p]
                next_id = _cut_piece(out, seg, p, run_y[r], run_x0[r], max_size, next_id, qy, qx, h, w)
        for y in range(h):
            for x in range(w):
                if seg[y, x] < 0:
                    seg[y, x] = out[y, x]
        # Recount sizes and first pixels for the new ids in raster order.
        n_pieces = next_id
        size = np.zeros(n_pieces, dtype=np.int64)
        first_y = np.full(n_pieces, -1, dtype=np.int64)
        first_x = np.zeros(n_pieces, dtype=np.int64)
        for y in range(h):
            for x in range(w):
                s = seg[y, x]
                if s >= 0:
                    size[s] += 1
                    if first_y[s] < 0:
                        first_y[s] = y
                        first_x[s] = x
    else:
        first_y = np.empty(n_pieces, dtype=np.int64)
        first_x = np.empty(n_pieces, dtype=np.int64)
        for p in range(n_pieces):
            first_y[p] = run_y[first[p]]
            first_x[p] = run_x0[first[p]]
    # Small pieces join a neighbour of their first pixel: above, left, right of the run, below.
    join = np.arange(n_pieces)
    for p in range(n_pieces):
        if size[p] == 0 or size[p] >= min_size:  # size 0: the id of a piece that was cut up
            continue
        y = first_y[p]
        x = first_x[p]
        target = -1
        if y > 0 and seg[y - 1, x] >= 0:
            target = seg[y - 1, x]
        elif x > 0 and seg[y, x - 1] >= 0:
            target = seg[y, x - 1]
        else:
            xe = x
            while xe < w and seg[y, xe] == p:
                xe += 1
            if xe < w and seg[y, xe] >= 0:
                target = seg[y, xe]
            elif y + 1 < h and seg[y + 1, x] >= 0 and seg[y + 1, x] != p:
                target = seg[y + 1, x]
            else:
                target = _any_neighbour(seg, p, y, h, w)
        if target >= 0:
            union_sets(join, p, target)
    # Consecutive ids in raster order of each merged segment's first pixel.
    if not was_cut:
        # Piece ids follow raster order and a merged set's root is its smallest id, so numbering
        # roots in id order is raster order; then repaint the runs instead of every pixel.
        final = np.empty(n_pieces, dtype=np.int32)
        count = number_roots(join, final)
        paint_runs(out, run_y, run_x0, run_x1, final[piece], n_runs)
        return count
    new_id = np.full(n_pieces, -1, dtype=np.int32)
    count = 0
    for y in range(h):
        for x in range(w):
            s = seg[y, x]
            if s >= 0:
                root = find_root(join, s)
                if new_id[root] < 0:
                    new_id[root] = count
                    count += 1
                out[y, x] = new_id[root]
    return count


@numba.njit(cache=True, parallel=True)
def _enforce_parallel(labels, inside, masked, min_size, max_size, out, counts):
    for i in numba.prange(labels.shape[0]):
        m = inside[i] if masked else inside[0]
        counts[i] = _enforce_one(labels[i], m, masked, min_size, max_size, out[i])


@numba.njit(cache=True)
def _enforce_serial(labels, inside, masked, min_size, max_size, out, counts):
    for i in range(labels.shape[0]):
        m = inside[i] if masked else inside[0]
        counts[i] = _enforce_one(labels[i], m, masked, min_size, max_size, out[i])


def enforce_connectivity(
    labels: np.ndarray, min_size: int, max_size: int | None = None, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Make every segment one 4-connected region, merge small pieces, relabel consecutively.

    Args:
        labels: integer label maps.
        min_size: pieces with fewer pixels join an adjacent segment (0 keeps all). A piece with no
            neighbour inside the mask stays on its own, so nothing is dropped.
        max_size: pieces are cut at this many pixels (None: never cut).
        mask: optional bool maps; pixels outside are ignored and labelled -1.

    Returns:
        ``(out, counts)``: int32 maps with labels ``0..counts[b]-1`` inside the mask (-1 outside)
        and int64 segment counts.

    Shape:
        labels ``[H, W]`` or ``[B, H, W]``; mask the same; out the same; counts ``[B]`` (``[1]`` for 2-D).

    Raises:
        ValueError: for a mask of another shape, wrong dimensions or negative sizes.
    """
    single = labels.ndim == 2
    lab = np.ascontiguousarray(labels[None] if single else labels, dtype=np.int32)
    if lab.ndim != 3:
        raise ValueError(f"enforce_connectivity: labels must be [H, W] or [B, H, W], got {labels.shape}")
    if min_size < 0 or (max_size is not None and max_size < 1):
        raise ValueError(f"enforce_connectivity: bad sizes min_size={min_size}, max_size={max_size}")
    if mask is None:
        inside = np.ones((1, 1, 1), dtype=np.bool_)  # unused placeholder
    else:
        inside = np.ascontiguousarray(mask[None] if single else mask, dtype=np.bool_)
        if inside.shape != lab.shape:
            raise ValueError(f"enforce_connectivity: mask shape {mask.shape} != labels shape {labels.shape}")
    big = lab.shape[1] * lab.shape[2] + 1 if max_size is None else int(max_size)
    out = np.empty_like(lab)
    counts = np.zeros(lab.shape[0], dtype=np.int64)
    kernel = batch_kernel(_enforce_serial, _enforce_parallel, lab.shape[0])
    kernel(lab, inside, mask is not None, int(min_size), big, out, counts)
    return (out[0] if single else out), counts
