"""BYOL building blocks as plain functions: loss, EMA update, tau schedule, batched view augmentation, LARS.

Views are made on a whole batch with torch ops (one ``grid_sample`` for crop + flip, per-sample colour
factors), so the augmentation runs on the training device and every random draw comes from an
explicit ``torch.Generator``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.settings import Settings

# ITU-R BT.601 luma weights (what torchvision's rgb_to_grayscale uses).
_LUMA = (0.299, 0.587, 0.114)
# RGB <-> YIQ: a hue shift is a rotation of the (I, Q) chroma plane.
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def byol_loss(p: Tensor, z: Tensor) -> Tensor:
    """Normalised MSE between predictions and targets, ``2 - 2 cos(p, z)``, averaged over the batch.

    Args:
        p: Online predictions ``[B, D]``.
        z: Target projections ``[B, D]`` (treated as constants: detached here).

    Returns:
        Scalar in ``[0, 4]``; 0 when ``p`` and ``z`` point the same way.
    """
    p = F.normalize(p, dim=-1)
    z = F.normalize(z.detach(), dim=-1)
    return (2.0 - 2.0 * (p * z).sum(dim=-1)).mean()


def symmetric_byol_loss(p1: Tensor, p2: Tensor, z1: Tensor, z2: Tensor) -> Tensor:
    """BYOL's symmetrised loss: view 1's prediction against view 2's target and vice versa.

    Args:
        p1: Online prediction of view 1 ``[B, D]``.
        p2: Online prediction of view 2 ``[B, D]``.
        z1: Target projection of view 1 ``[B, D]``.
        z2: Target projection of view 2 ``[B, D]``.

    Returns:
        ``byol_loss(p1, z2) + byol_loss(p2, z1)`` (scalar in ``[0, 8]``).
    """
    return byol_loss(p1, z2) + byol_loss(p2, z1)


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """Move the target's parameters towards the online ones: ``t <- tau * t + (1 - tau) * o``.

    Buffers (BatchNorm running statistics) are not averaged: the target network keeps those
    from its own forward passes in train mode, as in the reference implementations.

    Args:
        target: Momentum network, updated in place.
        online: Online network with the same architecture.
        tau: Momentum in ``[0, 1]``; 1 leaves the target unchanged.

    Raises:
        ValueError: For ``tau`` outside ``[0, 1]`` or networks with different parameters.
    """
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau must be in [0, 1], got {tau}")
    t_params, o_params = list(target.parameters()), list(online.parameters())
    if len(t_params) != len(o_params):
        raise ValueError(f"target has {len(t_params)} parameters, online {len(o_params)}: not the same net")
    for t, o in zip(t_params, o_params, strict=True):
        t.mul_(tau).add_(o.detach(), alpha=1.0 - tau)


def tau_schedule(step: int, max_steps: int, base_tau: float = 0.99, final_tau: float = 1.0) -> float:
    """Cosine increase of the EMA momentum from ``base_tau`` (step 0) to ``final_tau`` (last step).

    Args:
        step: Current optimisation step, counted from 0.
        max_steps: Total steps of the run (values past it return ``final_tau``).
        base_tau: Momentum at the start.
        final_tau: Momentum at the end.

    Returns:
        ``final - (final - base) * (cos(pi * step / max_steps) + 1) / 2``.
    """
    if max_steps <= 0:
        raise ValueError(f"max_steps must be > 0, got {max_steps}")
    progress = min(max(step / max_steps, 0.0), 1.0)
    return final_tau - (final_tau - base_tau) * (math.cos(math.pi * progress) + 1.0) / 2.0


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def _grey(x: Tensor) -> Tensor:
    """Luma ``[B, 1, H, W]`` of an RGB batch (identity for one channel)."""
    if x.shape[1] == 1:
        return x
    weights = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


def _shift_hue(x: Tensor, turns: Tensor) -> Tensor:
    """Rotate the chroma of an RGB batch in YIQ space by ``turns`` (fractions of a full turn)."""
    to_yiq = _RGB_TO_YIQ.to(device=x.device, dtype=x.dtype)
    yiq = torch.einsum("ij,bjhw->bihw", to_yiq, x)
    angle = 2.0 * math.pi * turns.to(device=x.device, dtype=x.dtype)
    cos, sin = angle.cos().view(-1, 1, 1), angle.sin().view(-1, 1, 1)
    i, q = yiq[:, 1], yiq[:, 2]
    yiq = torch.stack([yiq[:, 0], cos * i - sin * q, sin * i + cos * q], dim=1)
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(to_yiq), yiq)


def crop_flip_grid(
    batch: int,
    in_size: tuple[int, int],
    out_size: tuple[int, int],
    generator: torch.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    hflip_p: float = 0.5,
) -> Tensor:
    """Sampling grid of a random resized crop plus horizontal flip per sample.

    The crop area fraction is drawn from ``scale`` and the log aspect ratio from ``ratio``; a side
    longer than the image is clamped to the image instead of re-drawn (torchvision retries 10 times).

    Args:
        batch: Number of samples.
        in_size: Source ``(H, W)``.
        out_size: Output ``(H, W)``.
        generator: Source of randomness.
        scale: Range of the crop's area as a fraction of the image.
        ratio: Range of the crop's width / height.
        hflip_p: Probability of a horizontal flip.

    Returns:
        Grid ``[B, H_out, W_out, 2]`` for ``F.grid_sample(align_corners=False)``.
    """
    (h_in, w_in), (h_out, w_out) = in_size, out_size
    area = _uniform(batch, scale[0], scale[1], generator)
    log_r = _uniform(batch, math.log(ratio[0]), math.log(ratio[1]), generator)
    aspect = torch.exp(log_r)
    # half-extents in normalised coordinates ([-1, 1] spans the whole side)
    half_w = torch.sqrt(area * aspect * h_in / w_in).clamp(max=1.0)
    half_h = torch.sqrt(area / aspect * w_in / h_in).clamp(max=1.0)
    cx = (2.0 * torch.rand(batch, generator=generator) - 1.0) * (1.0 - half_w)
    cy = (2.0 * torch.rand(batch, generator=generator) - 1.0) * (1.0 - half_h)
    flip = torch.where(torch.rand(batch, generator=generator) < hflip_p, -1.0, 1.0)
    theta = torch.zeros(batch, 2, 3)
    theta[:, 0, 0] = half_w * flip
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = half_h
    theta[:, 1, 2] = cy
    return F.affine_grid(theta, [batch, 1, h_out, w_out], align_corners=False)


@dataclass(frozen=True)
class ViewAugmentation(Settings):
    """BYOL's view augmentation (YAML: ``model.init_args.augment: {jitter_p: 0.8, ...}``).

    Attributes:
        scale: Random-resized-crop area range as a fraction of the image.
        ratio: Crop aspect-ratio (width / height) range.
        hflip_p: Horizontal flip probability.
        jitter_p: Probability of colour jitter per sample.
        brightness: Brightness factor drawn from ``[1 - b, 1 + b]``.
        contrast: Contrast factor drawn from ``[1 - c, 1 + c]``.
        saturation: Saturation factor drawn from ``[1 - s, 1 + s]`` (RGB only).
        hue: Hue shift drawn from ``[-h, h]`` turns, h <= 0.5 (RGB only).
        grayscale_p: Probability of converting a sample to grey (RGB only).
    """

    config_key: ClassVar[str] = "augment"

    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_p: float = 0.2

    def __post_init__(self) -> None:
        """Check ranges, so a bad value fails before any training.

        Raises:
            ValueError: For a probability outside [0, 1], a negative strength, hue > 0.5 or a bad range.
        """
        for name in ("hflip_p", "jitter_p", "grayscale_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"augment.{name} must be in [0, 1], got {getattr(self, name)}")
        if min(self.brightness, self.contrast, self.saturation, self.hue) < 0 or self.hue > 0.5:
            raise ValueError("augment: brightness, contrast, saturation >= 0 and hue in [0, 0.5] expected")
        for name in ("scale", "ratio"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"augment.{name} must be (low, high), 0 < low <= high, got {(low, high)}")


# SSL-MedSeg's (BYOL's) view settings.
DEFAULT_AUGMENT = ViewAugmentation()


def augment_view(
    images: Tensor,
    generator: torch.Generator,
    out_size: tuple[int, int] | None = None,
    aug: ViewAugmentation = DEFAULT_AUGMENT,
) -> Tensor:
    """One BYOL view of a batch: random resized crop, hflip, colour jitter (p), grayscale (p).

    Jitter applies brightness, contrast, saturation, hue in that fixed order (torchvision shuffles
    the order); saturation, hue and grayscale only change RGB images, but their random numbers are
    drawn for grey batches too so that a seed gives the same crops whatever the channel count.

    Args:
        images: Batch ``[B, C, H, W]`` normalised to ``[-1, 1]``, C in {1, 3}.
        generator: CPU generator all random draws come from.
        out_size: Output ``(H, W)``; None keeps the input size.
        aug: Crop, flip and colour settings.

    Returns:
        The view ``[B, C, *out_size]`` in ``[-1, 1]``.

    Raises:
        ValueError: For a tensor that is not ``[B, 1|3, H, W]``.
    """
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images [B, 1|3, H, W], got shape {tuple(images.shape)}")
    b, _, h, w = images.shape
    out_size = (h, w) if out_size is None else tuple(out_size)
    grid = crop_flip_grid(b, (h, w), out_size, generator, aug.scale, aug.ratio, aug.hflip_p)
    x = F.grid_sample(images, grid.to(images.device, images.dtype), mode="bilinear", align_corners=False)
    x = (x + 1.0) / 2.0  # colour operations are defined on [0, 1]
    return colour_jitter(x, generator, aug) * 2.0 - 1.0


def colour_jitter(x: Tensor, generator: torch.Generator, aug: ViewAugmentation) -> Tensor:
    """Per-sample brightness, contrast, saturation, hue (with probability) and grayscale on ``[0, 1]``.

    Shape:
        ``[B, C, H, W]`` -> same; C in {1, 3}.
    """
    b, c = x.shape[:2]
    apply = torch.rand(b, generator=generator) < aug.jitter_p
    bri = torch.where(apply, _uniform(b, 1 - aug.brightness, 1 + aug.brightness, generator), 1.0)
    con = torch.where(apply, _uniform(b, 1 - aug.contrast, 1 + aug.contrast, generator), 1.0)
    sat = torch.where(apply, _uniform(b, 1 - aug.saturation, 1 + aug.saturation, generator), 1.0)
    hue_turns = torch.where(apply, _uniform(b, -aug.hue, aug.hue, generator), 0.0)
    to_grey = torch.rand(b, generator=generator) < aug.grayscale_p

    def per_sample(v: Tensor) -> Tensor:
        return v.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)

    x = (x * per_sample(bri)).clamp(0, 1)
    mean = _grey(x).mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * per_sample(con) + mean).clamp(0, 1)
    if c == 3:
        grey = _grey(x)
        x = ((x - grey) * per_sample(sat) + grey).clamp(0, 1)
        x = _shift_hue(x, hue_turns).clamp(0, 1)
        x = torch.where(per_sample(to_grey).bool(), _grey(x).expand_as(x), x)
    return x
