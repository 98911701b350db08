"""Colour conversion and input normalisation for the CPU superpixel backends.

``rgb_to_lab`` reproduces ``skimage.color.rgb2lab`` (sRGB, D65, 2 degree observer) to float32
precision; the SLIC features (``slic_features``) use vectorised polynomial approximations of the same
conversion (within 1e-3 in L, a, b), so that SLIC colour distances mean the same thing in every backend.
"""

from __future__ import annotations

import numba
import numpy as np

from datasets.superpixels.numba_setup import batch_kernel

# sRGB (linear) -> CIE XYZ matrix and the D65 / 2 degree white point: the standard constants that
# skimage also uses, so Lab values agree with skimage.color.rgb2lab.
XYZ_FROM_RGB = np.array(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ],
    dtype=np.float64,
)
WHITE_D65 = np.array([0.95047, 1.0, 1.08883], dtype=np.float64)

# sRGB decoding and the Lab cube root through lookup tables with linear interpolation: libm pow and
# cbrt cost ~45 ns each on the reference machine, more than the whole SLIC iteration per pixel.
_LUT_SIZE = 4096
_CBRT_SIZE = 16384
_CBRT_MAX = 1.0625  # X/Xn, Y/Yn, Z/Zn of an RGB image in [0, 1] stay below 1.0001


def _srgb_decode_table() -> np.ndarray:
    c = np.linspace(0.0, 1.0, _LUT_SIZE + 1)
    lin = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    return lin.astype(np.float32)


_SRGB_TABLE = _srgb_decode_table()
_CBRT_TABLE = np.cbrt(np.linspace(0.0, _CBRT_MAX, _CBRT_SIZE + 1)).astype(np.float32)


@numba.njit(cache=True, fastmath=True, inline="always")
def _decode(v, table):
    # v in [0, 1] (inputs are min-max rescaled first); clamping keeps the lookup in range.
    pos = min(max(v, np.float32(0.0)), np.float32(1.0)) * np.float32(_LUT_SIZE)
    i = min(np.int32(pos), np.int32(_LUT_SIZE - 1))
    w = pos - np.float32(i)
    return table[i] + (table[i + 1] - table[i]) * w


@numba.njit(cache=True, fastmath=True, inline="always")
def _lab_f(t, cbrt_table):
    # CIE Lab companding; the linear branch avoids the infinite slope of the cube root at 0.
    pos = min(max(t, np.float32(0.0)), np.float32(_CBRT_MAX)) * np.float32(_CBRT_SIZE / _CBRT_MAX)
    i = min(np.int32(pos), np.int32(_CBRT_SIZE - 1))
    w = pos - np.float32(i)
    # Interpolation error is largest at t = 0.008856: about 1e-8, i.e. 1e-6 in L.
    y = cbrt_table[i] + (cbrt_table[i + 1] - cbrt_table[i]) * w
    lin = np.float32(7.787) * t + np.float32(16.0 / 116.0)
    return y if t > np.float32(0.008856) else lin


@numba.njit(cache=True, fastmath=True, inline="always")
def _lab_pixel(r, g, b, m, table, cbrt_table):
    r = _decode(r, table)
    g = _decode(g, table)
    b = _decode(b, table)
    fx = _lab_f(m[0, 0] * r + m[0, 1] * g + m[0, 2] * b, cbrt_table)
    fy = _lab_f(m[1, 0] * r + m[1, 1] * g + m[1, 2] * b, cbrt_table)
    fz = _lab_f(m[2, 0] * r + m[2, 1] * g + m[2, 2] * b, cbrt_table)
    return (
        np.float32(116.0) * fy - np.float32(16.0),
        np.float32(500.0) * (fx - fy),
        np.float32(200.0) * (fy - fz),
    )


def _white_scaled_matrix() -> np.ndarray:
    # Rows divided by the white point so that each row gives X/Xn, Y/Yn, Z/Zn directly.
    return (XYZ_FROM_RGB / WHITE_D65[:, None]).astype(np.float32)


_M = _white_scaled_matrix()


@numba.njit(cache=True, fastmath=True)
def _rgb_to_lab_kernel(rgb, out, m, table, cbrt_table):
    n = rgb.shape[0]
    for p in range(n):
        lab_l, lab_a, lab_b = _lab_pixel(rgb[p, 0], rgb[p, 1], rgb[p, 2], m, table, cbrt_table)
        out[p, 0] = lab_l
        out[p, 1] = lab_a
        out[p, 2] = lab_b


# SLIC features use branch-free arithmetic that the compiler vectorises (table lookups would be
# gathers, libm calls scalar): sRGB decoding as two degree-6 polynomials split at 0.3 (error < 4e-7), the
# cube root as t * r^2 with r = t^(-1/3) from a bit-level first guess and three Newton steps (relative
# error < 5e-7). Coefficients are Chebyshev fits, written out so every machine computes the same features.
_DEC_SPLIT = 0.3
_DEC_LOW = (0.02457389401, 0.03398296354, 0.01370656548, 0.001051916393)
_DEC_LOW += (-9.043580343e-05, 1.913060692e-05, -5.129821471e-06)
_DEC_HIGH = (0.3800563497, 0.4528337367, 0.157367055, 0.01041097954)
_DEC_HIGH += (-0.0007731933694, 0.0001354882258, -3.068193767e-05)
_RCBRT_MAGIC = 0x54A23000
_LAB_T0 = 0.008856


@numba.njit(cache=True, fastmath=True, inline="always")
def _decode_poly(c):
    hi = c > np.float32(_DEC_SPLIT)
    lo_a, lo_b = np.float32(0.04045), np.float32(_DEC_SPLIT)
    hi_a, hi_b = np.float32(_DEC_SPLIT), np.float32(1.0)
    z_lo = (c + c - (lo_a + lo_b)) / (lo_b - lo_a)
    z_hi = (c + c - (hi_a + hi_b)) / (hi_b - hi_a)
    z = z_hi if hi else z_lo
    y = np.float32(_DEC_HIGH[6]) if hi else np.float32(_DEC_LOW[6])
    y = y * z + (np.float32(_DEC_HIGH[5]) if hi else np.float32(_DEC_LOW[5]))
    y = y * z + (np.float32(_DEC_HIGH[4]) if hi else np.float32(_DEC_LOW[4]))
    y = y * z + (np.float32(_DEC_HIGH[3]) if hi else np.float32(_DEC_LOW[3]))
    y = y * z + (np.float32(_DEC_HIGH[2]) if hi else np.float32(_DEC_LOW[2]))
    y = y * z + (np.float32(_DEC_HIGH[1]) if hi else np.float32(_DEC_LOW[1]))
    y = y * z + (np.float32(_DEC_HIGH[0]) if hi else np.float32(_DEC_LOW[0]))
    return y if c > np.float32(0.04045) else c * np.float32(1.0 / 12.92)


@numba.njit(cache=True, fastmath=True, inline="always")
def _lab_f_newton(t, r):
    # f(t) of CIE Lab from t and a first guess r of t^(-1/3).
    tc = min(max(t, np.float32(_LAB_T0)), np.float32(1.0625))
    third = np.float32(1.0 / 3.0)
    r = r * (np.float32(4.0) - tc * r * r * r) * third
    r = r * (np.float32(4.0) - tc * r * r * r) * third
    r = r * (np.float32(4.0) - tc * r * r * r) * third
    lin = np.float32(7.787) * t + np.float32(16.0 / 116.0)
    return tc * r * r if t > np.float32(_LAB_T0) else lin


@numba.njit(cache=True, fastmath=True)
def _lab_row(src, lo, inv, m, tb, o0, o1, o2, scale):
    # src: one image row [W * 3]; tb: scratch [2, 3, W] (clamped and raw X/Xn, Y/Yn, Z/Zn).
    w = tb.shape[2]
    zero, one = np.float32(0.0), np.float32(1.0)
    for x in range(w):
        r = _decode_poly(min(max((src[3 * x] - lo) * inv, zero), one))
        g = _decode_poly(min(max((src[3 * x + 1] - lo) * inv, zero), one))
        b = _decode_poly(min(max((src[3 * x + 2] - lo) * inv, zero), one))
        for c in range(3):
            t = m[c, 0] * r + m[c, 1] * g + m[c, 2] * b
            tb[1, c, x] = t
            tb[0, c, x] = min(max(t, np.float32(_LAB_T0)), np.float32(1.0625))
    bits = tb[0].ravel().view(np.uint32)
    for i in range(bits.shape[0]):
        bits[i] = np.uint32(_RCBRT_MAGIC) - bits[i] // np.uint32(3)
    guess = tb[0]
    for x in range(w):
        fx = _lab_f_newton(tb[1, 0, x], guess[0, x])
        fy = _lab_f_newton(tb[1, 1, x], guess[1, x])
        fz = _lab_f_newton(tb[1, 2, x], guess[2, x])
        o0[x] = (np.float32(116.0) * fy - np.float32(16.0)) * scale
        o1[x] = np.float32(500.0) * scale * (fx - fy)
        o2[x] = np.float32(200.0) * scale * (fy - fz)


@numba.njit(cache=True, fastmath=True)
def _features_one(img, lo, hi, to_lab, scale, out):
    # Min-max stretch over all channels (skimage), optional Lab, colour scale, planar layout.
    h, w, nc = img.shape
    inv = np.float32(1.0 / (hi - lo)) if hi > lo else np.float32(0.0)
    if to_lab:
        rows = img.reshape(h, w * nc)
        tb = np.empty((2, 3, w), dtype=np.float32)
        for y in range(h):
            _lab_row(rows[y], lo, inv, _M, tb, out[0, y], out[1, y], out[2, y], scale)
        return
    for c in range(nc):
        for y in range(h):
            orow = out[c, y]
            for x in range(w):
                orow[x] = (img[y, x, c] - lo) * (inv * scale)


@numba.njit(cache=True, parallel=True)
def _features_parallel(images, lo, hi, to_lab, scale, out):
    for i in numba.prange(images.shape[0]):
        _features_one(images[i], lo[i], hi[i], to_lab, scale, out[i])


@numba.njit(cache=True)
def _features_serial(images, lo, hi, to_lab, scale, out):
    for i in range(images.shape[0]):
        _features_one(images[i], lo[i], hi[i], to_lab, scale, out[i])


def slic_features(images: np.ndarray, to_lab: bool, scale: float, pad: int = 0) -> np.ndarray:
    """Per-image min-max stretch, optional RGB->Lab and colour scaling, in one pass per image.

    Args:
        images: float batch in [0, 1] (any finite range works: it is stretched first).
        to_lab: convert RGB to Lab (needs C == 3).
        scale: factor applied to the colour values (SLIC uses 1 / compactness).
        pad: zero columns appended to every row (the SLIC kernels read whole vectors).

    Returns:
        float32 planar features.

    Shape:
        ``[B, H, W, C]`` -> ``[B, C, H, W + pad]``.

    Raises:
        ValueError: for Lab on images that are not 3-channel.
    """
    if images.ndim != 4:
        raise ValueError(f"slic_features expects [B, H, W, C], got shape {images.shape}")
    if to_lab and images.shape[-1] != 3:
        raise ValueError(f"Lab conversion needs 3 channels, got {images.shape[-1]}")
    images = np.ascontiguousarray(images, dtype=np.float32)
    b, h, w, c = images.shape
    out = np.zeros((b, c, h, w + pad), dtype=np.float32)
    # numpy's reductions are several times faster than a compiled loop here.
    lo = images.min(axis=(1, 2, 3))
    hi = images.max(axis=(1, 2, 3))
    kernel = batch_kernel(_features_serial, _features_parallel, b)
    kernel(images, lo, hi, bool(to_lab), np.float32(scale), out)
    return out


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """Convert sRGB values in [0, 1] to CIE Lab (D65, 2 degree), like ``skimage.color.rgb2lab``.

    Values are not stretched (unlike :func:`slic_features`); inputs outside [0, 1] are clipped.

    Args:
        rgb: float image or batch with 3 channels last.

    Returns:
        float32 Lab array of the same shape (L in [0, 100]).

    Shape:
        ``[..., 3]`` -> ``[..., 3]``.

    Raises:
        ValueError: if the last axis is not 3.
    """
    if rgb.shape[-1] != 3:
        raise ValueError(f"rgb_to_lab expects channels last with 3 channels, got shape {rgb.shape}")
    flat = np.ascontiguousarray(rgb, dtype=np.float32).reshape(-1, 3)
    out = np.empty_like(flat)
    _rgb_to_lab_kernel(flat, out, _M, _SRGB_TABLE, _CBRT_TABLE)
    return out.reshape(rgb.shape)


def to_unit_float(images: np.ndarray) -> np.ndarray:
    """Scale integer images to [0, 1] float32 (uint8 by 255, uint16 by 65535); floats pass through.

    Args:
        images: uint8, uint16, bool or floating array of any shape.

    Returns:
        float32 array of the same shape.

    Raises:
        TypeError: for other dtypes (signed integers are ambiguous: window them first).
        ValueError: for non-finite float values.
    """
    if images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(255.0)
    if images.dtype == np.uint16:
        return images.astype(np.float32) / np.float32(65535.0)
    if images.dtype == np.bool_:
        return images.astype(np.float32)
    if np.issubdtype(images.dtype, np.floating):
        out = images.astype(np.float32, copy=False)
        # NaN and +-inf reach the minimum or the maximum: two fast reductions instead of a mask.
        if out.size and not (np.isfinite(out.min()) and np.isfinite(out.max())):
            raise ValueError("superpixels: images contain NaN or infinite values; expected finite floats")
        return out
    raise TypeError(
        f"superpixels: unsupported image dtype {images.dtype}; expected float in [0, 1], uint8 or uint16"
    )
