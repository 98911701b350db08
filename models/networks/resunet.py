"""Deep Residual U-Net (Zhang, Liu & Wang, IEEE GRSL 2018)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.networks.blocks import PaddedSegmentationNet
from models.networks.registry import register_model


class PreActResidualUnit(nn.Module):
    """Pre-activation residual unit: ``(BN-ReLU-conv3x3) x 2`` plus a projection shortcut.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        stride: Stride of the first convolution (2 downsamples, replacing pooling).
        first: The network's first unit, which sees raw pixels: its first layer is a plain conv
            (no BN-ReLU in front), as in the paper.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, first: bool = False) -> None:
        super().__init__()
        pre = [] if first else [nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(
            *pre,
            nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False),
        )
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, in, H, W] -> [B, out, H / stride, W / stride]."""
        return self.body(x) + self.shortcut(x)


class ResUNet(PaddedSegmentationNet):
    """ResUNet: 3-level encoder of residual units (stride-2 convs), a bridge, and a 3-level decoder.

    Widths are ``base * (1, 2, 4)`` for the encoder, ``base * 8`` for the bridge. The decoder
    upsamples (nearest, 2x), concatenates the skip and applies a residual unit. Inputs are padded
    internally to a multiple of 8, so any H, W works.

    Args:
        in_channels: Input image channels.
        num_classes: Output logit channels.
        base_channel: Width of the first level (the paper uses 64; 32 gives ResUNet-32, 2.06M).
    """

    size_divisor = 8

    def __init__(self, in_channels: int = 3, num_classes: int = 2, base_channel: int = 32) -> None:
        super().__init__()
        w = [base_channel * 2**i for i in range(4)]
        self.encoder = nn.ModuleList(
            [
                PreActResidualUnit(in_channels, w[0], first=True),
                PreActResidualUnit(w[0], w[1], stride=2),
                PreActResidualUnit(w[1], w[2], stride=2),
            ]
        )
        self.bridge = PreActResidualUnit(w[2], w[3], stride=2)
        self.decoder = nn.ModuleList(PreActResidualUnit(w[i + 1] + w[i], w[i]) for i in reversed(range(3)))
        self.head = nn.Sequential(
            nn.BatchNorm2d(w[0]), nn.ReLU(inplace=True), nn.Conv2d(w[0], num_classes, 1)
        )

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """Network body on an input whose H, W are multiples of 8."""
        skips = []
        for unit in self.encoder:
            x = unit(x)
            skips.append(x)
        x = self.bridge(x)
        for unit in self.decoder:
            x = unit(torch.cat([F.interpolate(x, scale_factor=2.0, mode="nearest"), skips.pop()], dim=1))
        return self.head(x)


@register_model("resunet")
def resunet(in_channels: int = 3, num_classes: int = 2, base_channel: int = 32) -> ResUNet:
    """Build :class:`ResUNet` (registry name ``resunet``)."""
    return ResUNet(in_channels, num_classes, base_channel)
