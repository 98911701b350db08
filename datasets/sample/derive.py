"""Pure array functions that turn the source images into the embedded sample.

No file or network access here, so every step can be tested on synthetic arrays.
`build_sample.py` owns reading the sources and writing the outputs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.transform import resize

SPLITS: tuple[str, ...] = ("train", "val", "test")

# Compact label map shared by both abdominal subsets (SSL-ALPNet evaluates these four organs).
COMPACT_LABELS: dict[int, str] = {
    0: "background",
    1: "liver",
    2: "spleen",
    3: "kidney_right",
    4: "kidney_left",
}
# TotalSegmentator v2 ids of these organs; identical in the "total" (CT) and "total_mr" (MR) class maps.
TOTALSEG_TO_COMPACT: dict[int, int] = {5: 1, 1: 2, 2: 3, 3: 4}


def window_ct(hu: np.ndarray, lo: float = -125.0, hi: float = 275.0) -> np.ndarray:
    """Map CT Hounsfield units through an intensity window to 8 bits (SABS abdominal window).

    Args:
        hu: CT intensities in HU, any shape.
        lo: HU mapped to 0.
        hi: HU mapped to 255.

    Returns:
        uint8 array of the same shape; values outside the window are clipped.
    """
    scaled = (np.clip(hu.astype(np.float64), lo, hi) - lo) / (hi - lo) * 255.0
    return np.round(scaled).astype(np.uint8)


def scale_mr(volume: np.ndarray, top_percent: float = 0.5) -> np.ndarray:
    """Clip the brightest `top_percent` % of an MR volume, then scale [0, clip] to 8 bits (CHAOS style).

    Negative values (resampling undershoot; MR magnitude is non-negative) are clipped to 0.

    Args:
        volume: MR intensities, any shape.
        top_percent: percentage of brightest voxels saturated at 255.

    Returns:
        uint8 array of the same shape.

    Raises:
        ValueError: if the clip level is not positive (an empty or all-negative volume).
    """
    hi = float(np.percentile(volume, 100.0 - top_percent))
    if hi <= 0:
        raise ValueError(f"MR volume has {100 - top_percent} percentile {hi}; expected a positive intensity")
    scaled = np.clip(volume.astype(np.float64), 0.0, hi) / hi * 255.0
    return np.round(scaled).astype(np.uint8)


def stretch_percentile(image: np.ndarray, pmin: float = 1.0, pmax: float = 99.8) -> np.ndarray:
    """Robust contrast stretch: the `pmin` and `pmax` percentiles map to 0 and 255, values beyond clip.

    Args:
        image: intensities, any shape.
        pmin: lower percentile.
        pmax: upper percentile.

    Returns:
        uint8 array of the same shape.

    Raises:
        ValueError: if the two percentiles coincide (a constant image).
    """
    lo, hi = (float(v) for v in np.percentile(image, [pmin, pmax]))
    if hi <= lo:
        raise ValueError(f"percentiles {pmin}/{pmax} are both {lo}; cannot stretch a constant image")
    scaled = (np.clip(image.astype(np.float64), lo, hi) - lo) / (hi - lo) * 255.0
    return np.round(scaled).astype(np.uint8)


# Registry: modality name -> whole-volume 8-bit normalisation.
NORMALISERS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"ct": window_ct, "mr": scale_mr}


def remap_labels(seg: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    """Map source label ids to compact ids; ids absent from `mapping` become 0.

    Args:
        seg: integer label map, any shape, values >= 0.
        mapping: source id -> compact id.

    Returns:
        uint8 label map of the same shape.
    """
    lut = np.zeros(max(int(seg.max()), *mapping) + 1, dtype=np.uint8)
    for src, dst in mapping.items():
        lut[src] = dst
    return lut[seg.astype(np.int64)]


def body_bbox(volume: np.ndarray, threshold: float | None = None, margin: int = 2) -> tuple[slice, slice]:
    """In-plane bounding box of the body: largest 3D connected component above a threshold.

    Args:
        volume: intensities, shape (X, Y, Z).
        threshold: foreground threshold; None uses Otsu's threshold of the volume.
        margin: voxels added on each side, clipped to the volume.

    Returns:
        Slices for axes X and Y.

    Raises:
        ValueError: if nothing lies above the threshold.
    """
    thr = threshold_otsu(volume) if threshold is None else threshold
    components, n = ndimage.label(volume > thr)
    if n == 0:
        raise ValueError(f"no voxel above threshold {thr}; cannot find the body")
    sizes = np.bincount(components.ravel())[1:]
    body = components == (int(np.argmax(sizes)) + 1)
    out = []
    for axis in (0, 1):
        idx = np.flatnonzero(body.any(axis=tuple(a for a in range(3) if a != axis)))
        out.append(slice(max(int(idx[0]) - margin, 0), min(int(idx[-1]) + margin + 1, volume.shape[axis])))
    return out[0], out[1]


def organ_z_range(label: np.ndarray) -> slice:
    """Range of axial slices (last axis) that contain any non-zero label.

    Raises:
        ValueError: if the label map is empty.
    """
    z = np.flatnonzero(label.reshape(-1, label.shape[-1]).any(axis=0))
    if z.size == 0:
        raise ValueError("label map has no foreground voxel; expected at least one organ")
    return slice(int(z[0]), int(z[-1]) + 1)


def to_display(slice_xy: np.ndarray) -> np.ndarray:
    """Turn a RAS-canonical axial slice (X right, Y anterior) into radiological view.

    Rows run anterior -> posterior, columns patient right -> left (patient right on image left).

    Shape:
        (X, Y) -> (Y, X).
    """
    return np.ascontiguousarray(slice_xy.T[::-1, ::-1])


def fit_to_square(image: np.ndarray, size: int, order: int) -> np.ndarray:
    """Shrink (if larger) keeping the aspect ratio, then zero-pad centred to `size` x `size`.

    Args:
        image: 2D uint8 array.
        size: output side.
        order: interpolation order (0 = nearest, for label maps; 1 = bilinear, for images).

    Returns:
        uint8 array of shape (size, size).
    """
    h, w = image.shape
    if max(h, w) > size:
        scale = size / max(h, w)
        new_shape = (max(round(h * scale), 1), max(round(w * scale), 1))
        image = resize(image, new_shape, order=order, preserve_range=True, anti_aliasing=order > 0)
        image = np.round(image).astype(np.uint8)
        h, w = image.shape
    out = np.zeros((size, size), dtype=np.uint8)
    top, left = (size - h) // 2, (size - w) // 2
    out[top : top + h, left : left + w] = image
    return out


def split_blocks(n: int, block_size: int, fractions: tuple[float, float, float], seed: int) -> list[str]:
    """Assign contiguous blocks of slices to splits, so neighbours mostly share a split.

    The n slices are cut into ceil(n / block_size) blocks in z order. Val and test each receive
    max(1, floor(fraction * n_blocks + 0.5)) blocks, drawn by a permutation seeded with `seed`; train gets
    the rest.

    Args:
        n: number of slices.
        block_size: slices per block (the last block may be shorter).
        fractions: (train, val, test) fractions; only val and test are used, train takes the rest.
        seed: permutation seed.

    Returns:
        Split name per slice, in z order.

    Raises:
        ValueError: if there are too few blocks to give every split at least one.
    """
    n_blocks = -(-n // block_size)
    n_val, n_test = (max(1, int(np.floor(f * n_blocks + 0.5))) for f in fractions[1:])
    if n_blocks - n_val - n_test < 1:
        raise ValueError(f"{n} slices in blocks of {block_size} give {n_blocks} blocks; need >= 3")
    order = np.random.default_rng(seed).permutation(n_blocks)
    role = np.full(n_blocks, "train", dtype=object)
    role[order[:n_val]] = "val"
    role[order[n_val : n_val + n_test]] = "test"
    return [str(role[i // block_size]) for i in range(n)]
