"""Building blocks shared by the from-scratch networks (U-Net family, ResUNet family, DUCK-Net).

Every convolution that is followed by batch norm has no bias (batch norm's shift makes it redundant);
this is also what the published parameter counts assume.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def same_padding(kernel_size: int | tuple[int, int], dilation: int = 1) -> tuple[int, int]:
    """Padding that keeps the spatial size of a stride-1 convolution with an odd kernel.

    Args:
        kernel_size: Kernel size, an int or ``(kh, kw)``.
        dilation: Dilation rate.

    Returns:
        ``(pad_h, pad_w)``.
    """
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    return (kh - 1) // 2 * dilation, (kw - 1) // 2 * dilation


class ConvBNAct(nn.Sequential):
    """Convolution -> batch norm -> ReLU (the ReLU can be switched off).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Kernel size (int or ``(kh, kw)``); odd sizes keep the resolution at stride 1.
        stride: Convolution stride.
        dilation: Dilation rate.
        act: Whether to append a ReLU.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int = 1,
        dilation: int = 1,
        act: bool = True,
    ) -> None:
        padding = same_padding(kernel_size, dilation)
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class DoubleConv(nn.Sequential):
    """Two 3x3 ``ConvBNAct`` layers: the basic U-Net stage."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(ConvBNAct(in_channels, out_channels), ConvBNAct(out_channels, out_channels))


class UpConvBNAct(nn.Sequential):
    """2x learned upsampling: 3x3 transposed convolution (stride 2) -> batch norm -> ReLU.

    The output is exactly twice the input size (``output_padding=1``).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation channel gate (Hu et al. 2018): ``x * sigmoid(MLP(avgpool(x)))``.

    Args:
        channels: Channels of the gated tensor.
        reduction: Bottleneck reduction ratio of the MLP (at least one hidden unit is kept).
    """

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Gate the channels of ``x`` ([B, C, H, W] -> [B, C, H, W])."""
        weights = self.fc(x.mean(dim=(2, 3)))
        return x * weights[:, :, None, None]


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLabv3 style, without the image-pooling branch).

    One branch per rate: a 1x1 conv for rate 1, a 3x3 conv with that dilation otherwise, each to
    ``out_channels // 2`` channels (conv-BN-ReLU); the branches are concatenated and projected to
    ``out_channels`` by a 1x1 conv-BN-ReLU. The half-width branches keep ResUNet++ at its
    published size.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        rates: Dilation rate of each branch.
    """

    def __init__(self, in_channels: int, out_channels: int, rates: Sequence[int] = (1, 6, 12, 18)) -> None:
        super().__init__()
        hidden = max(1, out_channels // 2)
        self.branches = nn.ModuleList(
            ConvBNAct(in_channels, hidden, 1 if rate == 1 else 3, dilation=rate) for rate in rates
        )
        self.project = ConvBNAct(hidden * len(rates), out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, in, H, W] -> [B, out, H, W]."""
        return self.project(torch.cat([branch(x) for branch in self.branches], dim=1))


class AttentionGate(nn.Module):
    """Additive attention gate (Oktay et al. 2018) that weights a feature map by a coarser gating signal.

    Args:
        x_channels: Channels of the gated (finer) feature map.
        g_channels: Channels of the gating (coarser) signal.
        hidden_channels: Width of the joint embedding.

    Shape:
        ``x``: [B, x_channels, H, W]; ``g``: [B, g_channels, h, w] with any ``h, w``;
        output like ``x``.
    """

    def __init__(self, x_channels: int, g_channels: int, hidden_channels: int) -> None:
        super().__init__()
        self.embed_x = ConvBNAct(x_channels, hidden_channels, 3, act=False)
        self.embed_g = ConvBNAct(g_channels, hidden_channels, 3, act=False)
        self.score = nn.Sequential(nn.Conv2d(hidden_channels, 1, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Return ``x`` multiplied by the per-pixel attention map."""
        g = F.interpolate(self.embed_g(g), size=x.shape[2:], mode="nearest")
        return x * self.score(F.relu(self.embed_x(x) + g))


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad the bottom/right of ``x`` so H and W become multiples of ``multiple``.

    Replicate padding works for any input size (reflect padding fails when the pad exceeds the size)
    and avoids an artificial dark border.

    Args:
        x: Tensor [B, C, H, W].
        multiple: Required divisor of H and W (e.g. ``2 ** depth``).

    Returns:
        The padded tensor and the original ``(H, W)`` for :func:`crop_to`.
    """
    h, w = x.shape[2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    return x, (h, w)


def crop_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple`: keep the top-left ``size`` pixels of ``x`` ([B, C, H, W])."""
    return x[:, :, : size[0], : size[1]]


class PaddedSegmentationNet(nn.Module):
    """Base class owning ``forward`` for networks that need H, W divisible by ``2 ** depth``.

    Subclasses set ``self.size_divisor`` and implement ``forward_padded`` on inputs whose size is a
    multiple of it; ``forward`` pads, calls it and crops every output back to the input size.
    """

    size_divisor: int = 1

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Network body on an already padded input."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Map [B, in_channels, H, W] to logits [B, num_classes, H, W] for any H, W."""
        padded, size = pad_to_multiple(x, self.size_divisor)
        out = self.forward_padded(padded)
        if isinstance(out, list):
            return [crop_to(o, size) for o in out]
        return crop_to(out, size)
