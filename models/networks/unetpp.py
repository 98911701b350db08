"""UNet++ (Zhou et al., DLMIA 2018): U-Net with nested, dense skip pathways and deep supervision."""

from __future__ import annotations

import torch
from torch import nn

from models.networks.blocks import DoubleConv, PaddedSegmentationNet, UpConvBNAct
from models.networks.registry import register_model

DEPTH = 4


def node_channels(i: int, j: int, widths: list[int], in_channels: int) -> tuple[int, int]:
    """Input and output widths of node ``X[i][j]``.

    Args:
        i: Level (0 = full resolution).
        j: Column (0 = encoder).
        widths: Width of each level.
        in_channels: Image channels (input of ``X[0][0]``).

    Returns:
        ``(c_in, c_out)``.
    """
    if j == 0:
        return (in_channels if i == 0 else widths[i - 1]), widths[i]
    c_in = (j + 1) * widths[i]  # j same-level skips + one upsampled input
    # the last decoder path narrows before upsampling, like a U-Net decoder
    c_out = widths[i - 1] if (i + j == DEPTH and i >= 1) else widths[i]
    return c_in, c_out


class UNetPlusPlus(PaddedSegmentationNet):
    """UNet++ with nodes ``X[i][j]`` (level ``i`` = 0..4, column ``j``), widths ``c_i = base * 2**i``.

    ``X[i][0]`` is the encoder; ``X[i][j] = conv(cat(X[i][0..j-1], up(X[i+1][j-1])))``, where each
    node's transposed-convolution upsampling outputs the width of the level above. Nodes on the last
    decoder path (``i + j == 4``, ``i >= 1``) narrow to ``c_(i-1)`` inside their conv, like a U-Net
    decoder, which keeps UNet++-32 at the published 8.53M parameters. Inputs are padded internally to
    a multiple of 16, so any H, W works.

    Args:
        in_channels: Input image channels.
        num_classes: Output logit channels.
        base_channel: Width of level 0.
        deep_supervision: Add 1x1 heads on ``X[0][1..3]``. In training mode ``forward`` then returns
            ``[main, aux1, aux2, aux3]`` full-resolution logits (main first); in eval mode only
            the main logits.
    """

    size_divisor = 2**DEPTH

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 2,
        base_channel: int = 32,
        deep_supervision: bool = False,
    ) -> None:
        super().__init__()
        widths = [base_channel * 2**i for i in range(DEPTH + 1)]
        self.deep_supervision = deep_supervision
        self.pool = nn.MaxPool2d(2)
        self.nodes = nn.ModuleDict()
        self.ups = nn.ModuleDict()
        for j in range(DEPTH + 1):
            for i in range(DEPTH + 1 - j):
                c_in, c_out = node_channels(i, j, widths, in_channels)
                self.nodes[f"x{i}{j}"] = DoubleConv(c_in, c_out)
                if i >= 1:
                    self.ups[f"x{i}{j}"] = UpConvBNAct(c_out, widths[i - 1])
        self.head = nn.Conv2d(base_channel, num_classes, 1)
        self.aux_heads = (
            nn.ModuleList(nn.Conv2d(base_channel, num_classes, 1) for _ in range(DEPTH - 1))
            if deep_supervision
            else None
        )

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Network body on an input whose H, W are multiples of 16."""
        grid: dict[tuple[int, int], torch.Tensor] = {}
        for i in range(DEPTH + 1):
            x = self.nodes[f"x{i}0"](x if i == 0 else self.pool(x))
            grid[i, 0] = x
        for j in range(1, DEPTH + 1):
            for i in range(DEPTH + 1 - j):
                up = self.ups[f"x{i + 1}{j - 1}"](grid[i + 1, j - 1])
                grid[i, j] = self.nodes[f"x{i}{j}"](torch.cat([*(grid[i, k] for k in range(j)), up], dim=1))
        main = self.head(grid[0, DEPTH])
        if self.aux_heads is None or not self.training:
            return main
        return [main, *(head(grid[0, j + 1]) for j, head in enumerate(self.aux_heads))]


@register_model("unetpp")
def unetpp(
    in_channels: int = 3, num_classes: int = 2, base_channel: int = 32, deep_supervision: bool = False
) -> UNetPlusPlus:
    """Build :class:`UNetPlusPlus` (registry name ``unetpp``)."""
    return UNetPlusPlus(in_channels, num_classes, base_channel, deep_supervision)
