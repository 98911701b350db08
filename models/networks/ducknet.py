"""DUCK-Net (Dumitru, Peteleaza & Craciun, Scientific Reports 2023) for polyp segmentation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.networks.blocks import ConvBNAct, PaddedSegmentationNet
from models.networks.registry import register_model

DEPTH = 5
SEPARATED_KERNEL = 7  # odd, so "same" padding is symmetric (the paper's code uses 6)


class ResidualBlock(nn.Module):
    """DUCK-Net residual block: ``BN(conv1x1(x) + (conv3x3-BN-ReLU x 2)(x))``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.body = nn.Sequential(ConvBNAct(in_channels, out_channels), ConvBNAct(out_channels, out_channels))
        self.norm = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, in, H, W] -> [B, out, H, W]."""
        return self.norm(self.shortcut(x) + self.body(x))


def residual_stack(in_channels: int, out_channels: int, repeats: int) -> nn.Sequential:
    """``repeats`` residual blocks; the first changes the width."""
    return nn.Sequential(
        *(ResidualBlock(in_channels if i == 0 else out_channels, out_channels) for i in range(repeats))
    )


def dilated_stack(in_channels: int, out_channels: int, rates: tuple[int, ...]) -> nn.Sequential:
    """3x3 conv-BN-ReLU layers with growing dilation (the wide-/mid-scope branches)."""
    return nn.Sequential(
        *(
            ConvBNAct(in_channels if i == 0 else out_channels, out_channels, 3, dilation=r)
            for i, r in enumerate(rates)
        )
    )


class DUCKBlock(nn.Module):
    """DUCK block: batch norm, six parallel branches summed, batch norm.

    Branches: wide scope (3x3 dilated 1, 2, 3), mid scope (dilated 1, 2), one, two and three residual
    blocks, and a separated ``1xk`` + ``kx1`` pair (k = 7).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm_in = nn.BatchNorm2d(in_channels)
        self.branches = nn.ModuleList(
            [
                dilated_stack(in_channels, out_channels, (1, 2, 3)),
                dilated_stack(in_channels, out_channels, (1, 2)),
                residual_stack(in_channels, out_channels, 1),
                residual_stack(in_channels, out_channels, 2),
                residual_stack(in_channels, out_channels, 3),
                nn.Sequential(
                    ConvBNAct(in_channels, out_channels, (1, SEPARATED_KERNEL)),
                    ConvBNAct(out_channels, out_channels, (SEPARATED_KERNEL, 1)),
                ),
            ]
        )
        self.norm_out = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, in, H, W] -> [B, out, H, W]."""
        x = self.norm_in(x)
        return self.norm_out(sum(branch(x) for branch in self.branches))


class DUCKNet(PaddedSegmentationNet):
    """DUCK-Net: DUCK-block encoder with residual downsampling, residual bridge, DUCK-block decoder.

    With ``F = base_channel``: the input is repeatedly downsampled by 2x2 stride-2 convs to widths
    ``2F .. 32F`` (residual downsampling, ``p_i``); the main path ``t_i = DUCK(s_i)`` at width
    ``F * 2**i`` is downsampled by a 3x3 stride-2 conv-BN-ReLU and added to ``p_(i+1)`` to form ``s_(i+1)``.
    The bridge is two residual blocks at ``32F`` and two at ``16F``; each decoder stage upsamples
    (nearest, 2x), adds the encoder ``t_i`` and applies a DUCK block halving the width, the last one
    keeping ``F``. Inputs are padded internally to a multiple of 32, so any H, W works.

    Args:
        in_channels: Input image channels.
        num_classes: Output logit channels.
        base_channel: ``F``; 17 gives DUCK-Net-17 (40.1M parameters), 34 gives DUCK-Net-34 (160.3M).
    """

    size_divisor = 2**DEPTH

    def __init__(self, in_channels: int = 3, num_classes: int = 2, base_channel: int = 17) -> None:
        super().__init__()
        w = [base_channel * 2**i for i in range(DEPTH + 1)]
        self.input_down = nn.ModuleList(
            nn.Conv2d(in_channels if i == 0 else w[i], w[i + 1], 2, stride=2) for i in range(DEPTH)
        )
        self.encoder = nn.ModuleList(DUCKBlock(in_channels if i == 0 else w[i], w[i]) for i in range(DEPTH))
        # a 3x3 (not 2x2) stride-2 conv-BN-ReLU on the main path, as counted by the published 40.1M
        self.main_down = nn.ModuleList(ConvBNAct(w[i], w[i + 1], 3, stride=2) for i in range(DEPTH))
        self.bridge = nn.Sequential(residual_stack(w[5], w[5], 2), residual_stack(w[5], w[4], 2))
        # decoder stage i consumes width w[i] and emits w[i - 1] (w[0] for the last stage)
        self.decoder = nn.ModuleList(DUCKBlock(w[i], w[max(i - 1, 0)]) for i in reversed(range(DEPTH)))
        self.head = nn.Conv2d(base_channel, num_classes, 1)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """Network body on an input whose H, W are multiples of 32."""
        skips = []
        s, p = x, x
        for duck, down_main, down_input in zip(self.encoder, self.main_down, self.input_down, strict=True):
            t = duck(s)
            skips.append(t)
            p = down_input(p)
            s = down_main(t) + p
        x = self.bridge(s)
        for duck in self.decoder:
            x = duck(F.interpolate(x, scale_factor=2.0, mode="nearest") + skips.pop())
        return self.head(x)


@register_model("ducknet")
def ducknet(in_channels: int = 3, num_classes: int = 2, base_channel: int = 17) -> DUCKNet:
    """Build :class:`DUCKNet` (registry name ``ducknet``)."""
    return DUCKNet(in_channels, num_classes, base_channel)
