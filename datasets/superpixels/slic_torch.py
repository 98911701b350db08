"""Batched SLIC in torch (CUDA or CPU), vectorised over images and pixels.

Same preparation as the other backends (per-image min-max stretch, Lab for RGB, Gaussian ``sigma``
after conversion, colour divided by ``compactness``, skimage's seed grid and step, first assignment
to the nearest seed). Each later assignment compares every pixel with the 9 centres whose seeds are
the 3x3 grid neighbours of the pixel's nearest seed (the gSLIC formulation: no per-centre window
loop), and centres are updated with ``index_add_``. Python loops run over iterations and the 9
offsets only.

Connectivity: with ``enforce_connectivity=True`` the labels are copied to the CPU, passed through
the numba pass (:mod:`datasets.superpixels.connectivity`, images in parallel) and copied back, so
the guarantee (every label one 4-connected region, small pieces merged) holds on every device; this
copy is the slow part on a GPU. With ``enforce_connectivity=False`` everything stays on the device
and labels are only renumbered consecutively (segments may then be disconnected).

Determinism: on CPU the result is bitwise reproducible. On CUDA, ``index_add_`` sums floats with
atomics in no fixed order, so centres can differ in the last bits between runs and, rarely, a pixel
on a tie can change segment.
"""

from __future__ import annotations

import numpy as np
import torch

from datasets.superpixels.connectivity import enforce_connectivity as _enforce_np
from datasets.superpixels.slic_numba import (
    connectivity_sizes,
    expected_segment_size,
    nearest_seed_map,
    slic_grid,
)

_XYZ_FROM_RGB = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
_WHITE_D65 = (0.95047, 1.0, 1.08883)


def to_unit_float_torch(images: torch.Tensor) -> torch.Tensor:
    """Integer tensors scaled by their dtype's maximum, floats cast to float32.

    Args:
        images: any-dtype tensor.

    Returns:
        float32 tensor on the same device.

    Raises:
        TypeError: for signed integer or complex input.
        ValueError: for non-finite float values.
    """
    if images.dtype == torch.bool:
        return images.float()
    unsigned = (torch.uint8, torch.uint16) if hasattr(torch, "uint16") else (torch.uint8,)
    if images.dtype in unsigned:
        return images.float() / float(torch.iinfo(images.dtype).max)
    if images.is_floating_point():
        out = images.float()
        if not torch.isfinite(out).all():
            raise ValueError("superpixels: images contain NaN or infinite values; expected finite floats")
        return out
    raise TypeError(
        f"superpixels: unsupported tensor dtype {images.dtype}; expected float in [0, 1], uint8 or uint16"
    )


def rgb_to_lab_torch(rgb: torch.Tensor) -> torch.Tensor:
    """Convert sRGB in [0, 1] to CIE Lab (D65, 2 degree), as ``skimage.color.rgb2lab``.

    Args:
        rgb: float tensor.

    Returns:
        Lab tensor, same shape and device.

    Shape:
        ``[B, 3, H, W]`` -> ``[B, 3, H, W]``.
    """
    lin = torch.where(rgb > 0.04045, ((rgb.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    m = torch.tensor(_XYZ_FROM_RGB, dtype=rgb.dtype, device=rgb.device)
    m = m / torch.tensor(_WHITE_D65, dtype=rgb.dtype, device=rgb.device)[:, None]
    xyz = torch.einsum("ij,bjhw->bihw", m, lin)
    f = torch.where(xyz > 0.008856, xyz.clamp_min(0.008856) ** (1.0 / 3.0), 7.787 * xyz + 16.0 / 116.0)
    fx, fy, fz = f[:, 0], f[:, 1], f[:, 2]
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=1)


def _reflect_index(n: int, radius: int, device: torch.device) -> torch.Tensor:
    # scipy's "reflect" (half-sample symmetric) padding, also when radius exceeds the size.
    idx = torch.arange(-radius, n + radius, device=device) % (2 * n)
    return torch.where(idx >= n, 2 * n - 1 - idx, idx)


def gaussian_blur_torch(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur matching ``scipy.ndimage.gaussian_filter(mode="reflect", truncate=4)``.

    Args:
        x: float tensor ``[B, C, H, W]``.
        sigma: standard deviation in pixels (> 0).

    Returns:
        Blurred tensor of the same shape.
    """
    radius = int(4.0 * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    b, c, h, w = x.shape
    y = x.reshape(b * c, 1, h, w)
    y = y.index_select(2, _reflect_index(h, radius, x.device))
    y = torch.nn.functional.conv2d(y, kernel.view(1, 1, -1, 1))
    y = y.index_select(3, _reflect_index(w, radius, x.device))
    y = torch.nn.functional.conv2d(y, kernel.view(1, 1, 1, -1))
    return y.reshape(b, c, h, w)


def slic_features_torch(
    images: torch.Tensor, colour_space: str, compactness: float, sigma: float
) -> torch.Tensor:
    """Stretch each image to [0, 1], convert to Lab if asked, smooth, divide colour by compactness.

    Args:
        images: float tensor ``[B, C, H, W]``.
        colour_space: "lab" or "intensity".
        compactness: SLIC compactness.
        sigma: Gaussian smoothing after conversion (0: none).

    Returns:
        float32 features ``[B, C, H, W]``.
    """
    lo = images.amin(dim=(1, 2, 3), keepdim=True)
    hi = images.amax(dim=(1, 2, 3), keepdim=True)
    span = hi - lo
    feat = torch.where(span > 0, (images - lo) / torch.where(span > 0, span, torch.ones_like(span)), 0.0)
    if colour_space == "lab":
        feat = rgb_to_lab_torch(feat)
    if sigma > 0:
        feat = gaussian_blur_torch(feat, sigma)
    return feat / compactness


def relabel_consecutive_torch(labels: torch.Tensor, k: int, mask: torch.Tensor | None = None):
    """Renumber ids ``0..k-1`` per image to consecutive ones (1-based inside ``mask``, 0 outside).

    Args:
        labels: int64 ``[B, N]`` ids in ``[0, k)``.
        k: number of possible ids.
        mask: optional bool ``[B, N]``.

    Returns:
        ``(labels int32 [B, N], counts int64 [B])``.
    """
    b = labels.shape[0]
    present = torch.zeros(b, k, dtype=torch.int64, device=labels.device)
    src = torch.ones_like(labels) if mask is None else mask.to(torch.int64)
    present.scatter_add_(1, labels, src)
    present = (present > 0).to(torch.int64)
    new_id = torch.cumsum(present, dim=1) - 1
    out = torch.gather(new_id, 1, labels)
    if mask is not None:
        out = torch.where(mask, out + 1, torch.zeros_like(out))
    return out.to(torch.int32), present.sum(dim=1)


def slic_torch(
    images: torch.Tensor,
    n_segments: int,
    compactness: float,
    max_iter: int,
    sigma: float,
    colour_space: str,
    enforce_connectivity: bool,
    min_size_factor: float,
    max_size_factor: float,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched SLIC on the images' device.

    Args:
        images: tensor ``[B, C, H, W]`` (C in {1, 3}; float in [0, 1], uint8 or uint16).
        n_segments: k.
        compactness: colour vs space weight (skimage meaning).
        max_iter: number of assignment steps.
        sigma: Gaussian pre-smoothing after Lab conversion.
        colour_space: "lab" or "intensity" (resolved).
        enforce_connectivity: connectivity pass (numba, on a CPU copy).
        min_size_factor: pieces below this fraction of ``H*W/seeds`` are merged.
        max_size_factor: pieces above this multiple of ``H*W/seeds`` are cut.
        mask: optional bool ``[B, H, W]``; outside 0, inside segments 1..N.

    Returns:
        ``(labels int32 [B, H, W], counts int64 [B])`` on the input's device.
    """
    device = images.device
    b, c, h, w = images.shape
    feat = slic_features_torch(to_unit_float_torch(images), colour_space, compactness, sigma)
    ys, xs, step = slic_grid(h, w, n_segments)
    ny, nx = ys.size, xs.size
    k = ny * nx
    n = h * w
    # Pixel table in scaled coordinates: squared differences of rows give skimage's SLIC distance.
    gy, gx = torch.meshgrid(
        torch.arange(h, device=device, dtype=torch.float32),
        torch.arange(w, device=device, dtype=torch.float32),
        indexing="ij",
    )
    pos = torch.stack([gy, gx]).reshape(2, n) / step
    # Planar pixel table [B, F, N] (F = 2 + C) for distances, row-major copy [B*N, F] for the update.
    pix = torch.cat([pos.unsqueeze(0).expand(b, 2, n), feat.reshape(b, c, n)], dim=1).contiguous()
    flat_pix = pix.transpose(1, 2).reshape(b * n, 2 + c)
    # Centres start on the grid with zero colour, so the first assignment is the nearest seed.
    table = torch.zeros(b, 2 + c, k, device=device)
    table[:, 0, :] = torch.as_tensor(np.repeat(ys, nx), dtype=torch.float32, device=device) / step
    table[:, 1, :] = torch.as_tensor(np.tile(xs, ny), dtype=torch.float32, device=device) / step
    home = torch.as_tensor(nearest_seed_map(h, w, ys, xs), device=device, dtype=torch.int64).reshape(n)
    iy, ix = home // nx, home % nx
    candidates = [
        ((iy + dy).clamp(0, ny - 1) * nx + (ix + dx).clamp(0, nx - 1))
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
    ]
    labels = home.unsqueeze(0).expand(b, n).clone()
    offsets = (torch.arange(b, device=device) * k).unsqueeze(1)
    for it in range(max_iter):
        if it > 0:
            best = torch.full((b, n), float("inf"), device=device)
            for cand in candidates:
                # gather with an expanded index is the fast gather on CPU (index_select on the last
                # dim is ~10x slower there).
                d = (
                    (torch.gather(table, 2, cand.view(1, 1, n).expand(b, 2 + c, n)) - pix)
                    .square_()
                    .sum(dim=1)
                )
                better = d < best
                best = torch.where(better, d, best)
                labels = torch.where(better, cand.unsqueeze(0), labels)
        if it < max_iter - 1:
            g = (labels + offsets).reshape(-1)
            sums = torch.zeros(b * k, 2 + c, device=device).index_add_(0, g, flat_pix)
            cnt = torch.bincount(g, minlength=b * k).to(torch.float32).unsqueeze(1)
            new = torch.where(cnt > 0, sums / cnt.clamp_min(1.0), table.transpose(1, 2).reshape(b * k, 2 + c))
            table = new.reshape(b, k, 2 + c).transpose(1, 2).contiguous()
    flat_mask = None if mask is None else mask.to(device=device, dtype=torch.bool).reshape(b, n)
    if not enforce_connectivity:
        out, counts = relabel_consecutive_torch(labels, k, flat_mask)
        return out.reshape(b, h, w), counts
    sizes = connectivity_sizes(expected_segment_size(h, w, n_segments), min_size_factor, max_size_factor)
    np_mask = None if flat_mask is None else flat_mask.reshape(b, h, w).cpu().numpy()
    out, counts = _enforce_np(labels.reshape(b, h, w).to(torch.int32).cpu().numpy(), *sizes, mask=np_mask)
    if np_mask is not None:
        out = np.where(np_mask, out + 1, 0)
    return (
        torch.from_numpy(np.ascontiguousarray(out, dtype=np.int32)).to(device),
        torch.from_numpy(counts).to(device),
    )
