"""U-Net (Ronneberger et al., MICCAI 2015) with batch norm and a configurable base width."""

from __future__ import annotations

import torch
from torch import nn

from models.networks.blocks import DoubleConv, PaddedSegmentationNet, UpConvBNAct
from models.networks.registry import register_model


class UNet(PaddedSegmentationNet):
    """Vanilla U-Net: 4 max-pool downsamplings, widths ``base * (1, 2, 4, 8, 16)``.

    Upsampling is a 3x3 stride-2 transposed convolution to the skip's width followed by a double
    conv on the concatenation. Inputs are padded internally to a multiple of 16, so any H, W works.

    Args:
        in_channels: Input image channels.
        num_classes: Output logit channels.
        base_channel: Width of the first stage (32 gives the 8.63M-parameter UNet-32).
    """

    size_divisor = 16

    def __init__(self, in_channels: int = 3, num_classes: int = 2, base_channel: int = 32) -> None:
        super().__init__()
        widths = [base_channel * 2**i for i in range(5)]
        self.encoder = nn.ModuleList(
            DoubleConv(c_in, c_out) for c_in, c_out in zip([in_channels, *widths[:-1]], widths, strict=True)
        )
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(UpConvBNAct(widths[i + 1], widths[i]) for i in reversed(range(4)))
        self.decoder = nn.ModuleList(DoubleConv(2 * widths[i], widths[i]) for i in reversed(range(4)))
        self.head = nn.Conv2d(base_channel, num_classes, 1)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """Network body on an input whose H, W are multiples of 16."""
        skips = []
        for i, stage in enumerate(self.encoder):
            x = stage(x if i == 0 else self.pool(x))
            skips.append(x)
        skips.pop()  # the bottleneck output is not a skip
        for up, stage in zip(self.up, self.decoder, strict=True):
            x = stage(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)


@register_model("unet")
def unet(in_channels: int = 3, num_classes: int = 2, base_channel: int = 32) -> UNet:
    """Build :class:`UNet` (registry name ``unet``)."""
    return UNet(in_channels, num_classes, base_channel)
